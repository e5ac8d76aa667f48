"""``ember.util.scheduling_strategies`` (Ray's ``ray.util.scheduling_strategies``): where a task
or actor may run, passed as ``.options(scheduling_strategy=...)``.

Besides the two classes here, a strategy may be the string ``"DEFAULT"`` (ember's own choice:
the node the work was submitted on first, then any node with room) or ``"SPREAD"`` (over the
nodes that fit it, the least busy first).
"""

from __future__ import annotations

from typing import Any

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]


class NodeAffinitySchedulingStrategy:
    """Run on the node with hex id ``node_id`` (``ember.get_runtime_context().get_node_id()``,
    ``ember.nodes()[i]["NodeID"]``).

    While that node is alive and could ever fit the work, the work runs only there (waiting
    for room if it must). If the node is gone or too small: with ``soft=False`` the work fails
    (``TaskUnschedulableError``/``ActorUnschedulableError``); with ``soft=True`` it runs
    wherever it fits.
    """

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise TypeError(f"NodeAffinitySchedulingStrategy needs a node id as a hex string, got {node_id!r}")
        self.node_id = node_id
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run in a bundle of ``placement_group`` (``-1``: any of its bundles), using the resources
    the group reserved. ``placement_group_capture_child_tasks=True`` makes the tasks and actors
    this work starts go into the same group unless they say otherwise."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index})")
