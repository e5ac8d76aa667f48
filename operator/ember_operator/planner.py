"""The scaling planner: which pods of a group to delete and how many to create. Pure.

Rules, applied to one group (the head is a group of one):

1. Pods already being deleted are ignored: they neither count nor get deleted again.
2. Failed (or exited) pods are deleted and replaced.
3. With ``upgradeStrategy: Recreate``, pods whose template hash differs from the
   group's are deleted and replaced.
4. The pods named in ``workersToDelete`` are deleted whatever ``replicas`` says (as
   KubeRay does: the list says which pods go; ``replicas`` says how many stay).
5. If more healthy pods remain than desired, exactly the excess is deleted: the idlest
   pods as reported by the head (when known), then the newest. Never more than the excess.
6. If fewer remain than desired, the difference is created.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ember_operator import constants as c

__all__ = ["PodInfo", "Deletion", "ScalePlan", "plan_group", "is_pod_ready"]

DEAD_PHASES = frozenset({"Failed", "Succeeded"})

REASON_FAILED = "failed"
REASON_OUTDATED = "outdated"
REASON_REQUESTED = "requested"  # named in workersToDelete
REASON_SCALE_DOWN = "scale-down"


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's ``Ready`` condition is True."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


@dataclass(frozen=True)
class PodInfo:
    """What the planner and the status code need to know about one owned pod."""

    name: str
    group: str
    node_type: str
    phase: str = "Pending"
    ready: bool = False
    ip: str | None = None
    template_hash: str | None = None
    created: str = ""  # RFC 3339 timestamps sort chronologically as text
    deleting: bool = False

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> "PodInfo":
        """Summarize a Pod object (a dict as the API returns it)."""
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        status = pod.get("status") or {}
        return cls(
            name=meta.get("name", ""),
            group=labels.get(c.LABEL_GROUP, ""),
            node_type=labels.get(c.LABEL_NODE_TYPE, ""),
            phase=status.get("phase") or "Pending",
            ready=is_pod_ready(pod),
            ip=status.get("podIP"),
            template_hash=(meta.get("annotations") or {}).get(c.ANNOTATION_TEMPLATE_HASH),
            created=meta.get("creationTimestamp") or "",
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @property
    def alive(self) -> bool:
        """Neither being deleted nor exited."""
        return not self.deleting and self.phase not in DEAD_PHASES


@dataclass(frozen=True)
class Deletion:
    """A pod to delete and why (``failed``, ``outdated``, ``requested``, ``scale-down``)."""

    name: str
    reason: str


@dataclass(frozen=True)
class ScalePlan:
    """The planner's answer for one group."""

    create: int = 0
    delete: tuple[Deletion, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        """Nothing to do."""
        return not self.create and not self.delete


def _victims(candidates: Sequence[PodInfo], count: int, idleness: Mapping[str, float] | None) -> list[Deletion]:
    idle = idleness or {}
    # Idlest first among pods the head reported on; pods of unknown idleness after, newest first.
    known = sorted((pod for pod in candidates if pod.name in idle), key=lambda pod: (-idle[pod.name], pod.name))
    unknown = sorted(
        (pod for pod in candidates if pod.name not in idle),
        key=lambda pod: (pod.created, pod.name),
        reverse=True,
    )
    return [Deletion(pod.name, REASON_SCALE_DOWN) for pod in (known + unknown)[:count]]


def plan_group(
    desired: int,
    pods: Sequence[PodInfo],
    *,
    template_hash: str | None = None,
    recreate_outdated: bool = False,
    workers_to_delete: Sequence[str] = (),
    idleness: Mapping[str, float] | None = None,
) -> ScalePlan:
    """Plan how to bring one group's ``pods`` to ``desired`` healthy replicas.

    ``idleness`` maps pod names to seconds idle as reported by the head; None (or a
    missing name) means unknown, and those pods fall back to newest-first order.
    """
    deletions: list[Deletion] = []
    healthy: list[PodInfo] = []
    requested = set(workers_to_delete)
    for pod in pods:
        if pod.deleting:
            continue
        if pod.name in requested:
            deletions.append(Deletion(pod.name, REASON_REQUESTED))
        elif pod.phase in DEAD_PHASES:
            deletions.append(Deletion(pod.name, REASON_FAILED))
        elif recreate_outdated and template_hash is not None and pod.template_hash != template_hash:
            deletions.append(Deletion(pod.name, REASON_OUTDATED))
        else:
            healthy.append(pod)
    excess = len(healthy) - max(desired, 0)
    if excess > 0:
        deletions += _victims(healthy, excess, idleness)
        return ScalePlan(create=0, delete=tuple(deletions))
    return ScalePlan(create=-excess, delete=tuple(deletions))
