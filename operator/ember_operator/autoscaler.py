"""In-tree autoscaling, scale-down half: which idle workers to remove. Pure.

With ``enableInTreeAutoscaling: true`` the operator does what KubeRay's autoscaler does
when workers sit idle: it lowers the group's ``replicas`` and names the idle pods in
``scaleStrategy.workersToDelete``; the next pass deletes exactly those pods.

- a worker is idle when the head reports it idle for at least the group's
  ``idleTimeoutSeconds``, else ``autoscalerOptions.idleTimeoutSeconds``, else 60 s;
  a worker the head does not report on (or reports busy: idle 0) is never removed;
- a group never goes below ``minReplicas``;
- the idlest go first; groups of several hosts per replica are left alone (a replica's
  hosts go together, which needs the head to report them together).

Scale-up from the head's pending demand is not here yet: the head does not report it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ember_operator.spec import ClusterSpec, GroupSpec

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "ScaleDown", "idle_timeout", "plan_scale_down"]

DEFAULT_IDLE_TIMEOUT_S = 60


@dataclass(frozen=True)
class ScaleDown:
    """Lower ``group`` from ``replicas`` (as the spec says now) by deleting ``pods``."""

    group: str
    replicas: int
    pods: tuple[str, ...]

    @property
    def new_replicas(self) -> int:
        """``replicas`` after the change."""
        return self.replicas - len(self.pods)


def idle_timeout(cluster: ClusterSpec, group: GroupSpec) -> float:
    """Seconds a worker of ``group`` must be idle before it is removed."""
    if group.idle_timeout_seconds is not None:
        return float(group.idle_timeout_seconds)
    if cluster.autoscaler_idle_timeout_seconds is not None:
        return float(cluster.autoscaler_idle_timeout_seconds)
    return float(DEFAULT_IDLE_TIMEOUT_S)


def plan_scale_down(
    cluster: ClusterSpec, group: GroupSpec, alive: Sequence[str], idleness: Mapping[str, float] | None
) -> ScaleDown | None:
    """The idle workers of ``group`` to remove now (None: none).

    ``alive`` lists the group's live pods; ``idleness`` maps pod names to the seconds the
    head reports them idle (None or a missing name: unknown).
    """
    if not cluster.autoscaling or group.num_of_hosts != 1 or group.workers_to_delete or not idleness:
        return None
    removable = min(group.replicas, len(alive)) - group.min_replicas
    if removable <= 0:
        return None
    limit = idle_timeout(cluster, group)
    idle = sorted((name for name in alive if idleness.get(name, 0.0) >= limit and idleness.get(name, 0.0) > 0),
                  key=lambda name: (-idleness[name], name))
    chosen = tuple(idle[:removable])
    return ScaleDown(group.name, group.replicas, chosen) if chosen else None
