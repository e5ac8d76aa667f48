"""The scheduling decision (ember_node.scheduler.place) as a pure function: nodes and workers
are the agent's plain records, built here by hand; no process is started."""

from __future__ import annotations

from collections import deque

from ember._resources import shape_key
from ember_node.scheduler import (
    MAX_STARTING_PER_NODE,
    Kind,
    Limits,
    Request,
    holders_of,
    pipeline_target,
    place,
    steal_candidate,
)
from ember_node.workers import BUSY, IDLE, NodeRec, WorkerRec

LIMITS = Limits(max_workers_per_node=8, pipeline_depth=4)
CPU1 = {"CPU": 1.0}


class _Claim:  # a local worker's claim slot is only checked for presence here
    pass


def node(cpus: float = 2, head: bool = True, **res: float) -> NodeRec:
    n = NodeRec("n" + str(id(res)), "", "host", {"CPU": cpus, **res}, client=None if head else object(),
                is_head=head)
    return n


def worker(n: NodeRec, state: str = BUSY, resources: dict | None = None, inflight: int = 1,
           blocked: bool = False, actor: object = None) -> WorkerRec:
    w = WorkerRec(len(n.idle) + n.nworkers + 1, n)
    n.nworkers += 1
    w.state = state
    w.claim = _Claim() if n.client is None else None
    if state == IDLE:
        n.idle.append(w)
        return w
    held = resources if resources is not None else CPU1
    w.shape = shape_key(held)
    for k, v in held.items():
        n.available[k] -= v
    w.inflight = deque(object() for _ in range(inflight))
    w.blocked = blocked
    if blocked:
        n.available["CPU"] += held.get("CPU", 0)
    w.actor = actor
    return w


def req(resources: dict | None = None, **kw: object) -> Request:
    r = CPU1 if resources is None else resources
    return Request(r, shape_key(r), **kw)


def decide(r: Request, nodes: list[NodeRec], workers: list[WorkerRec]):
    largest: dict[str, float] = {}
    for n in nodes:
        for k, v in n.totals.items():
            largest[k] = max(largest.get(k, 0.0), v)
    plain = place(r, nodes, workers, largest, {}, LIMITS)
    # the index of which nodes hold which resource narrows the scan, never the decision
    indexed = place(r, nodes, workers, largest, {}, LIMITS, holders_of(nodes))
    assert indexed == plain, (indexed, plain)
    return plain


def test_an_idle_worker_on_a_node_with_room_runs_it():
    n = node()
    w = worker(n, IDLE)
    d = decide(req(), [n], [w])
    assert d.kind is Kind.RUN and d.worker is w


def test_room_but_no_idle_worker_starts_one_never_pipelines():
    """The warm-up case of the issue: a busy worker of the same shape exists, a CPU is free."""
    n = node(cpus=4)
    busy = worker(n, BUSY)
    d = decide(req(), [n], [busy])
    assert d.kind is Kind.START and d.node is n


def test_room_while_workers_are_starting_waits_never_pipelines():
    n = node(cpus=4)
    busy = worker(n, BUSY)
    n.starting = MAX_STARTING_PER_NODE
    assert decide(req(), [n], [busy]).kind is Kind.WAIT


def test_no_room_anywhere_pipelines_behind_the_shortest_local_backlog():
    n = node(cpus=2)
    a = worker(n, BUSY, inflight=3)
    b = worker(n, BUSY, inflight=1)
    d = decide(req(), [n], [a, b])
    assert d.kind is Kind.PIPELINE and d.worker is b


def test_never_pipelines_behind_a_different_shape_a_blocked_worker_or_an_actor():
    n = node(cpus=3, widget=1)
    other = worker(n, BUSY, resources={"CPU": 1.0, "widget": 1.0})
    blocked = worker(n, BUSY, blocked=True)
    n.available["CPU"] -= 1  # the blocked parent's child holds the CPU it gave back
    actor = worker(n, BUSY, actor=object())
    assert n.available["CPU"] == 0
    assert decide(req(), [n], [other, blocked, actor]).kind is Kind.WAIT


def test_pipelining_respects_the_depth():
    n = node(cpus=1)
    w = worker(n, BUSY, inflight=LIMITS.pipeline_depth)
    assert decide(req(), [n], [w]).kind is Kind.WAIT


def test_remote_workers_are_never_pipelined_onto():
    """Only a local worker's start can be revoked (its claim slot), so only those queue work."""
    remote = node(cpus=1, head=False)
    w = worker(remote, BUSY)
    assert decide(req(), [remote], [w]).kind is Kind.WAIT


def test_actor_creation_and_store_arguments_never_pipeline():
    n = node(cpus=1)
    w = worker(n, BUSY)
    assert decide(req(may_pipeline=False), [n], [w]).kind is Kind.WAIT


