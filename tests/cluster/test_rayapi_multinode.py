"""Ray API breadth across nodes (a head, a worker node, a remote driver over the head's gRPC
port). ``ember.util.metrics``: what a task records on the worker node (its workers talk to
the head's agent over gRPC) and what the remote driver records are merged and served by the
head's endpoint with their tags; the batches cross gRPC as plain data (the agent unpickles
nothing). ``max_calls``: a worker node's workers retire and are replaced."""

from __future__ import annotations

import shutil

import ember
from ember.util.metrics import Counter, Histogram

from tests.metrics.helpers import wait_for

from .helpers import free_port, short_tmpdir, start_head, start_worker_node, wait_cluster


def test_metrics_from_a_worker_node_and_a_remote_driver_reach_the_head(procs, connect):
    root = short_tmpdir()
    try:
        port = free_port()
        head = start_head(procs, root, num_cpus=1, extra_args=["--metrics-port", str(port)])
        start_worker_node(procs, head, root, "a", num_cpus=1, resources={"node_a": 1})
        wait_cluster(head, alive_nodes=2, idle_workers=2)
        connect(head)

        @ember.remote(resources={"node_a": 1})
        def on_a(i):
            import os

            Counter("mn_items", "Items.", ("node",)).inc(tags={"node": os.environ["EMBER_TEST_NODE"]})
            Histogram("mn_sizes", boundaries=[10]).observe(i)
            return i

        assert ember.get([on_a.remote(i) for i in range(8)], timeout=60) == list(range(8))
        Counter("mn_driver", tag_keys=("where",)).inc(3, tags={"where": "remote"})
        scrape = wait_for(port, lambda s: s.value("ray_mn_items_total", node="a") == 8
                          and s.value("ray_mn_sizes_count") == 8
                          and s.value("ray_mn_driver_total", where="remote") == 3)
        assert scrape.value("ray_mn_sizes_sum") == sum(range(8))
        ember.shutdown()
    finally:
        procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_max_calls_on_a_worker_node(procs, connect):
    """A worker of a worker node retires after its calls (it asks the head, its agent) and
    the node starts fresh ones: every call runs, each in a process of its own."""
    root = short_tmpdir()
    try:
        head = start_head(procs, root, num_cpus=1)
        start_worker_node(procs, head, root, "a", num_cpus=2, resources={"node_a": 2})
        wait_cluster(head, alive_nodes=2, idle_workers=3)
        connect(head)

        @ember.remote(resources={"node_a": 1}, max_calls=1, max_retries=0)
        def where(i):
            import os

            return i, os.getpid(), os.environ["EMBER_TEST_NODE"]

        results = ember.get([where.remote(i) for i in range(6)], timeout=120)
        assert [r[0] for r in results] == list(range(6))
        assert {r[2] for r in results} == {"a"}
        assert len({r[1] for r in results}) == 6
        ember.shutdown()
    finally:
        procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)
