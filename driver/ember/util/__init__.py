"""``ember.util`` (Ray's ``ray.util``): ActorPool, queue, multiprocessing, metrics, and placeholders for
the parts ember does not implement yet."""

from __future__ import annotations

import importlib
from typing import Any

from ember._unsupported import module_getattr
from ember.util.actor_pool import ActorPool
from ember.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = ["ActorPool", "PlacementGroup", "get_current_placement_group", "get_placement_group", "placement_group",
           "placement_group_table", "remove_placement_group"]

_SUBMODULES = frozenset({"actor_pool", "metrics", "multiprocessing", "placement_group", "queue",
                         "scheduling_strategies", "state"})
# Ray's ray.util submodules ember lacks (placeholders, see ember._ray_alias)
_RAY_ONLY_SUBMODULES = frozenset({
    "accelerators", "annotations", "check_serialize", "client", "collective", "dask", "debug",
    "iter", "joblib", "serialization",
    "spark", "tracing",
})
# Ray's ray.util names ember lacks: they resolve, and raise NotImplementedError when used.
_RAY_ONLY_NAMES = frozenset({
    "get_node_ip_address", "inspect_serializability", "list_named_actors", "pdb",
    "register_serializer", "deregister_serializer", "log_once", "disable_log_once_globally", "enable_periodic_logging",
})
_placeholder = module_getattr("ray.util", _RAY_ONLY_NAMES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"ember.util.{name}")
    if name in _RAY_ONLY_SUBMODULES:
        from ember._ray_alias import resolve

        return resolve(f"ray.util.{name}")
    return _placeholder(name)
