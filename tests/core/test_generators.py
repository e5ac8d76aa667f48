"""Generator tasks and actor methods as Ray documents them (Ray 2.x "Ray Generators" and
"Dynamic generators"): a remote function or method that yields streams its values back as an
``ObjectRefGenerator`` (each ref ready before the task ends), errors raised midway are the
next ref's, ``_generator_backpressure_num_objects`` pauses the generator, ``num_returns=
"dynamic"`` returns a ``DynamicObjectRefGenerator``, async generators run in async actors,
retries re-run the generator without repeating what the caller has, and ``cancel(gen)`` ends
it. Remote code and the test meet through files in tmp_path (no fixed sleeps: each side
waits for the file it needs)."""

from __future__ import annotations

import asyncio
import os

import ember
import ember.exceptions as exc
import pytest
from ember import api

from .helpers import wait_until

CLUSTER_ARGS = {"num_cpus": 2}


def _file_waiter():
    """A function remote code calls to wait until the test creates a file (made here so that
    it is shipped by value with the remote function)."""

    def wait_for_file(path: str, timeout: float = 60.0) -> None:
        import os
        import time

        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} never appeared")
            time.sleep(0.01)

    return wait_for_file


def _count_lines(path) -> int:
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


def test_values_arrive_while_the_task_still_runs(cluster, tmp_path):
    gate = str(tmp_path / "go")
    _wait_for_file = _file_waiter()

    @ember.remote
    def two_halves(gate):
        yield "first"
        _wait_for_file(gate)  # the task goes on only once the caller has read the first value
        yield "second"

    gen = two_halves.remote(gate)
    assert isinstance(gen, ember.ObjectRefGenerator)
    first = next(gen)
    assert isinstance(first, ember.ObjectRef)
    assert ember.get(first, timeout=60) == "first"
    assert not gen.is_finished()
    open(gate, "w").close()
    assert [ember.get(r, timeout=60) for r in gen] == ["second"]
    assert gen.is_finished()
    with pytest.raises(StopIteration):
        next(gen)


def test_for_loop_gives_every_value_in_order_and_large_values_use_the_store(cluster):
    @ember.remote
    def numbers(n, big):
        for i in range(n):
            yield bytes([i]) * big if big else i

    assert [ember.get(r) for r in numbers.remote(50, 0)] == list(range(50))
    values = [ember.get(r) for r in numbers.remote(3, 300_000)]  # above the inline limit
    assert [(len(v), v[0]) for v in values] == [(300_000, 0), (300_000, 1), (300_000, 2)]


def test_error_midway_is_the_next_ref_then_iteration_stops(cluster):
    class Broken(Exception):
        pass

    @ember.remote
    def fails_after_two():
        yield 1
        yield 2
        raise Broken("third value failed")

    gen = fails_after_two.remote()
    assert ember.get(next(gen)) == 1
    assert ember.get(next(gen)) == 2
    err_ref = next(gen)
    with pytest.raises(Broken, match="third value failed"):
        ember.get(err_ref)
    with pytest.raises(exc.RayTaskError):
        ember.get(err_ref)
    with pytest.raises(StopIteration):
        next(gen)


def test_explicit_streaming_and_options(cluster):
    @ember.remote(num_returns="streaming")
    def letters():
        yield from "abc"

    assert [ember.get(r) for r in letters.remote()] == ["a", "b", "c"]

    @ember.remote
    def count(n):
        yield from range(n)

    assert [ember.get(r) for r in count.options(num_returns="streaming").remote(3)] == [0, 1, 2]
    # a static num_returns keeps Ray's meaning: the yields are the returns
    assert ember.get(count.options(num_returns=2).remote(2)) == [0, 1]
    with pytest.raises(ValueError, match="num_returns"):
        count.options(num_returns="lots")


def test_async_for_in_async_code(cluster):
    @ember.remote
    def squares(n):
        for i in range(n):
            yield i * i

    async def consume():
        out = []
        async for ref in squares.remote(4):
            out.append(await ref)
        return out

    assert asyncio.run(consume()) == [0, 1, 4, 9]


def test_wait_on_a_generator_is_ready_when_next_would_not_block(cluster, tmp_path):
    gate = str(tmp_path / "go")
    _wait_for_file = _file_waiter()

    @ember.remote
    def slow_second(gate):
        yield 1
        _wait_for_file(gate)
        yield 2

    gen = slow_second.remote(gate)
    ready, rest = ember.wait([gen], timeout=60)
    assert ready == [gen] and rest == []
    assert ember.get(next(gen)) == 1
    ready, rest = ember.wait([gen], timeout=0)
    assert ready == [] and rest == [gen]
    open(gate, "w").close()
    ready, _ = ember.wait([gen], timeout=60)
    assert ready == [gen]
    assert ember.get(next(gen)) == 2


