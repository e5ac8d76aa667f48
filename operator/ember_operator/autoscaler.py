"""In-tree autoscaling: which worker pods to add for pending demand, which idle ones to remove. Pure.

With ``enableInTreeAutoscaling: true`` the operator does what KubeRay's autoscaler does, with
no sidecar: it changes a worker group's ``replicas`` in the RayCluster spec (and, to scale
down, names the pods in ``scaleStrategy.workersToDelete``); the next pass acts on the spec.

Scale-up (:func:`plan_scale_up`), from the head's pending demand (tasks and actors counted
by resource shape: those no node fits, and those some node fits that wait for room):

- a group's pods offer what their agents will advertise: ``num-cpus``/``num-gpus``/
  ``memory``/``resources`` from its start params (or its ``resources`` map), else the agent
  container's limits (requests), exactly as the pods are started (``builders.start_args``);
  once one of its pods has joined, what that node really reports;
- demand is first packed into what the nodes have free now (work waiting there for a
  worker to start needs no new pod), then into the pods asked for that have not joined the
  head yet (they are on their way), then into new pods, first fit, largest shapes first; a
  new pod goes to the group whose pods fit the shape with the least to spare (a GPU group
  is not used for CPU work while a CPU group fits);
- a group never goes above ``maxReplicas`` (a ``numOfHosts`` replica adds that many pods);
- ``autoscalerOptions.upscalingMode``: ``Default`` and ``Aggressive`` (KubeRay's alias of
  Default) add every pod the demand needs at once; ``Conservative`` rate-limits: pods asked
  for but not yet joined never outnumber the nodes already in the cluster (the head and the
  joined workers), so a cluster at most doubles while its new nodes come up;
- work no node and no group fits is reported with the largest group, for a Warning; work
  that waits for room but that no group fits (it fits the head) is left to wait.

Scale-down (:func:`plan_scale_down`):

- a worker is idle when the head reports it idle for at least the group's
  ``idleTimeoutSeconds``, else ``autoscalerOptions.idleTimeoutSeconds``, else 60 s;
  a worker the head does not report on (or reports busy: idle 0) is never removed;
- a group never goes below ``minReplicas``;
- the idlest go first; groups of several hosts per replica are left alone (a replica's
  hosts go together, which needs the head to report them together).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ember_node.start_flags import parse_resources

from ember_operator import builders
from ember_operator.spec import ClusterSpec, GroupSpec

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_S",
    "PendingShape",
    "GroupState",
    "ScaleUp",
    "Unfit",
    "ScaleUpPlan",
    "ScaleDown",
    "pod_resources",
    "plan_scale_up",
    "idle_timeout",
    "plan_scale_down",
]

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


# --- scale-up ---------------------------------------------------------------------------------
EPS = 1e-9
#: resources every pod has some of: offering more of them is no reason to avoid a group
_COMMON = frozenset({"CPU", "memory", "object_store_memory"})


@dataclass(frozen=True)
class PendingShape:
    """``count`` pending tasks or actors that each ask for ``resources`` (as the head reports)."""

    resources: Mapping[str, float]
    count: int


@dataclass(frozen=True)
class GroupState:
    """What the head knows of one worker group now."""

    joined: int = 0  # its pods that are live nodes of the cluster
    #: the resources one of its joined pods reports (None: none joined yet)
    observed: Mapping[str, float] | None = None


@dataclass(frozen=True)
class ScaleUp:
    """Raise ``group`` from ``replicas`` (as the spec says now) to ``new_replicas``."""

    group: str
    replicas: int
    new_replicas: int
    shapes: tuple[Mapping[str, float], ...]  # the pending shapes the new pods are for


@dataclass(frozen=True)
class Unfit:
    """``count`` pending tasks or actors of ``resources`` that no worker group's pods fit."""

    resources: Mapping[str, float]
    count: int
    largest_group: str | None  # the group that comes closest (None: there are no worker groups)
    largest: Mapping[str, float] | None  # what one of its pods offers


@dataclass(frozen=True)
class ScaleUpPlan:
    """What :func:`plan_scale_up` decided."""

    scale: tuple[ScaleUp, ...] = ()
    unfit: tuple[Unfit, ...] = ()
    #: groups that fit some pending demand but are at maxReplicas
    at_max: tuple[str, ...] = ()
    #: pending pods not asked for because of ``upscalingMode: Conservative``
    deferred: int = 0


def pod_resources(cluster: ClusterSpec, group: GroupSpec) -> dict[str, float]:
    """What one pod of ``group`` will advertise, read from the command line its agent gets.

    Only what the command line states: with neither ``num-cpus`` nor a CPU limit (request)
    the agent counts the machine's CPUs, which the operator cannot know, so no CPU is assumed.
    """
    args = builders.start_args(cluster, group)
    found: dict[str, float] = {}
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--num-cpus":
            found["CPU"] = float(value)
        elif flag == "--num-gpus":
            found["GPU"] = float(value)
        elif flag == "--memory":
            found["memory"] = float(value)
        elif flag == "--resources":
            found.update(parse_resources(value))
    return {name: amount for name, amount in found.items() if amount > 0}


def _fits(need: Mapping[str, float], have: Mapping[str, float]) -> bool:
    return all(amount <= have.get(name, 0.0) + EPS for name, amount in need.items())


