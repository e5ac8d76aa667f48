"""Ordering: one caller's calls run in submission order, even when an earlier call's
argument is still being computed; different callers do not block each other."""

from __future__ import annotations

import random
import time

import ember
import pytest

CLUSTER_ARGS = {"num_cpus": 4}
T = 30  # every get is bounded (below the 60 s pytest timeout)


@ember.remote
class Recorder:
    def __init__(self):
        self.seen = []

    def append(self, x):
        self.seen.append(x)
        return x

    def log(self):
        return list(self.seen)

    def clear(self):
        self.seen = []


@ember.remote
def delayed(x, seconds):
    time.sleep(seconds)
    return x


@ember.remote
def submit_in_order(rec, n, max_delay):
    """A worker as the caller: submits n calls with delayed arguments, returns when done."""
    import random
    import time

    import ember

    @ember.remote
    def later(x, seconds):
        time.sleep(seconds)
        return x

    refs = [rec.append.remote(later.remote(i, random.uniform(0, max_delay))) for i in range(n)]
    return ember.get(refs, timeout=60)


@ember.remote
class Caller:
    """An actor as the caller."""

    def submit_in_order(self, rec, n, max_delay):
        import random
        import time

        @ember.remote
        def later(x, seconds):
            time.sleep(seconds)
            return x

        refs = [rec.append.remote(later.remote(i, random.uniform(0, max_delay))) for i in range(n)]
        return ember.get(refs, timeout=60)


def test_calls_run_in_submission_order_with_delayed_arguments(cluster):
    rng = random.Random(1234)
    rec = Recorder.remote()
    n = 100
    arg_refs = [delayed.remote(i, rng.uniform(0.0, 0.05)) for i in range(n)]
    results = [rec.append.remote(a) for a in arg_refs]
    assert ember.get(results, timeout=T) == list(range(n))
    assert ember.get(rec.log.remote(), timeout=T) == list(range(n))


def test_many_calls_in_flight_keep_their_order(cluster):
    rec = Recorder.remote()
    refs = [rec.append.remote(i) for i in range(2000)]
    assert ember.get(refs, timeout=T) == list(range(2000))
    assert ember.get(rec.log.remote(), timeout=T) == list(range(2000))


def test_order_kept_when_later_calls_have_ready_arguments(cluster):
    rec = Recorder.remote()
    slow = delayed.remote("slow", 0.5)
    first = rec.append.remote(slow)  # waits for its argument
    rest = [rec.append.remote(i) for i in range(5)]  # plain values, ready at once
    ember.get(rest + [first], timeout=T)
    assert ember.get(rec.log.remote(), timeout=T) == ["slow", 0, 1, 2, 3, 4]


def test_order_kept_for_caller_inside_a_task(cluster):
    rec = Recorder.remote()
    assert ember.get(submit_in_order.remote(rec, 30, 0.03), timeout=T) == list(range(30))
    assert ember.get(rec.log.remote(), timeout=T) == list(range(30))


def test_order_kept_for_caller_inside_an_actor(cluster):
    rec = Recorder.remote()
    caller = Caller.remote()
    assert ember.get(caller.submit_in_order.remote(rec, 30, 0.03), timeout=T) == list(range(30))
    assert ember.get(rec.log.remote(), timeout=T) == list(range(30))


def test_other_callers_are_not_blocked_by_a_waiting_call(cluster):
    rec = Recorder.remote()
    ember.get(rec.log.remote(), timeout=T)  # the actor is up
    gate = delayed.remote("A", 3.0)

    @ember.remote
    def caller_a(rec, arg_box):
        # caller A: a call whose argument is still being computed
        return ember.get(rec.append.remote(arg_box[0]), timeout=60)

    a_done = caller_a.remote(rec, [gate])
    time.sleep(0.3)  # caller A's call is queued behind its argument by now
    start = time.monotonic()
    b_refs = [rec.append.remote(f"B{i}") for i in range(3)]  # caller B: the driver
    assert ember.get(b_refs, timeout=T) == ["B0", "B1", "B2"]
    elapsed = time.monotonic() - start
    ready, _ = ember.wait([a_done], timeout=0)
    assert not ready, "caller A's call should still be waiting for its argument"
    assert elapsed < 2.5, f"caller B waited {elapsed:.2f}s behind caller A's pending argument"
    assert ember.get(a_done, timeout=T) == "A"
    assert ember.get(rec.log.remote(), timeout=T) == ["B0", "B1", "B2", "A"]


def test_two_task_callers_each_keep_their_order(cluster):
    rec = Recorder.remote()
    refs = [submit_in_order.remote(rec, 20, 0.02) for _ in range(2)]
    assert ember.get(refs, timeout=T) == [list(range(20))] * 2
    log = ember.get(rec.log.remote(), timeout=T)
    assert sorted(log) == sorted(list(range(20)) * 2)
    # interleaved, but each caller's subsequence is in order: every value appears twice and
    # the k-th occurrence of i comes before the k-th occurrence of i+1
    for k in (0, 1):
        positions = [[j for j, v in enumerate(log) if v == i][k] for i in range(20)]
        assert positions == sorted(positions), log


@ember.remote
def fails_later(seconds):
    time.sleep(seconds)
    raise ValueError("argument-failed-5")


def test_call_with_failed_argument_does_not_block_later_calls(cluster):
    rec = Recorder.remote()
    ember.get(rec.log.remote(), timeout=T)
    first = rec.append.remote(fails_later.remote(0.5))  # its argument will fail
    later = [rec.append.remote(i) for i in range(3)]  # ready, but queued behind `first`
    with pytest.raises(ValueError, match="argument-failed-5"):
        ember.get(first, timeout=60)
    assert ember.get(later, timeout=60) == [0, 1, 2]
    assert ember.get(rec.log.remote(), timeout=T) == [0, 1, 2]


def test_call_with_already_failed_argument(cluster):
    rec = Recorder.remote()
    bad = fails_later.remote(0)
    with pytest.raises(ValueError):
        ember.get(bad, timeout=T)
    with pytest.raises(ValueError, match="argument-failed-5"):
        ember.get(rec.append.remote(bad), timeout=T)
    assert ember.get(rec.append.remote("ok"), timeout=T) == "ok"

