"""Actors as Ray documents them beyond the basics: ``async def __init__`` (awaited on the
actor's event loop before any method runs), ``actor.__ray_ready__.remote()``, and the
``memory`` resource nodes advertise and ``memory=`` requests are scheduled against."""

from __future__ import annotations

import asyncio

import ember
import pytest
from ember_testkit import wait_until

from tests.rayapi.helpers import output_lines, run_ray_program

CLUSTER_ARGS = {"num_cpus": 4}
MiB = 1 << 20


def test_async_init_runs_before_methods_on_the_actor_loop(cluster):
    @ember.remote
    class Service:
        async def __init__(self, greeting):
            await asyncio.sleep(0.05)
            self.greeting = greeting
            self.loop = asyncio.get_running_loop()

        async def greet(self, name):
            return f"{self.greeting}, {name}", asyncio.get_running_loop() is self.loop

    s = Service.remote("hello")
    assert ember.get(s.greet.remote("ember"), timeout=60) == ("hello, ember", True)


def test_async_init_with_sync_methods_and_failing_async_init(cluster):
    @ember.remote
    class Mixed:
        async def __init__(self):
            self.ready = True

        def check(self):
            return self.ready

    @ember.remote
    class Broken:
        async def __init__(self):
            raise RuntimeError("no connection")

        def check(self):
            return True

    assert ember.get(Mixed.remote().check.remote(), timeout=60) is True
    with pytest.raises(ember.exceptions.RayActorError, match="no connection"):
        ember.get(Broken.remote().check.remote(), timeout=60)


def test_ray_ready(cluster):
    @ember.remote
    class Slow:
        def __init__(self):
            import time

            time.sleep(0.1)

        def ping(self):
            return "pong"

    @ember.remote
    class AsyncOne:
        async def ping(self):
            return "pong"

    a, b = Slow.remote(), AsyncOne.remote()
    assert ember.get([a.__ray_ready__.remote(), b.__ray_ready__.remote()], timeout=60) == [True, True]
    ready, _ = ember.wait([a.__ray_ready__.remote()], timeout=60)
    assert len(ready) == 1


def test_nodes_advertise_memory_and_memory_requests_are_held(cluster):
    total = ember.cluster_resources()
    assert total.get("memory", 0) > 0 and total.get("object_store_memory", 0) > 0
    assert ember.nodes()[0]["Resources"]["memory"] == total["memory"]

    @ember.remote(memory=64 * MiB)
    def small():
        return ember.get_runtime_context().get_assigned_resources()

    assert ember.get(small.remote(), timeout=60)["memory"] == 64 * MiB

    @ember.remote(memory=128 * MiB, num_cpus=0)
    class Holder:
        def ping(self):
            return True

    # the task's 64 MiB come back a moment after its result: wait for them first
    before = total["memory"]
    assert wait_until(lambda: ember.available_resources()["memory"] == before, 60)
    h = Holder.remote()
    assert ember.get(h.ping.remote(), timeout=60)
    assert wait_until(lambda: ember.available_resources()["memory"] == before - 128 * MiB, 60)
    ember.kill(h)
    assert wait_until(lambda: ember.available_resources()["memory"] == before, 60)


PROGRAM = """
import asyncio
import ray

ray.init(num_cpus=2)

@ray.remote(memory=1024 * 1024)
class Model:
    async def __init__(self):
        await asyncio.sleep(0)
        self.w = 2

    async def predict(self, x):
        return self.w * x

m = Model.remote()
ray.get(m.__ray_ready__.remote())
print("predict", ray.get(m.predict.remote(21)))
print("memory", ray.cluster_resources()["memory"] > 0)
ray.shutdown()
"""


def test_actor_extras_under_ember_run(tmp_path):
    assert output_lines(run_ray_program(tmp_path, PROGRAM)) == ["predict 42", "memory True"]
