"""Where a queued task goes: a pure decision over the cluster's nodes and workers, no I/O.

The agent asks ``place`` for the task at the head of each queue and carries out the answer:

- ``RUN``: give it to an idle worker now (on a node where it fits);
- ``START``: it fits on a node with no idle worker: start one there (the task waits for it);
- ``WAIT``: it fits somewhere but every such node is already starting workers or has no
  worker left to give; it waits in its queue;
- ``PIPELINE``: no node has room now: queue it behind a busy local worker of the same shape,
  where the worker can start it the moment its current task ends. The agent may take it back
  before it starts (``steal_candidate``), so a worker that frees up first runs it instead;
- ``INFEASIBLE``: no node of the cluster could ever fit it: it stays pending until one joins;
- ``STUCK``: it fits, but the node with room has reached its worker cap and every worker
  there waits on other work: starting nothing more, it would wait forever;
- ``UNSCHEDULABLE``: its strategy names a node (hard affinity) that is gone or could never
  fit it: it fails.

A request's ``Strategy`` (``strategy_of`` decodes the task spec's field) narrows or orders the
nodes: ``spread`` tries the least busy nodes first (and never pipelines); ``node_id`` keeps the
work on that node while it is alive and could fit it, and otherwise fails it (``soft`` False)
or lets it go anywhere (``soft`` True), as Ray's NodeAffinitySchedulingStrategy does.

Invariants (tests/unit/test_scheduler.py): a task is never pipelined while a node has room
for it or a worker that could take it is starting; pipelining never depends on how long a
function ran before; only local workers (whose start the agent can revoke through a claim
slot, ``ember._claims``) are pipelined onto.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ember._resources import EPS, fits

from ember_node.workers import BUSY

MAX_STARTING_PER_NODE = 2  # workers starting at once on one node (a burst forks in waves)


class Kind(enum.Enum):
    RUN = "run"
    START = "start"
    WAIT = "wait"
    PIPELINE = "pipeline"
    INFEASIBLE = "infeasible"
    STUCK = "stuck"
    UNSCHEDULABLE = "unschedulable"


@dataclass(frozen=True)
class Strategy:
    """Where a request may go (None on a Request: anywhere, local first)."""

    spread: bool = False
    node_id: str | None = None
    soft: bool = False


def strategy_of(wire: Any) -> Strategy | None:
    """The Strategy of a task spec's strategy field (``ember._scheduling``); None for the default.
    Raises ValueError for anything else (the agent's protocol check refuses it first)."""
    if wire is None:
        return None
    if wire == ("SPREAD",):
        return Strategy(spread=True)
    if (isinstance(wire, tuple) and len(wire) == 3 and wire[0] == "NODE" and isinstance(wire[1], str)
            and isinstance(wire[2], bool)):
        return Strategy(node_id=wire[1], soft=wire[2])
    raise ValueError(f"not a scheduling strategy: {wire!r}")


@dataclass(frozen=True)
class Limits:
    """Bounds the scheduler keeps to."""

    max_workers_per_node: int  # task workers per node, blocked ones included
    pipeline_depth: int = 32  # tasks queued on one worker, the running one included


@dataclass(frozen=True)
class Request:
    """What ``place`` needs of a task."""

    resources: Mapping[str, float]
    shape: tuple
    deps: tuple = ()
    may_pipeline: bool = True  # False for actor creation and tasks with store arguments
    needs_cpu_node: bool = False  # a default actor holds no CPU but needs a node with CPUs
    strategy: Strategy | None = None


@dataclass(frozen=True)
class Decision:
    kind: Kind
    worker: Any = None  # RUN, PIPELINE
    node: Any = None  # RUN, START, STUCK


def _node_could_ever_host(req: Request, node: Any) -> bool:
    return (node.alive and fits(req.resources, node.totals)
            and not (req.needs_cpu_node and node.totals.get("CPU", 0.0) < 1))


def _node_can_host(req: Request, node: Any) -> bool:
    if not node.alive or not fits(req.resources, node.available):
        return False
    if req.needs_cpu_node and node.totals.get("CPU", 0.0) < 1:
        return False
    gpus = req.resources.get("GPU")
    # enough GPU in total, but split over GPUs that are partly in use
    return not gpus or node.gpus.pick(gpus) is not None


def holders_of(nodes: Iterable[Any]) -> dict[str, tuple[Any, ...]]:
    """Per resource name, the live nodes whose totals have some of it, in ``nodes``' order:
    the index ``place`` narrows its scan with (rebuilt whenever a node's totals change)."""
    out: dict[str, list[Any]] = {}
    for node in nodes:
        if node.alive:
            for name, amount in node.totals.items():
                if amount > 0:
                    out.setdefault(name, []).append(node)
    return {name: tuple(held) for name, held in out.items()}


def _candidates(req: Request, nodes: list[Any], holders: Mapping[str, Sequence[Any]] | None) -> list[Any] | Sequence[Any]:
    """The nodes that could host ``req``: those holding its scarcest requested resource (the
    order kept), or all of ``nodes`` without an index or a resource to narrow by."""
    if holders is None:
        return nodes
    best: Sequence[Any] | None = None
    for name, amount in req.resources.items():
        if amount > EPS:
            held = holders.get(name, ())
            if best is None or len(held) < len(best):
                best = held
    return nodes if best is None or len(best) >= len(nodes) else best


def place(req: Request, nodes: Iterable[Any], workers: Iterable[Any], largest: Mapping[str, float],
          readers: Mapping[bytes, Iterable[Any]], limits: Limits,
          holders: Mapping[str, Sequence[Any]] | None = None) -> Decision:
    """Decide what to do with ``req`` (see the module docstring).

    ``nodes``: NodeRec-like (alive, available, totals, gpus, idle, starting, nworkers,
    client is None for this agent's own node); ``workers``: WorkerRec-like (state, shape,
    blocked, actor, node, inflight, claim); ``readers``: object id -> nodes holding a copy;
    ``holders``: ``holders_of(nodes)``, current, or None (then every node is looked at: in a
    large cluster, work that needs a resource few nodes have is found among those few).
    """
    nodes = list(nodes)
    strategy = req.strategy
    if strategy is not None and strategy.node_id is not None:
        target = next((n for n in nodes if n.node_id == strategy.node_id), None)
        if target is not None and _node_could_ever_host(req, target):
            nodes = [target]
            readers = {}
            holders = None
        elif not strategy.soft:
            return Decision(Kind.UNSCHEDULABLE, node=target)
    if req.resources and not fits(req.resources, largest):
        return Decision(Kind.INFEASIBLE)
    nodes = list(_candidates(req, nodes, holders))
    if strategy is not None and strategy.spread:
        # the least busy node that fits runs it (stable: among equally busy, the usual order)
        nodes.sort(key=_busy)
        readers = {}
        for node in nodes:
            if _node_can_host(req, node):
                if node.idle:
                    return Decision(Kind.RUN, node.idle[-1], node)
                if node.starting < MAX_STARTING_PER_NODE and node.nworkers < limits.max_workers_per_node:
                    return Decision(Kind.START, node=node)
    # locality: an idle worker on a node that already holds a copy of a large argument
    for d in req.deps:
        for node in readers.get(d, ()):
            if node.idle and d not in node.dropped and _node_can_host(req, node):
                return Decision(Kind.RUN, node.idle[-1], node)
    start_on = None
    starting = False
    capped: list[Any] = []
    for node in nodes:
        if not _node_can_host(req, node):
            continue
        if node.idle:
            return Decision(Kind.RUN, node.idle[-1], node)
        if node.starting:
            starting = True
        if node.starting < MAX_STARTING_PER_NODE and node.nworkers < limits.max_workers_per_node:
            if start_on is None:
                start_on = node
        elif node.nworkers >= limits.max_workers_per_node and not node.starting:
            capped.append(node)
    if start_on is not None:
        return Decision(Kind.START, node=start_on)
    if starting:
        return Decision(Kind.WAIT)
    if capped:
        workers = list(workers)
        for node in capped:
            if not any(_makes_progress(w) for w in workers if w.node is node):
                return Decision(Kind.STUCK, node=node)
        return Decision(Kind.WAIT)
    if req.may_pipeline and strategy is None:
        target = pipeline_target(req, workers, limits)
        if target is not None:
            return Decision(Kind.PIPELINE, target, target.node)
    return Decision(Kind.WAIT)


def _busy(node: Any) -> float:
    """How loaded a node is, for SPREAD: the share of its CPUs in use plus its workers that
    are not idle (starting, running, blocked, actors, which may hold no CPU) per CPU."""
    working = node.nworkers - len(node.idle)
    cpus = node.totals.get("CPU", 0.0)
    if cpus > 0:
        return (cpus - node.available.get("CPU", 0.0)) / cpus + working / cpus
    return float(working)


def _makes_progress(w: Any) -> bool:
    """A worker whose current work can end without anything new starting."""
    return w.state == BUSY and not w.blocked and w.actor is None


def pipeline_target(req: Request, workers: Iterable[Any], limits: Limits) -> Any:
    """The busy local worker of ``req``'s shape with the fewest tasks queued, or None."""
    best = None
    for w in workers:
        if (w.state == BUSY and w.shape == req.shape and not w.blocked and w.actor is None
                and w.node.client is None and w.claim is not None
                and len(w.inflight) < limits.pipeline_depth
                and (best is None or len(w.inflight) < len(best.inflight))):
            best = w
    return best


def steal_candidate(idle: Any, workers: Iterable[Any]) -> Any:
    """A worker on ``idle``'s node with tasks queued behind its running one (the longest
    backlog), whose unstarted tasks the agent may take back for ``idle``; None if none."""
    best = None
    for w in workers:
        if (w is not idle and w.node is idle.node and w.claim is not None and len(w.inflight) > 1
                and (best is None or len(w.inflight) > len(best.inflight))):
            best = w
    return best
