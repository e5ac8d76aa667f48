"""Objects: put/get/wait semantics and argument errors, timeouts, ordering, and zero-copy
read-only numpy for large objects in the shared-memory store."""

from __future__ import annotations

import time

import ember
import ember.exceptions as exc
import numpy as np
import pytest

from .helpers import wait_until

CLUSTER_ARGS = {"num_cpus": 4}

LARGE = 4 * 1024 * 1024  # bytes; well above the 100 KiB inline limit


@pytest.fixture(scope="module")
def sleeper(cluster):
    @ember.remote
    def sleep_then(seconds, value=None):
        import time

        time.sleep(seconds)
        return value

    return sleep_then


# --------------------------------------------------------------------------- put/get


@pytest.mark.parametrize(
    "value",
    [
        0,
        -7,
        "text",
        None,
        {"a": [1, 2, (3, 4)], "b": {"c"}},
        b"\x00" * 10,
        b"\x01" * (200 * 1024),  # just above the inline limit
        list(range(50_000)),
    ],
    ids=["zero", "int", "str", "none", "nested", "small-bytes", "large-bytes", "long-list"],
)
def test_put_get_roundtrip(cluster, value):
    ref = ember.put(value)
    assert isinstance(ref, ember.ObjectRef)
    assert ember.get(ref, timeout=30) == value


def test_put_get_numpy(cluster):
    small = np.arange(10, dtype=np.float32)
    large = np.random.default_rng(0).random(LARGE // 8)
    got_small = ember.get(ember.put(small), timeout=30)
    got_large = ember.get(ember.put(large), timeout=30)
    assert got_small.dtype == np.float32 and np.array_equal(got_small, small)
    assert got_large.dtype == large.dtype and np.array_equal(got_large, large)


def test_each_put_is_a_new_object(cluster):
    a, b = ember.put(1), ember.put(1)
    assert a != b
    assert len({a, b, a}) == 2  # refs are hashable
    assert ember.get([a, b], timeout=30) == [1, 1]


def test_get_single_and_list(cluster):
    refs = [ember.put(i) for i in range(5)]
    assert ember.get(refs, timeout=30) == [0, 1, 2, 3, 4]
    assert ember.get(refs[3], timeout=30) == 3
    assert ember.get([], timeout=30) == []


def test_get_keeps_order(cluster, sleeper):
    # Later refs finish first; the result still follows the input order.
    refs = [sleeper.remote(0.5 - 0.1 * i, i) for i in range(5)]
    assert ember.get(refs, timeout=30) == [0, 1, 2, 3, 4]


def test_ref_inside_a_put_object(cluster):
    inner = ember.put("inner")
    outer = ember.put({"ref": inner})
    got = ember.get(outer, timeout=30)
    assert isinstance(got["ref"], ember.ObjectRef)
    assert ember.get(got["ref"], timeout=30) == "inner"


# ---------------------------------------------------------------- argument errors


def test_get_rejects_non_refs(cluster):
    with pytest.raises((TypeError, ValueError)):
        ember.get(123)
    with pytest.raises((TypeError, ValueError)):
        ember.get([ember.put(1), 123])


def test_wait_rejects_a_single_ref(cluster):
    with pytest.raises(TypeError):
        ember.wait(ember.put(1))


def test_wait_rejects_duplicates(cluster):
    ref = ember.put(1)
    with pytest.raises(ValueError):
        ember.wait([ref, ref])


def test_wait_rejects_num_returns_above_len(cluster):
    with pytest.raises(ValueError):
        ember.wait([ember.put(1)], num_returns=2)


def test_wait_empty_list(cluster):
    assert ember.wait([]) == ([], [])


# ------------------------------------------------------------------------ timeouts


def test_get_timeout_error(cluster, sleeper):
    ref = sleeper.remote(1.5)
    t0 = time.monotonic()
    with pytest.raises(exc.GetTimeoutError) as info:
        ember.get(ref, timeout=0.3)
    elapsed = time.monotonic() - t0
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, exc.RayError)
    assert 0.25 <= elapsed < 2.5, elapsed
    # The object is still fine afterwards.
    assert ember.get(ref, timeout=30) is None