def test_backpressure_pauses_the_generator_until_values_are_consumed(cluster, tmp_path):
    log = str(tmp_path / "produced")

    @ember.remote(_generator_backpressure_num_objects=2)
    def producer(log, n):
        for i in range(n):
            with open(log, "a") as f:
                f.write(f"{i}\n")
            yield i

    gen = producer.remote(log, 6)
    assert wait_until(lambda: _count_lines(log) >= 2, 60)
    # two values unconsumed: the generator waits (its task cannot end)
    ready, _ = ember.wait([gen.completed()], timeout=1.5)
    assert ready == [] and _count_lines(log) == 2
    taken = [ember.get(next(gen), timeout=60)]
    assert wait_until(lambda: _count_lines(log) == 3, 60)
    taken += [ember.get(r, timeout=60) for r in gen]
    assert taken == list(range(6))


def test_dropping_a_paused_generator_lets_its_task_finish(cluster, tmp_path):
    log = str(tmp_path / "produced")

    @ember.remote(_generator_backpressure_num_objects=1)
    def producer(log, n):
        for i in range(n):
            with open(log, "a") as f:
                f.write(f"{i}\n")
            yield i

    gen = producer.remote(log, 5)
    assert ember.get(next(gen), timeout=60) == 0
    del gen  # nobody will consume the rest: the task must not hold its CPU forever
    assert wait_until(lambda: _count_lines(log) == 5, 60)
    assert wait_until(lambda: ember.available_resources().get("CPU") == CLUSTER_ARGS["num_cpus"], 60)


def test_dynamic_returns_one_ref_to_a_dynamic_generator(cluster):
    @ember.remote(num_returns="dynamic")
    def split(n):
        for i in range(n):
            yield [i] * 3

    ref = split.remote(3)
    assert isinstance(ref, ember.ObjectRef)
    dyn = ember.get(ref)
    assert isinstance(dyn, ember.DynamicObjectRefGenerator)
    assert len(dyn) == 3
    assert [ember.get(r) for r in dyn] == [[0] * 3, [1] * 3, [2] * 3]


def test_dynamic_error_midway_is_its_last_ref(cluster):
    @ember.remote(num_returns="dynamic")
    def half(n):
        yield 0
        raise KeyError(n)

    refs = list(ember.get(half.remote(5)))
    assert len(refs) == 2 and ember.get(refs[0]) == 0
    with pytest.raises(KeyError):
        ember.get(refs[1])


