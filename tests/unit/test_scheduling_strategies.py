"""Scheduling strategies in the pure decision (ember_node.scheduler.place): SPREAD and node
affinity as Ray documents them (NodeAffinitySchedulingStrategy: while the node is alive and
could fit the work it runs only there, waiting for room; otherwise hard fails, soft goes
anywhere). Nodes and workers are built by hand; no process is started."""

from __future__ import annotations

import itertools

import pytest
from ember._scheduling import wire_strategy
from ember.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)
from ember_node.protocol import task_spec_problem
from ember_node.scheduler import Kind, Strategy, strategy_of
from ember_node.workers import BUSY, IDLE

from tests.unit.test_scheduler import decide, req, worker
from tests.unit.test_scheduler import node as _node

_ids = itertools.count()


def node(cpus: float = 2, head: bool = True):
    n = _node(cpus, head)
    n.node_id = f"node{next(_ids)}"  # distinct ids: affinity picks by id
    return n


def test_wire_form_round_trips_through_the_agent_decoder():
    assert wire_strategy(None) is None and wire_strategy("DEFAULT") is None
    assert strategy_of(wire_strategy("SPREAD")) == Strategy(spread=True)
    s = strategy_of(wire_strategy(NodeAffinitySchedulingStrategy("abc", soft=True)))
    assert s == Strategy(node_id="abc", soft=True)
    with pytest.raises(ValueError, match="scheduling_strategy must be"):
        wire_strategy("PACK")
    with pytest.raises(ValueError):
        strategy_of(("NODE", 3, True))


def test_placement_group_strategy_needs_no_spec_field():
    assert wire_strategy(PlacementGroupSchedulingStrategy(object())) is None


def test_protocol_accepts_a_thirteenth_field_only_when_it_is_a_strategy():
    base = (b"t", b"f", "name", b"", [], [b"r"], {"CPU": 1.0}, 0, False, [], None, None)
    assert task_spec_problem(base) is None
    assert task_spec_problem((*base, ("SPREAD",))) is None
    assert task_spec_problem((*base, ("NODE", "abc", False))) is None
    assert "scheduling strategy" in task_spec_problem((*base, ("PACK",)))


def test_spread_prefers_the_least_busy_node_that_fits():
    a, b = node(cpus=2), node(cpus=2, head=False)
    busy = worker(a, BUSY)
    idle_a = worker(a, IDLE)
    # default: local first, the idle worker on the busier node
    assert decide(req(), [a, b], [busy, idle_a]).worker is idle_a
    d = decide(req(strategy=Strategy(spread=True)), [a, b], [busy, idle_a])
    assert d.kind is Kind.START and d.node is b


def test_spread_still_uses_a_node_that_fits_when_the_least_busy_does_not():
    a, b = node(cpus=4), node(cpus=1, head=False)
    w = worker(a, BUSY)
    d = decide(req({"CPU": 2.0}, strategy=Strategy(spread=True)), [a, b], [w])
    assert d.kind is Kind.START and d.node is a


def test_spread_never_pipelines_behind_a_busy_worker():
    a = node(cpus=1)
    w = worker(a, BUSY)
    assert decide(req(), [a], [w]).kind is Kind.PIPELINE
    assert decide(req(strategy=Strategy(spread=True)), [a], [w]).kind is Kind.WAIT


@pytest.mark.parametrize("soft", [False, True])
def test_affinity_runs_only_on_its_node_and_waits_for_room_there(soft):
    a, b = node(cpus=1), node(cpus=2, head=False)
    busy = worker(a, BUSY)
    idle_b = worker(b, IDLE)
    s = Strategy(node_id=a.node_id, soft=soft)
    assert decide(req(strategy=s), [a, b], [busy, idle_b]).kind is Kind.WAIT
    d = decide(req(strategy=Strategy(node_id=b.node_id, soft=soft)), [a, b], [busy, idle_b])
    assert d.kind is Kind.RUN and d.worker is idle_b


def test_hard_affinity_to_a_missing_or_too_small_node_is_unschedulable():
    a, b = node(cpus=1), node(cpus=4, head=False)
    assert decide(req(strategy=Strategy(node_id="gone")), [a, b], []).kind is Kind.UNSCHEDULABLE
    d = decide(req({"CPU": 2.0}, strategy=Strategy(node_id=a.node_id)), [a, b], [])
    assert d.kind is Kind.UNSCHEDULABLE and d.node is a
    b.alive = False
    assert decide(req(strategy=Strategy(node_id=b.node_id)), [a, b], []).kind is Kind.UNSCHEDULABLE


def test_soft_affinity_to_a_missing_or_too_small_node_goes_anywhere():
    a, b = node(cpus=1), node(cpus=4, head=False)
    d = decide(req({"CPU": 2.0}, strategy=Strategy(node_id=a.node_id, soft=True)), [a, b], [])
    assert d.kind is Kind.START and d.node is b
    d = decide(req(strategy=Strategy(node_id="gone", soft=True)), [a, b], [])
    assert d.kind is Kind.START and d.node is a


def test_spread_counts_actors_that_hold_no_cpu():
    a, b = node(cpus=2), node(cpus=2, head=False)
    actor = worker(a, BUSY, resources={}, actor=object())
    idle_a, idle_b = worker(a, IDLE), worker(b, IDLE)
    d = decide(req({}, strategy=Strategy(spread=True)), [a, b], [actor, idle_a, idle_b])
    assert d.kind is Kind.RUN and d.worker is idle_b