def test_get_timeout_zero_polls(cluster, sleeper):
    ref = sleeper.remote(1.5)
    t0 = time.monotonic()
    with pytest.raises(exc.GetTimeoutError):
        ember.get(ref, timeout=0)
    assert time.monotonic() - t0 < 1.0
    ready = ember.put("here")
    assert ember.get(ready, timeout=0) == "here"
    assert ember.get(ref, timeout=30) is None


def test_wait_timeout_zero_polls(cluster, sleeper):
    slow = sleeper.remote(1.5)
    done = ember.put("done")
    t0 = time.monotonic()
    assert ember.wait([slow], timeout=0) == ([], [slow])
    assert time.monotonic() - t0 < 1.0
    ready, not_ready = ember.wait([slow, done], num_returns=2, timeout=0)
    assert ready == [done] and not_ready == [slow]
    assert ember.get(slow, timeout=30) is None


def test_wait_timeout_returns_partial(cluster, sleeper):
    fast, slow = sleeper.remote(0.0, "fast"), sleeper.remote(2.5, "slow")
    t0 = time.monotonic()
    ready, not_ready = ember.wait([slow, fast], num_returns=2, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert ready == [fast] and not_ready == [slow]
    assert 0.9 <= elapsed < 2.4, elapsed
    assert ember.get(slow, timeout=30) == "slow"


# ------------------------------------------------------------------- wait ordering


def _wait_idle(cpus: float = 4.0) -> None:
    idle = wait_until(lambda: ember.available_resources().get("CPU", 0.0) == cpus, 20)
    assert idle, f"cluster not idle: available={ember.available_resources()}"


def test_wait_one_at_a_time_gives_completion_order(cluster, sleeper):
    _wait_idle()  # the four tasks must run side by side
    delays = [0.9, 0.0, 0.6, 0.3]
    refs = [sleeper.remote(d, i) for i, d in enumerate(delays)]
    order = []
    pending = list(refs)
    while pending:
        ready, pending = ember.wait(pending, timeout=10)
        assert len(ready) == 1
        order.append(ember.get(ready[0], timeout=10))
    assert order == [1, 3, 2, 0]


def test_wait_num_returns(cluster, sleeper):
    _wait_idle()
    refs = [sleeper.remote(2.0, 0), sleeper.remote(0.3, 1), sleeper.remote(0.0, 2)]
    ready, not_ready = ember.wait(refs, num_returns=2, timeout=10)
    assert len(ready) == 2 and len(not_ready) == 1
    assert set(ready) == {refs[1], refs[2]}
    assert not_ready == [refs[0]]
    # Ray documents that both lists keep the input order.
    assert ready == [refs[1], refs[2]]


def test_wait_default_returns_one(cluster, sleeper):
    refs = [sleeper.remote(0.0, i) for i in range(4)]
    ember.get(refs, timeout=30)
    ready, not_ready = ember.wait(refs)
    assert len(ready) == 1 and len(not_ready) == 3
    assert set(ready) | set(not_ready) == set(refs)
    # not_ready keeps the input order
    assert not_ready == [r for r in refs if r not in ready]


def test_wait_accepts_fetch_local(cluster, sleeper):
    ref = sleeper.remote(0.0, "x")
    ready, not_ready = ember.wait([ref], num_returns=1, timeout=30, fetch_local=True)
    assert ready == [ref] and not_ready == []


def test_get_list_with_timeout(cluster, sleeper):
    fast, slow = sleeper.remote(0.0, 1), sleeper.remote(1.5, 2)
    with pytest.raises(exc.GetTimeoutError):
        ember.get([fast, slow], timeout=0.3)
    assert ember.get([fast, slow], timeout=30) == [1, 2]


def test_wait_all_without_timeout(cluster, sleeper):
    refs = [sleeper.remote(0.1 * i, i) for i in range(4)]
    ready, not_ready = ember.wait(refs, num_returns=4)
    assert not not_ready and set(ready) == set(refs)


def test_wait_counts_failed_tasks_as_ready(cluster):
    @ember.remote
    def boom():
        raise ValueError("boom")

    ref = boom.remote()
    ready, not_ready = ember.wait([ref], timeout=30)
    assert ready == [ref] and not_ready == []


# ------------------------------------------------------------- large objects, zero copy


def test_large_put_is_zero_copy_and_read_only(cluster):
    arr = np.arange(LARGE // 8, dtype=np.float64)
    ref = ember.put(arr)
    a = ember.get(ref, timeout=30)
    b = ember.get(ref, timeout=30)
    assert np.array_equal(a, arr)
    assert a.flags.writeable is False
    assert np.shares_memory(a, b), "two gets of one large object should map the same memory"
    assert not np.shares_memory(a, arr)
    with pytest.raises(ValueError):
        a[0] = 1.0
    # The driver's own array stays writable and independent.
    arr[0] = -1.0
    assert ember.get(ref, timeout=30)[0] == 0.0


def test_large_task_result_is_zero_copy_and_read_only(cluster):
    @ember.remote
    def make(n):
        import numpy as np

        return np.ones(n, dtype=np.int64)

    ref = make.remote(LARGE // 8)
    a = ember.get(ref, timeout=30)
    b = ember.get(ref, timeout=30)
    assert a.shape == (LARGE // 8,) and int(a.sum()) == LARGE // 8
    assert a.flags.writeable is False
    assert np.shares_memory(a, b)


def test_large_argument_arrives_read_only_in_the_task(cluster):
    @ember.remote
    def inspect(arr):
        return bool(arr.flags.writeable), float(arr[-1])

    arr = np.arange(LARGE // 8, dtype=np.float64)
    assert ember.get(inspect.remote(ember.put(arr)), timeout=30) == (False, float(LARGE // 8 - 1))


def test_large_object_inside_a_container(cluster):
    payload = {"name": "weights", "data": np.full(LARGE // 8, 3.0), "tags": ["x"]}
    got = ember.get(ember.put(payload), timeout=30)
    assert got["name"] == "weights" and got["tags"] == ["x"]
    assert np.array_equal(got["data"], payload["data"])


def test_object_outlives_driver_ref_while_a_task_uses_it(cluster, sleeper):
    """A ref passed to a pending task keeps the object alive after the caller drops it."""

    @ember.remote
    def total(arr):
        return float(arr.sum())

    gate = sleeper.remote(0.5)

    @ember.remote
    def after(_gate, arr_ref_list):
        return float(ember.get(arr_ref_list[0]).sum())

    ref = ember.put(np.full(LARGE // 8, 2.0))
    direct = total.remote(ref)
    nested = after.remote(gate, [ref])
    del ref
    import gc

    gc.collect()
    expected = 2.0 * (LARGE // 8)
    assert ember.get(direct, timeout=30) == expected
    assert ember.get(nested, timeout=30) == expected


def test_ref_in_a_container_keeps_the_object_alive(cluster):
    inner = ember.put(np.full(LARGE // 8, 4.0))
    outer = ember.put([inner])
    del inner
    import gc

    gc.collect()
    time.sleep(0.3)
    (got_inner,) = ember.get(outer, timeout=30)
    assert float(ember.get(got_inner, timeout=30)[0]) == 4.0


def test_get_many_refs(cluster):
    refs = [ember.put(i) for i in range(10_000)]
    assert ember.get(refs, timeout=60) == list(range(10_000))
    ready, not_ready = ember.wait(refs, num_returns=10_000, timeout=30)
    assert len(ready) == 10_000 and not not_ready