def test_actor_generator_methods_sync_and_async(cluster):
    @ember.remote
    class Counter:
        def __init__(self):
            self.base = 100

        def upto(self, n):
            for i in range(n):
                yield self.base + i

    @ember.remote
    class Streamer:
        async def ticks(self, n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i

        async def ping(self):
            return "pong"

    c = Counter.remote()
    assert [ember.get(r) for r in c.upto.remote(3)] == [100, 101, 102]
    s = Streamer.remote()
    gen = s.ticks.remote(5)
    assert isinstance(gen, ember.ObjectRefGenerator)
    assert [ember.get(r, timeout=60) for r in gen] == [0, 1, 2, 3, 4]
    assert ember.get(s.ping.remote(), timeout=60) == "pong"
    dyn = ember.get(s.ticks.options(num_returns="dynamic").remote(2), timeout=60)
    assert [ember.get(r) for r in dyn] == [0, 1]


@pytest.mark.parametrize("backpressure", [None, 1])
def test_retry_reruns_the_generator_without_repeating_values(cluster, tmp_path, backpressure):
    attempts = str(tmp_path / "attempts")

    @ember.remote(max_retries=2, retry_exceptions=True, _generator_backpressure_num_objects=backpressure)
    def flaky(attempts):
        with open(attempts, "a") as f:
            f.write("x\n")
        with open(attempts) as f:
            first = len(f.read().splitlines()) == 1
        for i in range(4):
            if first and i == 2:
                raise RuntimeError("transient")
            yield i

    assert [ember.get(r, timeout=60) for r in flaky.remote(attempts)] == [0, 1, 2, 3]
    assert _count_lines(attempts) == 2


def test_worker_crash_midway_is_retried(cluster, tmp_path):
    attempts = str(tmp_path / "attempts")

    @ember.remote(max_retries=1)
    def dies_once(attempts):
        with open(attempts, "a") as f:
            f.write("x\n")
        with open(attempts) as f:
            first = len(f.read().splitlines()) == 1
        for i in range(3):
            if first and i == 1:
                os._exit(1)
            yield i

    assert [ember.get(r, timeout=60) for r in dies_once.remote(attempts)] == [0, 1, 2]

    @ember.remote(max_retries=0)
    def dies(n):
        yield n
        os._exit(1)

    gen = dies.remote(7)
    assert ember.get(next(gen), timeout=60) == 7
    with pytest.raises(exc.WorkerCrashedError):
        ember.get(next(gen), timeout=60)
    with pytest.raises(StopIteration):
        next(gen)


def test_cancel_ends_a_running_generator(cluster):
    @ember.remote
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    gen = endless.remote()
    assert ember.get(next(gen), timeout=60) == 0
    ember.cancel(gen)
    with pytest.raises(exc.TaskCancelledError):
        for ref in gen:  # values yielded before the cancel landed, then the cancellation
            ember.get(ref, timeout=60)
    with pytest.raises(StopIteration):
        next(gen)


def test_dropped_generator_frees_its_values(cluster):
    @ember.remote
    def many():
        yield from range(20)

    before = api._stats()["objects"]
    gen = many.remote()
    ember.get(gen.completed(), timeout=60)
    assert ember.get(next(gen)) == 0
    del gen
    assert wait_until(lambda: api._stats()["objects"] <= before, 30), api._stats()


def test_generator_cannot_be_passed_to_a_task(cluster):
    @ember.remote
    def one():
        yield 1

    @ember.remote
    def take(g):
        return g

    gen = one.remote()
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        take.remote(gen)
    with pytest.raises(TypeError, match="iterate it"):
        ember.get(gen)
    assert [ember.get(r) for r in gen] == [1]


def test_a_task_consumes_a_generator_task_and_threaded_actors_stream(cluster):
    @ember.remote
    def inner(n):
        yield from range(n)

    @ember.remote
    def outer(n):  # runs in a worker, which waits for the inner values (giving its CPU back)
        return sum(ember.get(r) for r in inner.remote(n))

    assert ember.get([outer.remote(5) for _ in range(3)], timeout=60) == [10, 10, 10]

    @ember.remote(max_concurrency=2)
    class Pool:
        def chunks(self, tag, n):
            for i in range(n):
                yield f"{tag}{i}"

    p = Pool.remote()
    a, b = p.chunks.remote("a", 3), p.chunks.remote("b", 2)
    assert [ember.get(r, timeout=60) for r in a] == ["a0", "a1", "a2"]
    assert [ember.get(r, timeout=60) for r in b] == ["b0", "b1"]


def test_cancel_a_generator_paused_by_backpressure_or_not_started(cluster, tmp_path):
    log = str(tmp_path / "produced")

    @ember.remote(_generator_backpressure_num_objects=1)
    def producer(log):
        i = 0
        while True:
            with open(log, "a") as f:
                f.write(f"{i}\n")
            yield i
            i += 1

    gen = producer.remote(log)
    ready, _ = ember.wait([gen], timeout=60)  # its first value is here: it is paused after it
    assert ready == [gen] and _count_lines(log) == 1
    ember.cancel(gen)
    assert ember.get(next(gen), timeout=60) == 0
    with pytest.raises(exc.TaskCancelledError):
        ember.get(next(gen), timeout=60)
    assert wait_until(lambda: ember.available_resources().get("CPU") == CLUSTER_ARGS["num_cpus"], 60)

    @ember.remote(num_cpus=CLUSTER_ARGS["num_cpus"])
    def hog(gate):
        import os
        import time

        open(gate + ".started", "w").close()
        while not os.path.exists(gate):
            time.sleep(0.01)
        return True

    gate = str(tmp_path / "go")
    busy = hog.remote(gate)
    assert wait_until(lambda: os.path.exists(gate + ".started"), 60)
    queued = producer.remote(log)  # cannot start while hog holds every CPU
    ember.cancel(queued)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(next(queued), timeout=60)
    with pytest.raises(StopIteration):
        next(queued)
    open(gate, "w").close()
    assert ember.get(busy, timeout=60)


def test_async_generator_task_and_actor_restart_midway(cluster, tmp_path):
    @ember.remote
    async def ticks(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    assert [ember.get(r, timeout=60) for r in ticks.remote(3)] == [0, 1, 2]

    @ember.remote(max_restarts=1, max_task_retries=1)
    class Fragile:
        def values(self, marker):
            first = not os.path.exists(marker)
            open(marker, "a").close()
            for i in range(3):
                if first and i == 1:
                    os._exit(1)  # the actor dies midway; restarted, the call runs again
                yield i

    f = Fragile.remote()
    assert [ember.get(r, timeout=60) for r in f.values.remote(str(tmp_path / "died"))] == [0, 1, 2]
