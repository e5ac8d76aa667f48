"""ember.util as Ray documents ray.util: ActorPool, queue.Queue, multiprocessing.Pool, on a
real embedded cluster (actors and tasks in real worker processes). Remote classes and
functions are defined inside the tests so that cloudpickle ships them by value."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading

import ember
import pytest
from ember.util import ActorPool
from ember.util.multiprocessing import Pool
from ember.util.queue import Empty, Full, Queue

from tests.rayapi.helpers import output_lines, run_ray_program

CLUSTER_ARGS = {"num_cpus": 4}


def _doubler():
    @ember.remote
    class Doubler:
        def double(self, v):
            if v == "bad":
                raise ValueError("bad value")
            return 2 * v

        def slow(self, v, ready_file=None):
            import os
            import time

            while ready_file and not os.path.exists(ready_file):
                time.sleep(0.01)
            return v

    return Doubler


# ---------------------------------------------------------------- ActorPool
def test_actor_pool_map_keeps_order_and_map_unordered_gives_all(cluster):
    Doubler = _doubler()
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(10))) == [2 * i for i in range(10)]
    got = list(pool.map_unordered(lambda a, v: a.double.remote(v), range(10)))
    assert sorted(got) == [2 * i for i in range(10)]
    assert not pool.has_next()


def test_actor_pool_submit_queues_work_beyond_the_idle_actors(cluster):
    Doubler = _doubler()
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    for v in range(5):
        pool.submit(lambda a, v: a.double.remote(v), v)
    assert pool.has_next() and not pool.has_free()
    assert [pool.get_next() for _ in range(5)] == [0, 2, 4, 6, 8]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_actor_pool_get_next_unordered_and_timeouts(cluster, tmp_path):
    Doubler = _doubler()
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    gate = str(tmp_path / "go")
    pool.submit(lambda a, v: a.slow.remote(v, gate), "held")
    pool.submit(lambda a, v: a.slow.remote(v), "quick")
    assert pool.get_next_unordered(timeout=60) == "quick"
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.05)
    with pytest.raises(ValueError):  # like Ray: ordered results end once unordered ones are taken
        pool.get_next()
    open(gate, "w").close()
    assert pool.get_next_unordered(timeout=60) == "held"
    gate2 = str(tmp_path / "go2")
    pool.submit(lambda a, v: a.slow.remote(v, gate2), "second")
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05)
    open(gate2, "w").close()
    assert pool.get_next(timeout=60) == "second"


def test_actor_pool_error_surfaces_at_get_and_the_actor_returns(cluster):
    Doubler = _doubler()
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.double.remote(v), "bad")
    pool.submit(lambda a, v: a.double.remote(v), 21)
    with pytest.raises(ValueError, match="bad value"):
        pool.get_next()
    assert pool.get_next() == 42
    assert pool.has_free()


def test_actor_pool_push_and_pop_idle(cluster):
    Doubler = _doubler()
    a, b = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a])
    assert pool.pop_idle() == a
    assert pool.pop_idle() is None
    pool.submit(lambda actor, v: actor.double.remote(v), 1)  # waits: no actor
    assert pool.has_next()
    pool.push(b)  # takes the waiting work at once
    assert pool.get_next() == 2
    with pytest.raises(ValueError):
        pool.push(b)


# ---------------------------------------------------------------- Queue
def test_queue_put_get_in_order_and_sizes(cluster):
    q = Queue()
    assert q.empty() and q.qsize() == 0 and len(q) == 0
    for i in range(3):
        q.put(i)
    assert q.size() == 3 and not q.full()
    assert [q.get() for _ in range(3)] == [0, 1, 2]
    q.shutdown()


def test_queue_bounded_full_empty_and_timeouts(cluster):
    q = Queue(maxsize=2)
    q.put_nowait("a")
    q.put("b", timeout=1)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait("c")
    with pytest.raises(Full):
        q.put("c", block=False)
    with pytest.raises(Full):
        q.put("c", timeout=0.1)
    assert q.get_nowait() == "a"
    assert q.get(timeout=1) == "b"
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    assert issubclass(Empty, __import__("queue").Empty) and issubclass(Full, __import__("queue").Full)
    q.shutdown()


def test_queue_batches_are_all_or_nothing(cluster):
    q = Queue(maxsize=3)
    with pytest.raises(Full):
        q.put_nowait_batch([1, 2, 3, 4])
    assert q.qsize() == 0
    q.put_nowait_batch([1, 2, 3])
    with pytest.raises(Empty):
        q.get_nowait_batch(4)
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(1) == [3]
    q.shutdown()


def test_queue_blocking_get_wakes_when_a_task_puts(cluster):
    q = Queue()

    @ember.remote
    def producer(queue, n):
        for i in range(n):
            queue.put(i)
        return "done"

    @ember.remote
    def consumer(queue, n):
        return [queue.get(timeout=60) for _ in range(n)]

    got = consumer.remote(q, 5)
    assert ember.get(producer.remote(q, 5), timeout=60) == "done"
    assert ember.get(got, timeout=60) == [0, 1, 2, 3, 4]
    q.shutdown()


def test_queue_async_variants(cluster):
    q = Queue(maxsize=1)

    async def main():
        await q.put_async("x")
        with pytest.raises(Full):
            await q.put_async("y", timeout=0.1)
        with pytest.raises(Full):
            await q.put_async("y", block=False)
        first = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(timeout=0.1)
        with pytest.raises(Empty):
            await q.get_async(block=False)
        return first

    assert asyncio.run(main()) == "x"
    q.shutdown()


# ---------------------------------------------------------------- multiprocessing.Pool
def test_pool_map_starmap_apply(cluster):
    def square(x):
        return x * x

    def add(a, b=0, c=0):
        return a + b + c

    with Pool(processes=2) as pool:
        assert pool.map(square, range(20)) == [x * x for x in range(20)]
        assert pool.map(square, range(7), chunksize=3) == [x * x for x in range(7)]
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.apply(add, (1,), {"c": 5}) == 6
        res = pool.apply_async(add, (2, 3))
        assert res.get(timeout=60) == 5 and res.ready() and res.successful()
        assert list(pool.imap(square, range(6))) == [0, 1, 4, 9, 16, 25]
        assert sorted(pool.imap_unordered(square, range(6), chunksize=2)) == [0, 1, 4, 9, 16, 25]
        assert pool.map_async(square, [3]).get(timeout=60) == [9]


def test_pool_errors_callbacks_and_initializer(cluster):
    def fail(x):
        raise ZeroDivisionError(f"no {x}")

    def read_setting(_):
        import os

        return os.environ.get("POOL_SETTING")

    def setup(value):
        import os

        os.environ["POOL_SETTING"] = value

    with Pool(processes=2, initializer=setup, initargs=("ready",)) as pool:
        assert pool.map(read_setting, range(4)) == ["ready"] * 4
        with pytest.raises(ZeroDivisionError):
            pool.map(fail, [1])
        got, errors = [], []
        done = threading.Event()
        pool.apply_async(read_setting, (0,), callback=lambda v: (got.append(v), done.set()))
        assert done.wait(60) and got == ["ready"]
        done.clear()
        res = pool.apply_async(fail, (2,), error_callback=lambda e: (errors.append(e), done.set()))
        assert done.wait(60) and isinstance(errors[0], ZeroDivisionError)
        assert not res.successful()


def test_pool_close_join_terminate(cluster):
    def ident(x):
        return x

    pool = Pool(processes=2)
    res = pool.map_async(ident, range(10))
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(ident, [1])
    pool.join()
    assert res.get(timeout=60) == list(range(10))
    pool = Pool(processes=1)
    with pytest.raises(ValueError):
        pool.join()  # still running
    pool.terminate()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(ident, (1,))
    res = Pool(processes=1)
    with pytest.raises(multiprocessing.TimeoutError):
        res.apply_async(__import__("time").sleep, (5,)).get(timeout=0.05)
    res.terminate()


PROGRAM = """
import asyncio
import ray
from ray.util import ActorPool
from ray.util.queue import Queue, Empty
from ray.util.multiprocessing import Pool

ray.init(num_cpus=2)

@ray.remote
class Squarer:
    def square(self, x):
        return x * x

pool = ActorPool([Squarer.remote() for _ in range(2)])
print("pool", list(pool.map(lambda a, v: a.square.remote(v), range(5))))
q = Queue(maxsize=10)

@ray.remote
def fill(queue):
    for i in range(3):
        queue.put(i)

ray.get(fill.remote(q))
print("queue", [q.get(timeout=30) for _ in range(3)])
try:
    q.get(block=False)
except Empty:
    print("empty")
with Pool(2) as p:
    print("mp", p.map(abs, [-1, -2, 3]))
ray.shutdown()
"""


def test_ray_util_program_runs_under_ember_run(tmp_path):
    lines = output_lines(run_ray_program(tmp_path, PROGRAM))
    assert lines == ["pool [0, 1, 4, 9, 16]", "queue [0, 1, 2]", "empty", "mp [1, 2, 3]"]
