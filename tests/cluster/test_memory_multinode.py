"""The memory monitor on a worker node (issue 11, part 6): the worker node reads its own
memory usage and sends it with its heartbeat; the head's monitor kills the newest task on
that node when it is over the threshold, and the remote driver gets OutOfMemoryError naming
the task and the node's reading, while both agents live.

The worker node reads a fake usage file (``EMBER_MEMORY_USAGE_FILE``, tests only:
``<used> <total> [pid]``, holding while that pid lives) that the task itself writes, so the
pressure does not depend on the machine; the head reads its real usage (far below 0.9).
"""

from __future__ import annotations

import shutil

import ember
import pytest
from ember.exceptions import OutOfMemoryError

from .helpers import pid_alive, query, short_tmpdir, start_head, start_worker_node, wait_cluster


@pytest.fixture
def cluster(procs):
    root = short_tmpdir()
    usage = root / "node-a-usage"
    head = start_head(procs, root, num_cpus=1, env={"EMBER_MEMORY_USAGE_THRESHOLD": "0.9",
                                                    "EMBER_MEMORY_MONITOR_REFRESH_MS": "100"})
    a = start_worker_node(procs, head, root, "a", num_cpus=2, resources={"node_a": 1},
                          env={"EMBER_MEMORY_USAGE_FILE": str(usage)})
    wait_cluster(head, alive_nodes=2, idle_workers=3)
    yield head, a, usage
    procs.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def test_worker_node_task_killed_under_pressure(cluster, connect):
    head, a, usage = cluster
    connect(head)

    @ember.remote(resources={"node_a": 0.1}, max_retries=0)
    def hog(usage_file):
        import os
        import time

        data = b"x" * (32 << 20)
        with open(usage_file + ".tmp", "w") as f:
            f.write(f"{int(0.96 * (4 << 30))} {4 << 30} {os.getpid()}")
        os.replace(usage_file + ".tmp", usage_file)
        time.sleep(300)  # the monitor ends this
        return len(data)

    with pytest.raises(OutOfMemoryError) as info:
        ember.get(hog.remote(str(usage)), timeout=60)
    msg = str(info.value)
    assert "task" in msg and "hog" in msg and "killed by ember's memory monitor" in msg
    assert "3.8 GiB of 4.0 GiB (96%, from EMBER_MEMORY_USAGE_FILE=" in msg
    assert "EMBER_MEMORY_USAGE_THRESHOLD=0.9" in msg
    assert pid_alive(head.proc.pid) and pid_alive(a.proc.pid)

    @ember.remote(resources={"node_a": 0.1})
    def where():
        import os

        return os.environ.get("EMBER_TEST_NODE")

    assert ember.get([where.remote() for _ in range(4)], timeout=60) == ["a"] * 4


@pytest.fixture
def small_bound(procs):
    root = short_tmpdir()
    head = start_head(procs, root, num_cpus=1, env={"EMBER_INLINE_OBJECTS_MAX_BYTES": str(64 * 1024)})
    a = start_worker_node(procs, head, root, "a", num_cpus=2, resources={"node_a": 1})
    wait_cluster(head, alive_nodes=2, idle_workers=3)
    yield head, a
    procs.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def test_small_objects_past_the_bound_reach_every_reader(small_bound, connect):
    """A remote driver's small values and small task results past the head's bound are kept
    in the head's store; workers on both nodes and the remote driver read them as before."""
    head, a = small_bound
    connect(head)
    refs = [ember.put(bytes([i]) * 20_000) for i in range(50)]  # 1 MB, the bound is 64 KiB

    @ember.remote
    def firsts(*values):
        return [v[0] for v in values], {len(v) for v in values}

    on_a = firsts.options(resources={"node_a": 0.1}).remote(*refs)
    on_head = firsts.options(num_cpus=1).remote(*refs)
    assert ember.get([on_a, on_head], timeout=60) == [(list(range(50)), {20_000})] * 2

    @ember.remote(resources={"node_a": 0.1})
    def small(i):
        return bytes([i]) * 20_000

    results = [small.remote(i) for i in range(50)]
    assert ember.get(results, timeout=60) == [bytes([i]) * 20_000 for i in range(50)]
    assert ember.get(firsts.options(num_cpus=1).remote(*results), timeout=60) == (list(range(50)), {20_000})
    stats = query(head, ("stats", None))[0]
    assert stats["inline_bytes"] <= 64 * 1024 and stats["store_bytes"] >= 1_000_000