def _how_many(need: Mapping[str, float], have: Mapping[str, float]) -> int:
    """How many of ``need`` fit in ``have`` at once (a large number when ``need`` is empty)."""
    counts = [math.floor((have.get(name, 0.0) + EPS) / amount) for name, amount in need.items() if amount > 0]
    return max(min(counts), 0) if counts else 1 << 30


def _take(need: Mapping[str, float], have: dict[str, float], times: int) -> None:
    for name, amount in need.items():
        have[name] = have.get(name, 0.0) - amount * times


def _waste(need: Mapping[str, float], offer: Mapping[str, float]) -> tuple[int, float]:
    special = sum(1 for name, amount in offer.items() if amount > 0 and name not in need and name not in _COMMON)
    return special, sum(amount for name, amount in offer.items() if name not in ("memory", "object_store_memory"))


def _closeness(need: Mapping[str, float], offer: Mapping[str, float]) -> tuple[float, float]:
    met = sum(min(offer.get(name, 0.0) / amount, 1.0) for name, amount in need.items() if amount > 0)
    return met, sum(amount for name, amount in offer.items() if name not in ("memory", "object_store_memory"))


@dataclass
class _Group:
    spec: GroupSpec
    offer: Mapping[str, float]
    room: int  # replicas it may still gain
    added: int = 0
    shapes: list[Mapping[str, float]] = field(default_factory=list)


def _size(shape: PendingShape) -> tuple[int, float]:
    return (-len(shape.resources),
            -sum(v for k, v in shape.resources.items() if k not in ("memory", "object_store_memory")))


def plan_scale_up(cluster: ClusterSpec, demand: Sequence[PendingShape], current: Mapping[str, GroupState],
                  *, waiting: Sequence[PendingShape] = (),
                  free: Sequence[Mapping[str, float]] = ()) -> ScaleUpPlan:
    """The worker pods to add for ``demand`` (work no node fits) and ``waiting`` (work some
    node fits, waiting for room), see the module docstring for the rules.

    ``current`` maps group names to what the head reports of them (a missing group: none of
    its pods joined); ``free`` lists what each live node has free now. Groups with
    ``workersToDelete`` pending are left alone this pass.
    """
    if not cluster.autoscaling or cluster.suspend or not (demand or waiting):
        return ScaleUpPlan()
    def offer_of(spec: GroupSpec) -> dict[str, float]:
        observed = (current.get(spec.name) or GroupState()).observed
        return dict(observed) if observed is not None else pod_resources(cluster, spec)

    groups: list[_Group] = []
    # nodes with room now, pods on their way and pods planned here, with what each has left
    bins: list[tuple[_Group | None, dict[str, float]]] = [(None, dict(room)) for room in free]
    on_the_way = 0
    for spec in cluster.workers:
        state = current.get(spec.name) or GroupState()
        offer = offer_of(spec)
        coming = max(spec.desired_pods - state.joined, 0)
        on_the_way += coming
        if spec.workers_to_delete:
            continue
        group = _Group(spec, offer, max(spec.max_replicas - spec.replicas, 0))
        groups.append(group)
        bins += [(group, dict(offer)) for _ in range(coming)]
    nodes = 1 + sum(state.joined for state in current.values())
    budget = max(nodes - on_the_way, 0) if cluster.upscaling_mode == "Conservative" else None
    unfit: list[Unfit] = []
    at_max: list[str] = []
    deferred = 0
    pending = [(d, True) for d in demand if d.count > 0] + [(d, False) for d in waiting if d.count > 0]
    for shape, infeasible in sorted(pending, key=lambda item: _size(item[0])):
        need = {name: float(amount) for name, amount in shape.resources.items() if amount > 0}
        left = shape.count
        for _, room in bins:  # room on live nodes, pods on their way, pods planned in this pass
            if left <= 0:
                break
            fit = min(_how_many(need, room), left)
            if fit:
                _take(need, room, fit)
                left -= fit
        if left <= 0:
            continue
        fitting = [g for g in groups if _fits(need, g.offer)]
        if not fitting and not infeasible:
            continue  # it fits a node the cluster has (the head): it waits for room there
        if not fitting:
            close = max(cluster.workers, default=None, key=lambda g: _closeness(need, offer_of(g)))
            unfit.append(Unfit(need, left, close.name if close else None, offer_of(close) if close else None))
            continue
        fitting.sort(key=lambda g: _waste(need, g.offer))
        while left > 0:
            group = next((g for g in fitting if g.added < g.room), None)
            if group is None:
                at_max += [g.spec.name for g in fitting if g.spec.name not in at_max]
                break
            hosts = group.spec.num_of_hosts
            if budget is not None and budget < hosts:
                deferred += math.ceil(left / max(_how_many(need, group.offer), 1))
                break
            if budget is not None:
                budget -= hosts
            group.added += 1
            if need not in group.shapes:
                group.shapes.append(need)
            for _ in range(hosts):
                room = dict(group.offer)
                fit = min(_how_many(need, room), left)
                _take(need, room, fit)
                left -= fit
                bins.append((group, room))
    scale = tuple(ScaleUp(g.spec.name, g.spec.replicas, g.spec.replicas + g.added, tuple(g.shapes))
                  for g in groups if g.added)
    return ScaleUpPlan(scale, tuple(unfit), tuple(at_max), deferred)
