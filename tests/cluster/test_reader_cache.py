"""Objects across nodes (issue 4): a worker node keeps one copy of each large object its
workers read, in its own shared-memory store; every worker of the node maps that copy
zero-copy, the transfer from the head happens once, and the copy goes when the object is
freed. Tasks prefer a node that already holds their argument. Real head and worker nodes on
loopback."""

from __future__ import annotations

import os
import time

import ember
import numpy as np
import pytest

from .helpers import MiB, query, start_head, start_worker_node, wait_cluster, wait_until


@ember.remote
def _store_stats() -> dict:
    from ember import _context

    return _context.current_runtime()._node_store.stats()


def _stats_on(node: str, resource: str | None = None) -> dict:
    resources = {resource or f"node_{node}": 0.5}
    return ember.get(_store_stats.options(resources=resources).remote(), timeout=60)


def test_workers_of_a_node_share_one_copy_which_goes_when_freed(three_nodes, connect):
    head, _a, _b = three_nodes
    connect(head)
    data = np.arange(8 * MiB // 8, dtype=np.int64)  # 8 MiB: a store object
    ref = ember.put(data)
    before = _stats_on("a")

    @ember.remote(resources={"node_a": 0.5})
    def read(x):
        import os
        import time

        time.sleep(0.3)  # keep both of the node's CPUs busy, so two workers read it
        return int(x.sum()), os.getpid(), x.flags.writeable, x.flags.owndata

    results = ember.get([read.remote(ref) for _ in range(6)], timeout=60)
    after = _stats_on("a")
    assert {r[0] for r in results} == {int(data.sum())}
    assert len({r[1] for r in results}) >= 2, "expected two workers of node a to read it"
    assert not any(r[2] for r in results), "a shared copy must be read-only"
    assert not any(r[3] for r in results), "the array should be a view of the node's store"
    assert ref.hex() in after["objects"]
    assert after["misses"] - before["misses"] == 1, (before, after)
    fetched = after["fetched_bytes"] - before["fetched_bytes"]
    assert data.nbytes <= fetched < data.nbytes + 64 * 1024, "the object crossed more than once"
    assert after["hits"] - before["hits"] >= 5

    oid = ref.hex()
    del ref  # every reference gone: the head frees it and tells the node
    deadline = time.monotonic() + 15
    final = _stats_on("a")
    while (oid in final["objects"] or final["bytes_used"] > after["bytes_used"] - data.nbytes) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
        final = _stats_on("a")
    assert oid not in final["objects"], "the node's copy survived the object being freed"
    assert final["bytes_used"] <= after["bytes_used"] - data.nbytes, (after, final)


def test_a_copy_in_use_outlives_its_eviction(three_nodes, connect):
    """A worker still mapping an object when it is freed keeps reading valid bytes; the space
    is reused only once it lets go."""
    head, _a, _b = three_nodes
    connect(head)

    @ember.remote(resources={"node_b": 0.5}, num_cpus=0)
    class Holder:
        def keep(self, x):
            self.x = x
            return int(x[-1])

        def last(self):
            return int(self.x[-1]), int(self.x.sum())

        def drop(self):
            del self.x

    holder = Holder.remote()
    ref = ember.put(np.full(4 * MiB, 3, dtype=np.uint8))
    oid = ref.hex()
    assert ember.get(holder.keep.remote(ref), timeout=60) == 3
    del ref
    deadline = time.monotonic() + 15
    while oid in _stats_on("b")["objects"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the head frees the object and tells node b
    held = _stats_on("b")
    assert oid not in held["objects"]
    assert ember.get(holder.last.remote(), timeout=60) == (3, 3 * 4 * MiB)  # still valid bytes
    ember.get(holder.drop.remote(), timeout=60)
    deadline = time.monotonic() + 10
    while _stats_on("b")["bytes_used"] > held["bytes_used"] - 4 * MiB and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _stats_on("b")["bytes_used"] <= held["bytes_used"] - 4 * MiB, "the space was not given back"
    ember.kill(holder)


def test_tasks_go_to_the_node_that_holds_their_argument(three_nodes, connect):
    """Locality: once node a holds a copy of an argument, later tasks with that argument
    (free to run anywhere) go to node a while it has an idle worker."""
    head, _a, _b = three_nodes
    connect(head)
    ref = ember.put(np.ones(4 * MiB, dtype=np.uint8))

    @ember.remote(resources={"node_a": 0.5})
    def warm(x):
        return os.environ.get("EMBER_TEST_NODE")

    @ember.remote
    def anywhere(x):
        import os

        return os.environ.get("EMBER_TEST_NODE")

    assert ember.get(warm.remote(ref), timeout=60) == "a"
    placed = [ember.get(anywhere.remote(ref), timeout=60) for _ in range(5)]  # one at a time
    assert placed == ["a"] * 5, placed


def test_a_result_stays_on_the_node_that_made_it(three_nodes, connect):
    """A large result written on node b is kept in b's store as it goes to the head: a later
    task on b reads it without a transfer, one on a fetches it once."""
    head, _a, _b = three_nodes
    connect(head)

    @ember.remote(resources={"node_b": 0.5})
    def make(n):
        import numpy as np

        return np.arange(n, dtype=np.int64)

    def total_on(node: str):
        @ember.remote(resources={f"node_{node}": 0.5})
        def total(x):
            return int(x.sum()), x.flags.owndata

        return total

    n = 2 * MiB  # 16 MiB
    ref = make.remote(n)
    ember.wait([ref], timeout=60)
    b0, a0 = _stats_on("b"), _stats_on("a")
    assert ref.hex() in b0["objects"], "the maker's node kept no copy"
    expected = n * (n - 1) // 2
    assert ember.get(total_on("b").remote(ref), timeout=60) == (expected, False)
    b1 = _stats_on("b")
    assert b1["misses"] == b0["misses"] and b1["fetched_bytes"] == b0["fetched_bytes"]
    assert ember.get(total_on("a").remote(ref), timeout=60) == (expected, False)
    a1 = _stats_on("a")
    assert a1["misses"] - a0["misses"] == 1
    assert ember.get(ref, timeout=60).sum() == expected  # and the driver gets it from the head
    oid = ref.hex()
    del ref
    deadline = time.monotonic() + 15
    while (oid in _stats_on("a")["objects"] or oid in _stats_on("b")["objects"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert oid not in _stats_on("a")["objects"] and oid not in _stats_on("b")["objects"]


def test_a_full_node_store_makes_room_or_falls_back_to_a_private_copy(procs, tmp_short, connect):
    """A node store of 16 MiB: a third 6 MiB object pushes out the least recently used copy;
    an object larger than the whole store is read as a private copy, correctly."""
    head = start_head(procs, tmp_short, num_cpus=1)
    node = start_worker_node(procs, head, tmp_short, "s", num_cpus=1, resources={"small": 1},
                             store_bytes=16 * MiB)
    wait_cluster(head, alive_nodes=2)
    connect(head)

    @ember.remote(resources={"small": 1})
    def total(x):
        return int(x.sum()), x.flags.writeable

    refs = [ember.put(np.full(6 * MiB, i, dtype=np.uint8)) for i in (1, 2, 3)]
    for i, ref in enumerate(refs, 1):
        assert ember.get(total.remote(ref), timeout=60) == (i * 6 * MiB, False)
    stats = _stats_on("s", "small")
    assert stats["capacity"] == 16 * MiB
    assert refs[0].hex() not in stats["objects"] and refs[2].hex() in stats["objects"], stats
    assert stats["bytes_used"] <= stats["capacity"]

    def copies() -> dict[str, str]:
        (objects,) = query(head, ("list", "objects"))
        return {o["object_id"]: o["copies_on"] for o in objects}

    # the node tells the head (with its heartbeat) which copies it dropped for room
    assert wait_until(lambda: copies()[refs[0].hex()] == "", 10), copies()
    assert copies()[refs[2].hex()] == node.node_id[:12]

    big = ember.put(np.ones(24 * MiB, dtype=np.uint8))  # larger than the node's whole store
    assert ember.get(total.remote(big), timeout=60) == (24 * MiB, True)  # a private, writable copy
    after = _stats_on("s", "small")
    assert big.hex() not in after["objects"] and after["misses"] == stats["misses"]
    # the evicted one is fetched again when needed
    assert ember.get(total.remote(refs[0]), timeout=60) == (6 * MiB, False)


def test_mixed_traffic_on_small_node_stores_stays_consistent(procs, tmp_short, connect):
    """Rounds of puts and results made on either node, read in random combinations on either
    node or the head, through stores too small to hold them all; then actors holding copies
    are killed. Every read is checked by hash, and in the end nothing is pinned or used."""
    import hashlib
    import random

    head = start_head(procs, tmp_short, num_cpus=1, store_bytes=512 * MiB)
    start_worker_node(procs, head, tmp_short, "x", num_cpus=2, resources={"x": 100}, store_bytes=24 * MiB)
    start_worker_node(procs, head, tmp_short, "y", num_cpus=2, resources={"y": 100}, store_bytes=40 * MiB)
    wait_cluster(head, alive_nodes=3)
    connect(head)

    @ember.remote
    def digest(*xs):
        import hashlib

        return [hashlib.sha256(x.data).hexdigest() for x in xs]

    @ember.remote
    def make(n, seed):
        import numpy as np

        return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8)

    def pattern(n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8)

    rng = random.Random(7)
    for rnd in range(4):
        objs = []
        for i in range(10):
            n, seed = rng.choice([200_000, 2 * MiB, 5 * MiB, 9 * MiB]), rnd * 100 + i
            expected = hashlib.sha256(pattern(n, seed).data).hexdigest()
            if rng.random() < 0.5:
                objs.append((ember.put(pattern(n, seed)), expected))
            else:
                objs.append((make.options(resources={rng.choice("xy"): 1}).remote(n, seed), expected))
        calls = []
        for _ in range(30):
            picked = rng.sample(objs, rng.randint(1, 3))
            where = rng.choice(["x", "y", None])
            f = digest.options(resources={where: 1}) if where else digest
            calls.append((f.remote(*[ref for ref, _ in picked]), [h for _, h in picked]))
        for ref, expected in calls:
            assert ember.get(ref, timeout=120) == expected

    @ember.remote(num_cpus=0, resources={"x": 1})
    class Holder:
        def keep(self, *xs):
            self.xs = xs
            return len(xs)

    holders = [Holder.remote() for _ in range(3)]
    refs = [ember.put(np.full(3 * MiB, i, dtype=np.uint8)) for i in range(3)]
    assert ember.get([h.keep.remote(*refs) for h in holders], timeout=60) == [3, 3, 3]
    assert _stats_on("x", "x")["pinned"] == 3
    del refs, objs, calls, ref, picked  # every reference to the objects
    for h in holders:
        ember.kill(h)  # their pins end with their connections

    def drained() -> bool:
        return all(_stats_on(n, n)["bytes_used"] == 0 and _stats_on(n, n)["pinned"] == 0 for n in "xy")

    assert wait_until(drained, 60), [_stats_on(n, n) for n in "xy"]


def test_a_node_fetches_from_another_node_that_has_a_copy(three_nodes, connect):
    """Node to node: once node a holds a copy, node b's store streams it from a's peer port
    (not from the head); the bytes are the same."""
    head, _a, _b = three_nodes
    connect(head)
    data = np.random.default_rng(11).integers(0, 256, size=24 * MiB, dtype=np.uint8)
    ref = ember.put(data)

    @ember.remote
    def digest(x):
        import hashlib

        return hashlib.sha256(x.data).hexdigest()

    a0, b0 = _stats_on("a"), _stats_on("b")
    h_a = ember.get(digest.options(resources={"node_a": 0.5}).remote(ref), timeout=60)
    h_b = ember.get(digest.options(resources={"node_b": 0.5}).remote(ref), timeout=60)
    a1, b1 = _stats_on("a"), _stats_on("b")
    import hashlib

    assert h_a == h_b == hashlib.sha256(data.data).hexdigest()
    assert (a1["misses"] - a0["misses"], a1["peer_fetches"] - a0["peer_fetches"]) == (1, 0)  # from the head
    assert (b1["misses"] - b0["misses"], b1["peer_fetches"] - b0["peer_fetches"]) == (1, 1)  # from a
    assert a1["copies_served"] - a0["copies_served"] == 1


def test_peer_port_wants_the_token_and_copies_survive_a_peer_without_them(procs, tmp_short, connect):
    """A worker node's peer port refuses calls without the cluster token; and when the node
    the head names no longer has the copy (dropped for room), the reader gets it from the
    head instead, correctly."""
    import grpc
    from ember._proto import node_pb2 as pb
    from ember._remote import channel

    head = start_head(procs, tmp_short, num_cpus=1)
    start_worker_node(procs, head, tmp_short, "p", num_cpus=1, resources={"p": 1}, store_bytes=16 * MiB)
    start_worker_node(procs, head, tmp_short, "q", num_cpus=1, resources={"q": 1})
    wait_cluster(head, alive_nodes=3)
    (nodes,) = query(head, ("nodes", None))
    peer = [n["peer_address"] for n in nodes if not n["IsHead"]][0]
    chan = channel(peer)
    try:
        read_copy = chan.unary_stream("/ember.v1.Node/ReadCopy", request_serializer=pb.CopyRequest.SerializeToString)
        for meta in ([], [("authorization", "Bearer wrong")]):
            with pytest.raises(grpc.RpcError) as err:
                list(read_copy(pb.CopyRequest(object_id=b"x" * 18), metadata=meta, timeout=10))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:  # with the token: it just has no such copy
            list(read_copy(pb.CopyRequest(object_id=b"x" * 18), metadata=[("authorization", f"Bearer {head.token}")],
                           timeout=10))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        chan.close()

    connect(head)

    @ember.remote
    def total(x):
        return int(x.sum())

    x, y = (ember.put(np.full(9 * MiB, v, dtype=np.uint8)) for v in (1, 2))
    on_p, on_q = total.options(resources={"p": 1}), total.options(resources={"q": 1})
    assert ember.get(on_p.remote(x), timeout=60) == 9 * MiB
    assert ember.get(on_p.remote(y), timeout=60) == 18 * MiB  # pushes x out of p's 16 MiB store
    assert x.hex() not in _stats_on("p", "p")["objects"]
    q0 = _stats_on("q", "q")
    assert ember.get(on_q.remote(x), timeout=60) == 9 * MiB  # p may still be named: it says no
    q1 = _stats_on("q", "q")
    assert q1["misses"] - q0["misses"] == 1 and q1["peer_fetches"] == q0["peer_fetches"]
