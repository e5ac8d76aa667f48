"""A worker node's agent killed with SIGKILL while it runs work (issue 4, test 2).

Cluster: head (1 CPU), node ``a`` (4 CPUs; ``node_a``, ``rs``), node ``b`` (2 CPUs; ``node_b``,
``rs``). A "blocker" actor holds ``b``'s ``rs`` so that the restartable actor (which needs
``rs``) is placed on ``a``; after ``a`` dies the restartable actor can only come back once the
blocker is killed, i.e. "when resources allow".
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import ember
import pytest
from ember.exceptions import ActorDiedError, NodeDiedError

from .helpers import (
    pid_alive,
    short_tmpdir,
    start_head,
    start_worker_node,
    wait_cluster,
    wait_until,
)


@pytest.fixture
def cluster(procs):
    root = short_tmpdir()
    head = start_head(procs, root, num_cpus=1, env={"EMBER_HEARTBEAT_TIMEOUT_S": "3"})
    a = start_worker_node(procs, head, root, "a", num_cpus=4, resources={"node_a": 1, "rs": 1})
    b = start_worker_node(procs, head, root, "b", num_cpus=2, resources={"node_b": 1, "rs": 1})
    wait_cluster(head, alive_nodes=3, idle_workers=7)
    yield head, a, b, root
    procs.cleanup()  # before removing the logs; the procs fixture checks what needed SIGKILL
    shutil.rmtree(root, ignore_errors=True)


def test_sigkill_worker_node_mid_run(cluster, procs, connect):
    head, a, b, root = cluster
    connect(head)
    started = root / "started"
    started.mkdir()

    @ember.remote
    class Probe:
        def where(self):
            import os

            return os.environ.get("EMBER_TEST_NODE"), os.getpid()

    @ember.remote
    def work(i, started_dir, seconds):
        import os
        import time

        node = os.environ.get("EMBER_TEST_NODE")
        open(os.path.join(started_dir, f"{i}.{node}.{os.getpid()}"), "w").close()
        time.sleep(seconds)
        return i, node, os.getpid()

    blocker = Probe.options(resources={"rs": 1, "node_b": 0.01}).remote()
    assert ember.get(blocker.where.remote(), timeout=30)[0] == "b"
    phoenix = Probe.options(resources={"rs": 1}, max_restarts=1).remote()
    mortal = Probe.options(resources={"node_a": 0.01}, max_restarts=0).remote()
    phoenix_at = ember.get(phoenix.where.remote(), timeout=30)
    mortal_at = ember.get(mortal.where.remote(), timeout=30)
    assert phoenix_at[0] == "a" and mortal_at[0] == "a", (phoenix_at, mortal_at)

    @ember.remote(resources={"node_a": 0.01})
    def make_array(n):
        import numpy as np

        return np.arange(n, dtype=np.int64)

    made_on_a = make_array.remote(2 << 20)  # 16 MiB, computed on a: its bytes live at the head
    assert ember.wait([made_on_a], timeout=30)[0], "make_array did not finish on a"

    fragile = work.options(resources={"node_a": 0.01}, max_retries=0).remote(-1, str(started), 60)
    refs = [work.options(max_retries=3).remote(i, str(started), 2.0) for i in range(10)]

    def on_a() -> list[str]:
        names = os.listdir(started)
        return [n for n in names if n.split(".")[1] == "a" and not n.startswith("-1.")]

    assert wait_until(lambda: len(on_a()) >= 2 and any(n.startswith("-1.") for n in os.listdir(started)), 30), \
        f"work did not start on node a: {os.listdir(started)}"
    kids = procs.kill_tree(a.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    started_on_a = {int(n.split(".")[0]) for n in on_a()}

    # the head notices: the node is dead, with a cause
    def a_dead():
        return [n for n in ember.nodes() if n["NodeID"] == a.node_id and not n["Alive"]]

    dead = wait_until(a_dead, 60, 0.1)
    assert dead, f"node a still alive in ember.nodes(): {ember.nodes()}"
    assert dead[0]["DeathCause"], dead
    assert time.monotonic() - killed_at < 8, "node death took longer than the heartbeat timeout"
    assert sum(1 for n in ember.nodes() if n["Alive"]) == 2

    # the node's workers go with it (they die with their zygote/agent)
    assert wait_until(lambda: not [p for p in kids if pid_alive(p)], 60), \
        f"processes of the killed node survived: {[p for p in kids if pid_alive(p)]}"

    # in-flight retryable tasks ran again elsewhere
    results = ember.get(refs, timeout=60)
    assert [r[0] for r in results] == list(range(10))
    for i, node, _pid in results:
        if i in started_on_a:
            assert node in ("head", "b"), f"task {i} started on a but finished on {node}"
    assert not [r for r in results if r[1] == "a"], results

    # max_retries=0 on the dead node: NodeDiedError
    with pytest.raises(NodeDiedError) as info:
        ember.get(fragile, timeout=30)
    assert a.node_id[:12] in str(info.value), str(info.value)

    # max_restarts=0 on the dead node: ActorDiedError naming the node
    with pytest.raises(ActorDiedError) as info:
        ember.get(mortal.where.remote(), timeout=30)
    assert a.node_id[:12] in str(info.value), str(info.value)

    # max_restarts=1: restarts on b once b's "rs" is free again
    pending = phoenix.where.remote()
    ready, _ = ember.wait([pending], timeout=1.5)
    assert not ready, "the restartable actor came back without the resource it needs"
    ember.kill(blocker)
    node, pid = ember.get(pending, timeout=30)
    assert node == "b" and pid != phoenix_at[1]
    assert ember.get(phoenix.where.remote(), timeout=30)[0] == "b"

    # a result computed on a before it died is still readable
    arr = ember.get(made_on_a, timeout=30)
    assert arr.shape == (2 << 20,) and int(arr[-1]) == (2 << 20) - 1

    # the cluster still works on what is left
    assert ember.cluster_resources()["CPU"] == pytest.approx(3.0)
    assert "node_a" not in ember.cluster_resources()


def test_silent_node_is_declared_dead_and_its_late_results_do_no_harm(procs, tmp_short, connect):
    """The agent of node ``a`` stops answering (SIGSTOP, its workers keep running): after
    EMBER_HEARTBEAT_TIMEOUT_S the head declares it dead and retries its task on the head. The
    worker on ``a`` still finishes that task and reports: that late report must not leave the
    retry's worker busy forever (every resource is free again once the work is done)."""
    head = start_head(procs, tmp_short, num_cpus=1, resources={"head_r": 1},
                      env={"EMBER_HEARTBEAT_TIMEOUT_S": "2"})
    a = start_worker_node(procs, head, tmp_short, "a", num_cpus=1, resources={"node_a": 1})
    wait_cluster(head, alive_nodes=2, idle_workers=2)
    connect(head)

    @ember.remote
    def work(seconds):
        import os
        import time

        time.sleep(seconds)
        return os.environ.get("EMBER_TEST_NODE"), os.getpid()

    short = work.options(resources={"head_r": 1}).remote(1.5)  # keeps the head busy for 1.5 s
    ref = work.options(max_retries=2).remote(4.0)  # so this one starts on a
    assert wait_until(lambda: ember.available_resources().get("CPU", 0) == 0, 10), "tasks did not start"
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        dead = wait_until(lambda: [n for n in ember.nodes() if n["NodeID"] == a.node_id and not n["Alive"]],
                          10, 0.1)
        assert dead, "a silent node was not declared dead"
        assert "heartbeat" in dead[0]["DeathCause"], dead
        assert time.monotonic() - stopped_at < 5
        assert ember.get(short, timeout=30)[0] == "head"
        node, _pid = ember.get(ref, timeout=30)
        assert node in ("a", "head")
        # once everything has finished, nothing may stay held
        total = ember.cluster_resources()["CPU"]
        assert total == 1.0, ember.cluster_resources()
        # the retry on the head ends at most ~6.5 s after the stop; allow some slack beyond
        free = wait_until(lambda: ember.available_resources().get("CPU", 0) == total, 8, 0.2)
        assert free, (f"CPU still held with no work left: available {ember.available_resources()} "
                      f"of {ember.cluster_resources()}; tasks {[(t['name'], t['state']) for t in _tasks(head)]}")
        assert ember.get([work.remote(0.05) for _ in range(4)], timeout=20)
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)


def _tasks(head):
    from .helpers import query

    return query(head, ("list", "tasks"))[0]
