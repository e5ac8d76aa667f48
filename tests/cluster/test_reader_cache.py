"""Workers on a worker node keep the large arguments they streamed from the head, so the
next task with the same argument reads it locally; when the object is freed, the head tells
them and the copies go (issue 4: objects cached at the reader, freed everywhere). Real head
and worker nodes on loopback."""

from __future__ import annotations

import time

import ember
import numpy as np

from .helpers import MiB


def test_argument_is_cached_on_the_reader_and_evicted_when_freed(three_nodes, connect):
    head, _a, _b = three_nodes
    connect(head)
    ref = ember.put(np.arange(8 * MiB // 8, dtype=np.int64))  # 8 MiB: goes to the store
    oid = ref.hex()

    @ember.remote(resources={"node_a": 0.5})
    def total_and_cache(x, oid_hex):
        import os

        from ember import _context

        rt = _context.current_runtime()
        return int(x.sum()), os.getpid(), oid_hex in {k.hex() for k in rt._cache}, x.flags.writeable

    first = ember.get(total_and_cache.remote(ref, oid), timeout=60)
    expected = int(np.arange(8 * MiB // 8, dtype=np.int64).sum())
    assert first[0] == expected
    assert first[2], "the worker did not keep the argument it streamed"
    assert first[3] is False  # a cached copy is shared by later tasks: read-only

    @ember.remote(resources={"node_a": 0.5})
    def cached_in(oid_hex):
        import os

        from ember import _context

        return os.getpid(), oid_hex in {k.hex() for k in _context.current_runtime()._cache}

    # the same argument again, on the same worker: still correct (from the cache)
    again = [r for r in ember.get([total_and_cache.remote(ref, oid) for _ in range(4)], timeout=60)
             if r[1] == first[1]]
    assert all(r[0] == expected for r in again)

    del ref  # every reference gone: the head frees it and tells the readers
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        seen = [hit for pid, hit in ember.get([cached_in.remote(oid) for _ in range(4)], timeout=60)
                if pid == first[1]]
        if seen and not any(seen):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the cached copy survived the object being freed")


def test_tasks_go_where_their_argument_is_cached(three_nodes, connect):
    """Locality: once a worker on node a holds a copy of an argument, later tasks with that
    argument (free to run anywhere) go to that worker while it is idle."""
    head, _a, _b = three_nodes
    connect(head)
    ref = ember.put(np.ones(4 * MiB, dtype=np.uint8))

    @ember.remote(resources={"node_a": 0.5})
    def warm(x):
        import os

        return os.getpid()

    @ember.remote
    def anywhere(x):
        import os

        return os.getpid(), os.environ.get("EMBER_TEST_NODE")

    reader = ember.get(warm.remote(ref), timeout=60)
    placed = [ember.get(anywhere.remote(ref), timeout=60) for _ in range(5)]  # one at a time
    assert all(pid == reader and node == "a" for pid, node in placed), placed
