"""``ember.util`` (Ray's ``ray.util``): ActorPool, queue, multiprocessing, and placeholders for
the parts ember does not implement yet."""

from __future__ import annotations

from ember._unsupported import module_getattr
from ember.util.actor_pool import ActorPool

__all__ = ["ActorPool"]

# Ray's ray.util names ember lacks: they resolve, and raise NotImplementedError when used.
_RAY_ONLY_NAMES = frozenset({
    "get_current_placement_group", "get_node_ip_address", "inspect_serializability",
    "list_named_actors", "pdb", "placement_group", "placement_group_table",
    "register_serializer", "remove_placement_group", "deregister_serializer",
    "PlacementGroup", "log_once", "disable_log_once_globally", "enable_periodic_logging",
})

__getattr__ = module_getattr("ray.util", _RAY_ONLY_NAMES)
