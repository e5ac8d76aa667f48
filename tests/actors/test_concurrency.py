"""Concurrency: threaded actors (max_concurrency=N) and async actors run calls at once;
a default actor runs one call at a time."""

from __future__ import annotations

import asyncio
import threading
import time

import ember

CLUSTER_ARGS = {"num_cpus": 4}
T = 30  # every get is bounded (below the 60 s pytest timeout)


@ember.remote
class Sleeper:
    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def nap(self, seconds):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        start = time.time()
        time.sleep(seconds)
        end = time.time()
        with self.lock:
            self.running -= 1
        return start, end, threading.get_ident()

    def get_peak(self):
        return self.peak


@ember.remote
class AsyncSleeper:
    def __init__(self):
        self.running = 0
        self.peak = 0

    async def nap(self, seconds):
        self.running += 1
        self.peak = max(self.peak, self.running)
        start = time.time()
        await asyncio.sleep(seconds)
        end = time.time()
        self.running -= 1
        return start, end, threading.get_ident()

    async def get_peak(self):
        return self.peak

    def sync_method(self, x):
        return x * 2


def _overlapping(intervals) -> bool:
    """True when every interval overlaps every other one (all ran at the same time)."""
    return max(s for s, _, _ in intervals) < min(e for _, e, _ in intervals)


def test_default_actor_runs_one_call_at_a_time(cluster):
    a = Sleeper.remote()
    got = ember.get([a.nap.remote(0.1) for _ in range(4)], timeout=T)
    assert ember.get(a.get_peak.remote(), timeout=T) == 1
    ordered = sorted(got)
    for (_, end, _), (start, _, _) in zip(ordered, ordered[1:], strict=False):
        assert start >= end - 1e-3


def test_threaded_actor_runs_n_calls_at_once(cluster):
    n = 4
    a = Sleeper.options(max_concurrency=n).remote()
    ember.get(a.get_peak.remote(), timeout=T)  # the actor is up
    start = time.monotonic()
    got = ember.get([a.nap.remote(0.5) for _ in range(n)], timeout=T)
    elapsed = time.monotonic() - start
    assert _overlapping(got), got
    assert len({tid for _, _, tid in got}) == n  # each on its own thread
    assert ember.get(a.get_peak.remote(), timeout=T) == n
    assert elapsed < 1.5, f"{n} calls of 0.5 s took {elapsed:.2f}s with max_concurrency={n}"


def test_threaded_actor_caps_at_max_concurrency(cluster):
    a = Sleeper.options(max_concurrency=2).remote()
    ember.get([a.nap.remote(0.2) for _ in range(6)], timeout=T)
    assert ember.get(a.get_peak.remote(), timeout=T) == 2


def test_async_actor_runs_calls_concurrently_on_one_loop(cluster):
    a = AsyncSleeper.remote()
    ember.get(a.get_peak.remote(), timeout=T)  # the actor is up
    start = time.monotonic()
    got = ember.get([a.nap.remote(0.5) for _ in range(20)], timeout=T)
    elapsed = time.monotonic() - start
    assert _overlapping(got)
    assert len({tid for _, _, tid in got}) == 1  # one event loop thread
    assert ember.get(a.get_peak.remote(), timeout=T) == 20
    assert elapsed < 2.0, f"20 async calls of 0.5 s took {elapsed:.2f}s"


def test_async_actor_max_concurrency_limits_running_coroutines(cluster):
    a = AsyncSleeper.options(max_concurrency=3).remote()
    ember.get([a.nap.remote(0.1) for _ in range(9)], timeout=T)
    assert ember.get(a.get_peak.remote(), timeout=T) == 3


def test_async_actor_sync_method_still_works(cluster):
    a = AsyncSleeper.remote()
    assert ember.get(a.sync_method.remote(21), timeout=T) == 42


@ember.remote
def add_one(x):
    return x + 1


@ember.remote
class AsyncCaller:
    async def chain(self, other, x):
        # an async actor awaits refs: from another actor and from a task
        doubled = await other.sync_method.remote(x)
        return await add_one.remote(doubled)


def test_async_actor_awaits_object_refs(cluster):
    other = AsyncSleeper.remote()
    caller = AsyncCaller.remote()
    assert ember.get(caller.chain.remote(other, 5), timeout=T) == 11


def test_driver_can_await_actor_calls(cluster):
    a = AsyncSleeper.remote()

    async def main():
        results = await asyncio.wait_for(
            asyncio.gather(*[a.sync_method.remote(i) for i in range(5)]), timeout=T
        )
        return results

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]


@ember.remote
def triple(x):
    return 3 * x


@ember.remote
class Gatherer:
    """Threaded: every call submits a task and waits on it with ember.get."""

    def work(self, x):
        time.sleep(0.1)
        return ember.get(triple.remote(x), timeout=60)

    @ember.method(num_returns=2)
    async def split(self, x):
        await asyncio.sleep(0)
        return x, -x


def test_threaded_actor_calls_get_from_many_threads(cluster):
    g = Gatherer.options(max_concurrency=4).remote()
    assert ember.get([g.work.remote(i) for i in range(16)], timeout=T) == [3 * i for i in range(16)]


def test_async_method_with_num_returns(cluster):
    g = Gatherer.remote()
    a, b = g.split.remote(4)
    assert ember.get([a, b], timeout=T) == [4, -4]
