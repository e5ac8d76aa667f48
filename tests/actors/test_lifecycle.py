"""Lifecycle: ember.kill, get_actor, names and namespaces, get_if_exists, detached actors
within one driver, and actors ending when their last handle is gone."""

from __future__ import annotations

import gc
import os
import time
import uuid

import ember
import ember.exceptions as exc
import pytest

from .helpers import pid_alive, wait_pid_gone, wait_until

CLUSTER_ARGS = {"num_cpus": 4}
T = 30  # every get is bounded (below the 60 s pytest timeout)


@ember.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def incr(self):
        self.value += 1
        return self.value

    def read(self):
        return self.value

    def pid(self):
        return os.getpid()

    def nap(self, seconds):
        time.sleep(seconds)
        return "woke"


@ember.remote
def use_later(handle, delay):
    time.sleep(delay)
    return ember.get(handle.incr.remote(), timeout=60)


def _name() -> str:
    return f"actor-{uuid.uuid4().hex[:8]}"


def _pid_of(handle) -> int:
    return ember.get(handle.pid.remote(), timeout=T)


# --------------------------------------------------------------------- kill


def test_kill_ends_actor_and_later_calls_raise_actor_died(cluster):
    c = Counter.remote()
    pid = _pid_of(c)
    ember.kill(c)
    assert wait_pid_gone(pid), f"actor process {pid} still alive after ember.kill"
    with pytest.raises(exc.ActorDiedError) as info:
        ember.get(c.read.remote(), timeout=T)
    assert isinstance(info.value, exc.RayActorError)
    assert "kill" in str(info.value).lower()


def test_kill_fails_running_and_queued_calls(cluster):
    c = Counter.remote()
    _pid_of(c)
    running = c.nap.remote(30)
    queued = c.incr.remote()
    time.sleep(0.3)
    ember.kill(c)
    for ref in (running, queued):
        with pytest.raises(exc.RayActorError):
            ember.get(ref, timeout=T)


def test_kill_defaults_to_no_restart(cluster):
    c = Counter.options(max_restarts=3).remote()
    pid = _pid_of(c)
    ember.kill(c)
    assert wait_pid_gone(pid)
    time.sleep(0.5)
    with pytest.raises(exc.ActorDiedError):
        ember.get(c.read.remote(), timeout=T)


def test_kill_with_restart_allowed_restarts_actor(cluster):
    c = Counter.options(max_restarts=1).remote(5)
    ember.get(c.incr.remote(), timeout=T)
    pid = _pid_of(c)
    ember.kill(c, no_restart=False)
    assert wait_pid_gone(pid)

    def restarted():
        try:
            return ember.get(c.pid.remote(), timeout=T) != pid
        except exc.RayActorError:
            return False

    assert wait_until(restarted, 30, 0.2), "the actor did not come back after kill(no_restart=False)"
    assert ember.get(c.read.remote(), timeout=T) == 5  # __init__ ran again


def test_kill_with_restart_allowed_but_no_restarts_left_ends_actor(cluster):
    c = Counter.remote()
    pid = _pid_of(c)
    ember.kill(c, no_restart=False)
    assert wait_pid_gone(pid)
    with pytest.raises(exc.ActorDiedError):
        ember.get(c.read.remote(), timeout=T)


def test_kill_async_actor_fails_its_running_coroutines(cluster):
    @ember.remote
    class Napper:
        async def nap(self, seconds):
            import asyncio

            await asyncio.sleep(seconds)
            return "woke"

        async def pid(self):
            return os.getpid()

    a = Napper.remote()
    pid = _pid_of(a)
    naps = [a.nap.remote(30) for _ in range(5)]
    time.sleep(0.3)
    ember.kill(a)
    for ref in naps:
        with pytest.raises(exc.ActorDiedError):
            ember.get(ref, timeout=T)
    assert wait_pid_gone(pid)


def test_kill_an_already_dead_actor_is_harmless(cluster):
    c = Counter.remote()
    _pid_of(c)
    ember.kill(c)
    ember.kill(c)
    with pytest.raises(exc.RayActorError):
        ember.get(c.read.remote(), timeout=T)


