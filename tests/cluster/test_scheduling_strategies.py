"""Scheduling strategies across real nodes (a head and a worker node, a remote driver over the
head's port), as Ray documents them: ``"SPREAD"`` puts work on different nodes even when the
first has room; ``NodeAffinitySchedulingStrategy`` keeps tasks and actors on the named node
(soft or hard), fails them when that node does not exist (hard) or runs them elsewhere (soft)."""

from __future__ import annotations

import os
import shutil
import time

import ember
import pytest
from ember.exceptions import ActorUnschedulableError, TaskUnschedulableError
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .helpers import short_tmpdir, start_head, start_worker_node, wait_cluster


@pytest.fixture(scope="module")
def cluster(module_procs):
    root = short_tmpdir()
    try:
        head = start_head(module_procs, root, num_cpus=2)
        node = start_worker_node(module_procs, head, root, "a", num_cpus=2)
        wait_cluster(head, alive_nodes=2, idle_workers=3, timeout=60)
        ember.init(head.address, token=head.token)
        yield head, node, root
    finally:
        if ember.is_initialized():
            ember.shutdown()
        module_procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@ember.remote
def node_of():
    return ember.get_runtime_context().get_node_id()


@ember.remote
def meet(barrier: str, n: int):
    """Mark arrival in ``barrier`` and wait (holding the CPU) until ``n`` tasks are there."""
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(barrier)) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return ember.get_runtime_context().get_node_id()


@ember.remote
class Where:
    def node(self):
        return ember.get_runtime_context().get_node_id()


def test_spread_runs_two_tasks_on_two_nodes(cluster):
    head, node, root = cluster
    barrier = root / "spread"
    barrier.mkdir()
    refs = [meet.options(scheduling_strategy="SPREAD").remote(str(barrier), 2) for _ in range(2)]
    assert set(ember.get(refs, timeout=90)) == {head.node_id, node.node_id}


def test_spread_actors_land_on_both_nodes(cluster):
    head, node, _ = cluster
    actors = [Where.options(scheduling_strategy="SPREAD").remote() for _ in range(2)]
    assert set(ember.get([a.node.remote() for a in actors], timeout=90)) == {head.node_id, node.node_id}
    for a in actors:
        ember.kill(a)


def test_default_strategy_is_accepted(cluster):
    head, node, _ = cluster
    assert ember.get(node_of.options(scheduling_strategy="DEFAULT").remote(), timeout=60) in {
        head.node_id, node.node_id}


@pytest.mark.parametrize("soft", [False, True])
def test_node_affinity_keeps_tasks_and_actors_on_the_node(cluster, soft):
    head, node, _ = cluster
    for target in (node.node_id, head.node_id):
        s = NodeAffinitySchedulingStrategy(target, soft=soft)
        assert set(ember.get([node_of.options(scheduling_strategy=s).remote() for _ in range(6)],
                             timeout=60)) == {target}
        actor = Where.options(scheduling_strategy=s).remote()
        assert ember.get(actor.node.remote(), timeout=60) == target
        ember.kill(actor)


def test_hard_affinity_to_an_unknown_node_fails_the_task_and_the_actor(cluster):
    s = NodeAffinitySchedulingStrategy("f" * 56, soft=False)
    with pytest.raises(TaskUnschedulableError, match="soft=True"):
        ember.get(node_of.options(scheduling_strategy=s).remote(), timeout=60)
    actor = Where.options(scheduling_strategy=s).remote()
    with pytest.raises((ActorUnschedulableError, ember.exceptions.RayActorError)):
        ember.get(actor.node.remote(), timeout=60)


def test_hard_affinity_to_a_node_too_small_fails_and_soft_runs_elsewhere(cluster):
    head, node, _ = cluster
    big = {"num_cpus": 3}
    # no node has 3 CPUs: with hard affinity it fails at once, naming the node
    with pytest.raises(TaskUnschedulableError, match="could never fit"):
        ember.get(node_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, False),
                                  **big).remote(), timeout=60)
    s = NodeAffinitySchedulingStrategy("f" * 56, soft=True)
    assert ember.get(node_of.options(scheduling_strategy=s).remote(), timeout=60) in {head.node_id, node.node_id}


def test_a_bad_strategy_is_refused_at_the_call(cluster):
    with pytest.raises(ValueError, match="scheduling_strategy must be"):
        node_of.options(scheduling_strategy="PACK")