def test_a_parent_blocked_in_get_gives_its_cpu_to_its_child():
    n = node(cpus=1)
    parent = worker(n, BUSY, blocked=True)
    assert n.available["CPU"] == 1
    d = decide(req(), [n], [parent])
    assert d.kind is Kind.START


def test_worker_cap_with_every_worker_blocked_is_stuck_not_a_silent_hang():
    n = node(cpus=1)
    ws = [worker(n, BUSY, blocked=True) for _ in range(LIMITS.max_workers_per_node)]
    d = decide(req(), [n], ws)
    assert d.kind is Kind.STUCK and d.node is n


def test_worker_cap_with_one_worker_still_running_waits():
    n = node(cpus=2)
    ws = [worker(n, BUSY, blocked=True) for _ in range(LIMITS.max_workers_per_node - 1)]
    ws.append(worker(n, BUSY))
    assert n.available["CPU"] == 1
    assert decide(req(), [n], ws).kind is Kind.WAIT


def test_infeasible_anywhere_is_pending_not_an_error():
    n = node(cpus=2)
    assert decide(req({"CPU": 64.0}), [n], []).kind is Kind.INFEASIBLE
    assert decide(req({"CPU": 1.0, "no-such": 1.0}), [n], []).kind is Kind.INFEASIBLE


def test_the_node_that_fits_is_chosen():
    small = node(cpus=1)
    big = node(cpus=8, head=False)
    worker(small, IDLE)
    d = decide(req({"CPU": 4.0}), [small, big], [])
    assert d.kind is Kind.START and d.node is big


def test_gpu_shares_go_where_a_gpu_has_room():
    n = node(cpus=4, GPU=2)
    w = worker(n, IDLE)
    n.gpus.take([0], 0.5)
    n.gpus.take([1], 1.0)
    n.available["GPU"] = 0.5
    d = decide(req({"CPU": 1.0, "GPU": 0.5}), [n], [w])
    assert d.kind is Kind.RUN
    assert n.gpus.pick(0.5) == [0]
    assert decide(req({"CPU": 1.0, "GPU": 1.0}), [n], [w]).kind is Kind.WAIT


def test_a_default_actor_needs_a_node_with_cpus():
    cpuless = node(cpus=0)
    worker(cpuless, IDLE)
    d = decide(req({}, needs_cpu_node=True), [cpuless], [])
    assert d.kind is Kind.WAIT
    with_cpus = node(cpus=1, head=False)
    d = decide(req({}, needs_cpu_node=True), [cpuless, with_cpus], [])
    assert d.kind is Kind.START and d.node is with_cpus


def test_mixed_long_and_short_calls_fill_free_cpus_before_queueing():
    """Two long calls busy, two CPUs free: the short calls start workers, none waits behind."""
    n = node(cpus=4)
    longs = [worker(n, BUSY) for _ in range(2)]
    assert decide(req(), [n], longs).kind is Kind.START
    n.starting = 1
    assert decide(req(), [n], longs).kind is Kind.START
    n.starting = 2
    assert decide(req(), [n], longs).kind is Kind.WAIT


def test_steal_candidate_is_the_longest_backlog_on_the_idle_workers_node():
    n = node(cpus=3)
    other = node(cpus=2, head=False)
    idle = worker(n, IDLE)
    a = worker(n, BUSY, inflight=2)
    b = worker(n, BUSY, inflight=4)
    far = worker(other, BUSY, inflight=9)
    assert steal_candidate(idle, [a, b, far]) is b
    assert steal_candidate(idle, [far]) is None
    assert steal_candidate(idle, [worker(n, BUSY, inflight=1)]) is None


def test_pipeline_target_ignores_workers_without_a_claim_slot():
    n = node(cpus=1)
    w = worker(n, BUSY)
    w.claim = None
    assert pipeline_target(req(), [w], LIMITS) is None


def test_holders_index_lists_live_nodes_with_some_of_each_resource_in_order():
    a, b, c = node(2), node(0, head=False, sim=1.0), node(4, head=False, sim=2.0)
    c.alive = False
    held = holders_of([a, b, c])
    assert held["CPU"] == (a,)  # b has CPU 0, c is dead
    assert held["sim"] == (b,)


def test_work_for_a_resource_only_the_last_of_many_nodes_has_goes_there():
    nodes = [node(2)] + [node(2, head=False, **{f"sim{i}": 1.0}) for i in range(300)]
    last = nodes[-1]
    d = decide(req({"CPU": 1.0, "sim299": 1.0}), nodes, [])
    assert d.kind is Kind.START and d.node is last
    worker(last, IDLE)
    d = decide(req({"CPU": 1.0, "sim299": 1.0}), nodes, [])
    assert d.kind is Kind.RUN and d.node is last


def test_a_tiny_amount_of_a_resource_no_node_has_is_not_narrowed_away():
    a = node(2)
    # amounts within the rounding tolerance fit a node without the resource
    assert decide(req({"CPU": 1.0, "other": 1e-12}), [a], []).kind is Kind.START