# --------------------------------------------------------------------- names


def test_get_actor_missing_raises_value_error(cluster):
    with pytest.raises(ValueError):
        ember.get_actor(_name())
    with pytest.raises(ValueError):
        ember.get_actor(_name(), namespace="elsewhere")


def test_named_actor_reachable_by_get_actor(cluster):
    name = _name()
    c = Counter.options(name=name).remote(10)
    ember.get(c.incr.remote(), timeout=T)
    found = ember.get_actor(name)
    assert found == c
    assert ember.get(found.incr.remote(), timeout=T) == 12
    assert ember.get(c.read.remote(), timeout=T) == 12
    ember.kill(c)


def test_named_actor_reachable_from_a_task(cluster):
    name = _name()
    c = Counter.options(name=name).remote()

    @ember.remote
    def bump_by_name(name):
        return ember.get(ember.get_actor(name).incr.remote(), timeout=60)

    assert ember.get(bump_by_name.remote(name), timeout=T) == 1
    assert ember.get(c.read.remote(), timeout=T) == 1
    ember.kill(c)


def test_duplicate_name_raises_value_error(cluster):
    """Like Ray (ActorAlreadyExistsError, a ValueError): raised by ``.remote()`` itself."""
    name = _name()
    c = Counter.options(name=name).remote(1)
    ember.get(c.read.remote(), timeout=T)
    with pytest.raises(ValueError, match=name):
        Counter.options(name=name).remote(2)
    assert ember.get(ember.get_actor(name).read.remote(), timeout=T) == 1
    ember.kill(c)


def test_name_is_free_again_after_kill(cluster):
    name = _name()
    c = Counter.options(name=name).remote(1)
    ember.get(c.read.remote(), timeout=T)
    ember.kill(c)

    def gone():
        try:
            ember.get_actor(name)
            return False
        except ValueError:
            return True

    assert wait_until(gone, 60, 0.1), "get_actor still finds a killed actor"
    again = Counter.options(name=name).remote(2)
    assert ember.get(ember.get_actor(name).read.remote(), timeout=T) == 2
    ember.kill(again)


def test_name_reusable_right_after_kill(cluster):
    """Ray (checked with 2.60) frees the name before ray.kill returns. Repeated, since a
    runtime that frees it only once the process is reaped passes now and then by luck."""
    for round_ in range(5):
        name = _name()
        c = Counter.options(name=name).remote(1)
        ember.get(c.read.remote(), timeout=T)
        ember.kill(c)
        again = Counter.options(name=name).remote(2)
        assert ember.get(again.read.remote(), timeout=T) == 2, f"round {round_}"
        ember.kill(again)


def test_get_if_exists_right_after_kill_creates_new_actor(cluster):
    for round_ in range(5):
        name = _name()
        c = Counter.options(name=name).remote(1)
        ember.get(c.read.remote(), timeout=T)
        ember.kill(c)
        fresh = Counter.options(name=name, get_if_exists=True).remote(9)
        assert ember.get(fresh.read.remote(), timeout=T) == 9, f"round {round_}"
        ember.kill(fresh)


def test_many_default_actors(cluster):
    actors = [Counter.remote(i) for i in range(12)]  # more than the 4 CPUs
    assert ember.get([a.read.remote() for a in actors], timeout=T) == list(range(12))
    for a in actors:
        ember.kill(a)


def test_namespaces_separate_names(cluster):
    name = _name()
    a = Counter.options(name=name, namespace="ns-a").remote(1)
    b = Counter.options(name=name, namespace="ns-b").remote(2)
    assert ember.get(ember.get_actor(name, namespace="ns-a").read.remote(), timeout=T) == 1
    assert ember.get(ember.get_actor(name, namespace="ns-b").read.remote(), timeout=T) == 2
    with pytest.raises(ValueError):
        ember.get_actor(name, namespace="ns-c")
    ember.kill(a)
    ember.kill(b)


def test_get_if_exists_returns_existing_actor(cluster):
    name = _name()
    first = Counter.options(name=name, get_if_exists=True).remote(1)
    ember.get(first.incr.remote(), timeout=T)
    second = Counter.options(name=name, get_if_exists=True).remote(100)  # args ignored
    assert second == first
    assert ember.get(second.read.remote(), timeout=T) == 2
    ember.kill(first)


