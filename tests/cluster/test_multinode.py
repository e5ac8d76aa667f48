"""A head and two worker nodes on loopback: work spreads, resources add up, custom resources
pin tasks, and large objects cross nodes both ways (issue 4, tests 1 and 3).

The in-process driver connects over the head's gRPC port (``ember.init("host:port", token=)``).
A task knows its node from ``EMBER_TEST_NODE``, set in each agent's environment and inherited
by the workers it forks.
"""

from __future__ import annotations

import hashlib

import ember
import numpy as np
import pytest

from .helpers import MiB

ARRAY_BYTES = 200 * MiB


def test_work_spreads_over_three_nodes(three_nodes, connect):
    import os
    import time

    head, a, b = three_nodes
    connect(head)

    @ember.remote
    def where(i):
        start = time.time()
        time.sleep(0.2)
        return i, os.getpid(), os.environ.get("EMBER_TEST_NODE"), start, time.time()

    results = ember.get([where.remote(i) for i in range(20)], timeout=60)
    assert [r[0] for r in results] == list(range(20))
    by_node: dict[str, set[int]] = {}
    for _, pid, node, _, _ in results:
        by_node.setdefault(node, set()).add(pid)
    assert set(by_node) == {"head", "a", "b"}, f"tasks ran on {by_node}"
    # they really ran side by side (5 CPUs in all), not one node at a time
    most = max(sum(1 for r in results if r[3] <= t < r[4]) for t in (r[3] + 0.1 for r in results))
    assert most >= 3, f"at most {most} tasks ran at once"

    nodes = ember.nodes()
    assert len(nodes) == 3, nodes
    assert all(n["Alive"] for n in nodes), nodes
    assert {n["NodeID"] for n in nodes} == {head.node_id, a.node_id, b.node_id}
    assert sum(1 for n in nodes if n["IsHead"]) == 1

    total = ember.cluster_resources()
    assert total["CPU"] == pytest.approx(5.0), total
    assert total["node_a"] == pytest.approx(1.0), total
    assert total["node_b"] == pytest.approx(1.0), total
    assert sum(n["Resources"].get("CPU", 0) for n in nodes) == pytest.approx(5.0)

    pinned_a = ember.get([where.options(resources={"node_a": 1}).remote(i) for i in range(3)], timeout=30)
    assert {r[2] for r in pinned_a} == {"a"}, pinned_a
    pinned_b = ember.get(where.options(resources={"node_b": 0.5}).remote(0), timeout=30)
    assert pinned_b[2] == "b", pinned_b


def _pattern(nbytes: int, seed: int) -> np.ndarray:
    """Deterministic, non-trivial content (a wrong chunk order or a lost chunk changes the hash)."""
    return np.random.default_rng(seed).integers(0, 256, size=nbytes, dtype=np.uint8)


def test_200mib_array_to_a_worker_node(three_nodes, connect):
    head, _a, _b = three_nodes
    connect(head)
    arr = _pattern(ARRAY_BYTES, seed=4)
    expected_sum = int(arr.sum(dtype=np.uint64))
    expected_hash = hashlib.sha256(arr.data).hexdigest()
    ref = ember.put(arr)
    del arr

    @ember.remote(resources={"node_a": 1})
    def digest(x):
        import hashlib
        import os

        import numpy as np

        return (os.environ.get("EMBER_TEST_NODE"), x.shape, str(x.dtype), int(x.sum(dtype=np.uint64)),
                hashlib.sha256(x.data).hexdigest())

    node, shape, dtype, total, h = ember.get(digest.remote(ref), timeout=90)
    assert node == "a"
    assert shape == (ARRAY_BYTES,) and dtype == "uint8"
    assert total == expected_sum
    assert h == expected_hash


def test_200mib_array_from_a_worker_node(three_nodes, connect):
    head, _a, _b = three_nodes
    connect(head)

    @ember.remote(resources={"node_b": 1})
    def make(nbytes, seed):
        import os

        import numpy as np

        assert os.environ.get("EMBER_TEST_NODE") == "b"
        return np.random.default_rng(seed).integers(0, 256, size=nbytes, dtype=np.uint8)

    ref = make.remote(ARRAY_BYTES, 7)
    got = ember.get(ref, timeout=90)
    assert isinstance(got, np.ndarray)
    assert got.shape == (ARRAY_BYTES,) and got.dtype == np.uint8
    expected = _pattern(ARRAY_BYTES, seed=7)
    assert hashlib.sha256(got.data).hexdigest() == hashlib.sha256(expected.data).hexdigest()
    # and the same object read again (a second get of the same ref) is still intact
    again = ember.get(ref, timeout=90)
    assert int(again[-1]) == int(expected[-1]) and int(again[ARRAY_BYTES // 2]) == int(expected[ARRAY_BYTES // 2])


def test_200mib_array_between_worker_nodes(three_nodes, connect):
    """Made on node b, read on node a: the bytes go b's store -> head -> a's store, whole."""
    head, _a, _b = three_nodes
    connect(head)

    @ember.remote(resources={"node_b": 1})
    def make(nbytes, seed):
        import numpy as np

        return np.random.default_rng(seed).integers(0, 256, size=nbytes, dtype=np.uint8)

    @ember.remote(resources={"node_a": 1})
    def digest(x):
        import hashlib
        import os

        return os.environ.get("EMBER_TEST_NODE"), x.nbytes, hashlib.sha256(x.data).hexdigest()

    node, nbytes, h = ember.get(digest.remote(make.remote(ARRAY_BYTES, 9)), timeout=120)
    assert (node, nbytes) == ("a", ARRAY_BYTES)
    assert h == hashlib.sha256(_pattern(ARRAY_BYTES, seed=9).data).hexdigest()


def test_generator_on_a_worker_node_streams_to_a_remote_driver(three_nodes, connect):
    """Values yielded on a worker node (inline and through the store) reach a driver that
    reaches the cluster over gRPC, with backpressure and from an async actor there."""
    head, _a, _b = three_nodes
    connect(head)

    @ember.remote(resources={"node_a": 1}, _generator_backpressure_num_objects=2)
    def chunks(n, size):
        import os

        for i in range(n):
            yield os.environ.get("EMBER_TEST_NODE"), bytes([i]) * size

    got = [ember.get(r, timeout=90) for r in chunks.remote(4, 2 * MiB)]
    assert [(node, len(data), data[0]) for node, data in got] == [("a", 2 * MiB, i) for i in range(4)]
    assert [ember.get(r, timeout=90)[1] for r in chunks.remote(3, 10)] == [bytes([i]) * 10 for i in range(3)]

    @ember.remote(resources={"node_b": 1})
    class Ticker:
        async def ticks(self, n):
            import os

            for i in range(n):
                yield i, os.environ.get("EMBER_TEST_NODE")

    t = Ticker.remote()
    assert [ember.get(r, timeout=90) for r in t.ticks.remote(3)] == [(0, "b"), (1, "b"), (2, "b")]
