"""Concurrency groups as Ray documents them: ``@remote(concurrency_groups={...})``,
``@method(concurrency_group=...)`` and ``.options(concurrency_group=...)`` on a call, for async
and threaded actors. A call blocked in one group never holds up a call in another; a group
runs at most its limit of calls at once; other methods are in the default group
(``max_concurrency``). Calls block on a ``threading.Event``/``asyncio.Event`` released by a
later call, so nothing depends on timing: a group that blocked another would deadlock and the
test's ``get`` timeout would fail it."""

from __future__ import annotations

import asyncio
import threading

import ember
import pytest

from tests.rayapi.helpers import output_lines, run_ray_program

CLUSTER_ARGS = {"num_cpus": 2}


@ember.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncService:
    def __init__(self):
        self.gate = asyncio.Event()
        self.running = {"io": 0, "compute": 0, "default": 0}
        self.peak = {"io": 0, "compute": 0, "default": 0}
        self.loops = {}

    async def _enter(self, group):
        self.running[group] += 1
        self.peak[group] = max(self.peak[group], self.running[group])
        self.loops.setdefault(group, set()).add(id(asyncio.get_running_loop()))

    @ember.method(concurrency_group="io")
    async def wait_io(self):
        await self._enter("io")
        try:
            # (the gate is another loop's: poll it rather than await it across loops)
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
        finally:
            self.running["io"] -= 1
        return "io"

    @ember.method(concurrency_group="compute")
    async def compute(self, x):
        await self._enter("compute")
        self.running["compute"] -= 1
        return x * 2

    async def default(self):
        await self._enter("default")
        self.running["default"] -= 1
        return "default"

    @ember.method(concurrency_group="compute")
    async def release(self):
        self.gate.set()
        return True

    async def stats(self):
        return self.peak, {g: len(v) for g, v in self.loops.items()}


def test_async_actor_groups_do_not_block_each_other(cluster):
    a = AsyncService.remote()
    blocked = [a.wait_io.remote() for _ in range(3)]  # 2 run (the io limit), 1 waits
    # the io group is full and blocked: the compute and default groups still answer
    assert ember.get([a.compute.remote(i) for i in range(5)], timeout=60) == [0, 2, 4, 6, 8]
    assert ember.get(a.default.remote(), timeout=60) == "default"
    ready, _ = ember.wait(blocked, num_returns=3, timeout=0.5)
    assert ready == []  # still blocked: only release() in another group lets them go
    assert ember.get(a.release.remote(), timeout=60) is True
    assert ember.get(blocked, timeout=60) == ["io"] * 3
    peak, loops = ember.get(a.stats.remote(), timeout=60)
    assert peak["io"] == 2  # never more than the group's limit at once
    assert loops == {"io": 1, "compute": 1, "default": 1}  # one loop per group
    ember.kill(a)


def test_options_pick_a_group_for_one_call(cluster):
    a = AsyncService.remote()
    blocked = a.wait_io.remote()
    # release() is in "compute"; sent through "io" it would wait behind nothing (io has room)
    assert ember.get(a.release.options(concurrency_group="io").remote(), timeout=60) is True
    assert ember.get(blocked, timeout=60) == "io"
    with pytest.raises(ValueError, match="no concurrency group 'gpu'"):
        a.compute.options(concurrency_group="gpu")
    ember.kill(a)


@ember.remote(concurrency_groups={"health": 1, "work": 2})
class ThreadedService:
    def __init__(self):
        self.gate = threading.Event()
        self.threads = {}

    def _note(self, group):
        self.threads.setdefault(group, set()).add(threading.current_thread().name)

    @ember.method(concurrency_group="work")
    def block(self):
        self._note("work")
        assert self.gate.wait(60), "never released"
        return "worked"

    @ember.method(concurrency_group="health")
    def ping(self):
        self._note("health")
        return "pong"

    def unblock(self):  # the default group (max_concurrency 1: one thread of its own)
        self._note("default")
        self.gate.set()
        return True

    def thread_names(self):
        return {g: sorted(v) for g, v in self.threads.items()}


def test_threaded_actor_groups_do_not_block_each_other(cluster):
    t = ThreadedService.remote()
    blocked = [t.block.remote(), t.block.remote()]  # the work group is full
    assert ember.get([t.ping.remote() for _ in range(3)], timeout=60) == ["pong"] * 3
    assert ember.get(t.unblock.remote(), timeout=60) is True
    assert ember.get(blocked, timeout=60) == ["worked", "worked"]
    names = ember.get(t.thread_names.remote(), timeout=60)
    assert all(n.startswith("ember-actor-work") for n in names["work"])
    assert names["health"] and all(n.startswith("ember-actor-health") for n in names["health"])
    assert not set(names["default"]) & set(names["work"])
    ember.kill(t)


def test_group_definitions_are_checked(cluster):
    @ember.remote(concurrency_groups={"io": 0})
    class Bad:
        pass

    with pytest.raises(ValueError, match="positive integer"):
        Bad.remote()

    @ember.remote(concurrency_groups={"io": 1})
    class Undefined:
        @ember.method(concurrency_group="disk")
        def f(self):
            pass

    with pytest.raises(ValueError, match="concurrency group 'disk', which the actor does not define"):
        Undefined.remote()


PROGRAM = """
import asyncio
import ray

@ray.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncIOActor:
    def __init__(self):
        self.gate = None

    @ray.method(concurrency_group="io")
    async def f1(self):
        while self.gate is None:  # held until f3 (another group) opens it
            await asyncio.sleep(0.01)
        return "f1"

    @ray.method(concurrency_group="compute")
    async def f3(self):
        self.gate = True
        return "f3"

    async def f5(self):
        return "f5"

a = AsyncIOActor.remote()
held = a.f1.remote()
print(ray.get(a.f5.remote()))
print(ray.get(a.f3.remote()))
print(ray.get(held))
print(ray.get(a.f5.options(concurrency_group="compute").remote()))
"""


def test_concurrency_group_program_runs_under_ember_run(tmp_path):
    assert output_lines(run_ray_program(tmp_path, PROGRAM)) == ["f5", "f3", "f1", "f5"]