# --------------------------------------------------------------------- end of life by GC


def test_actor_ends_when_last_handle_is_dropped(cluster):
    c = Counter.remote()
    pid = _pid_of(c)
    del c
    gc.collect()
    assert wait_pid_gone(pid, 15), f"actor process {pid} survived its last handle"


def test_actor_finishes_pending_call_before_ending(cluster):
    c = Counter.remote()
    pid = _pid_of(c)
    pending = c.nap.remote(1.0)
    del c
    gc.collect()
    assert ember.get(pending, timeout=T) == "woke"
    assert wait_pid_gone(pid, 15), f"actor process {pid} survived after its last call"


def test_handle_held_by_a_task_keeps_actor_alive(cluster):
    c = Counter.remote()
    pid = _pid_of(c)
    result = use_later.remote(c, 1.0)
    del c
    gc.collect()
    assert ember.get(result, timeout=T) == 1  # the task still reached the actor
    assert wait_pid_gone(pid, 15), f"actor process {pid} survived the task's handle"


def test_handle_inside_stored_object_keeps_actor_alive(cluster):
    c = Counter.remote()
    pid = _pid_of(c)
    box = ember.put([c])
    del c
    gc.collect()
    time.sleep(1.0)
    assert pid_alive(pid), "the actor ended although a stored object still holds its handle"
    (again,) = ember.get(box, timeout=T)
    assert ember.get(again.incr.remote(), timeout=T) == 1
    del box, again
    gc.collect()
    assert wait_pid_gone(pid, 15), f"actor process {pid} survived its last (stored) handle"


def test_call_waiting_for_argument_keeps_actor_alive(cluster):
    c = Counter.remote(1)
    pid = _pid_of(c)

    @ember.remote
    def late(x):
        time.sleep(1.0)
        return x

    pending = c.nap.remote(late.remote(0.1))
    del c
    gc.collect()
    assert ember.get(pending, timeout=T) == "woke"
    assert wait_pid_gone(pid, 15)


def test_kill_from_inside_a_task(cluster):
    c = Counter.remote()
    pid = _pid_of(c)

    @ember.remote
    def killer(handle):
        ember.kill(handle)
        return True

    assert ember.get(killer.remote(c), timeout=T)
    assert wait_pid_gone(pid)
    with pytest.raises(exc.RayActorError):
        ember.get(c.read.remote(), timeout=T)


@pytest.mark.ray_differs
def test_named_actor_survives_dropped_handles(cluster):
    """Ray (2.x, checked with 2.60) ends a named, non-detached actor when its last handle
    is dropped; ember's contract keeps named actors until killed or the driver exits."""
    name = _name()
    c = Counter.options(name=name).remote(3)
    pid = _pid_of(c)
    del c
    gc.collect()
    time.sleep(1.0)
    assert pid_alive(pid)
    again = ember.get_actor(name)
    assert ember.get(again.read.remote(), timeout=T) == 3
    del again
    gc.collect()
    time.sleep(0.5)
    assert pid_alive(pid)
    ember.kill(ember.get_actor(name))
    assert wait_pid_gone(pid)


def test_detached_actor_survives_dropped_handles(cluster):
    name = _name()
    c = Counter.options(name=name, lifetime="detached").remote(4)
    pid = _pid_of(c)
    del c
    gc.collect()
    time.sleep(1.0)
    assert pid_alive(pid)
    found = ember.get_actor(name)
    assert ember.get(found.incr.remote(), timeout=T) == 5
    ember.kill(found)
    assert wait_pid_gone(pid)


def test_unnamed_detached_actor_survives_dropped_handles(cluster, kill_on_exit):
    c = Counter.options(lifetime="detached").remote()
    pid = _pid_of(c)
    kill_on_exit.append(pid)  # no handle is left to kill it with
    del c
    gc.collect()
    time.sleep(1.0)
    assert pid_alive(pid), "an unnamed detached actor ended when its handle was dropped"
