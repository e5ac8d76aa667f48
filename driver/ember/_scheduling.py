"""A task's or actor's ``scheduling_strategy`` option as it travels in the task spec.

``wire_strategy`` turns the user's option into plain data the agent checks and decodes
(``ember_node.scheduler.strategy_of``): ``None`` (the default), ``("SPREAD",)`` or
``("NODE", node_id, soft)``. Placement-group strategies do not travel this way: they rename
the requested resources into the group's reserved ones (``ember.util.placement_group``).
"""

from __future__ import annotations

from typing import Any

from ember.runtime_context import current_task, held_resources

SPREAD = "SPREAD"
NODE = "NODE"


def wire_strategy(strategy: Any) -> tuple | None:
    """The spec field for ``strategy`` (None for the default); ValueError names the choices."""
    from ember.util.scheduling_strategies import (
        NodeAffinitySchedulingStrategy,
        PlacementGroupSchedulingStrategy,
    )

    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == SPREAD:
        return (SPREAD,)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return (NODE, strategy.node_id, strategy.soft)
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        return None  # resources renamed instead (see the module docstring)
    raise ValueError(
        f"scheduling_strategy must be \"DEFAULT\", \"SPREAD\", a NodeAffinitySchedulingStrategy or a "
        f"PlacementGroupSchedulingStrategy (ember.util.scheduling_strategies), got {strategy!r}")


def placed_resources(resources: dict[str, float], options: dict[str, Any]) -> dict[str, float]:
    """``resources`` as the task or actor asks for them: renamed into its placement group's
    bundle when ``options`` put it in one (``scheduling_strategy=PlacementGroupSchedulingStrategy``
    or Ray's older ``placement_group=``/``placement_group_bundle_index=``)."""
    from ember.util.placement_group import PlacementGroup, bundle_resources
    from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = options.get("scheduling_strategy")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg, index = strategy.placement_group, strategy.placement_group_bundle_index
        capture = strategy.placement_group_capture_child_tasks
        if pg is None:
            return resources
    else:
        pg, index = options.get("placement_group"), options.get("placement_group_bundle_index", -1)
        capture = options.get("placement_group_capture_child_tasks")
        if pg is None or pg == "default":
            return resources
    if not isinstance(pg, PlacementGroup):
        raise TypeError(f"placement_group must be a PlacementGroup (ember.util.placement_group), got {pg!r}")
    return bundle_resources(resources, pg, index, bool(capture))


def inherits_placement(options: dict[str, Any]) -> bool:
    """Whether work with ``options`` goes into the placement group of the task or actor that
    submits it, when that one captures its children (it names no strategy and no group)."""
    return options.get("scheduling_strategy") is None and options.get("placement_group", "default") == "default"


def submitted_resources(rt: Any, resources: dict[str, float], inherit: bool) -> dict[str, float]:
    """``resources`` as sent for a submission from ``rt``'s current task or actor (see
    ``inherits_placement``)."""
    if not inherit or (rt.actor is None and current_task() is None):
        return resources
    from ember.util.placement_group import captured_resources

    return captured_resources(resources, held_resources(rt))
