"""Resources: an actor holds what it asked for during its whole life; by default (like
Ray) an actor needs 1 CPU to be placed and holds none while it runs.

Each test has its own cluster, so the resource accounting starts clean."""

from __future__ import annotations

import gc
import logging
import os
import signal
import time

import ember
import pytest

from .helpers import wait_until

T = 30  # every get is bounded (below the 60 s pytest timeout)


@ember.remote
class Holder:
    def pid(self):
        return os.getpid()

    def ping(self):
        return "pong"

    def wait_on(self, ref_box):
        return ember.get(ref_box[0], timeout=60)


@ember.remote
def one_cpu_task():
    return "ran"


def _cpu() -> float:
    return ember.available_resources().get("CPU", 0.0)


def _settles_at(key: str, value: float, timeout: float = 10) -> bool:
    return bool(wait_until(lambda: ember.available_resources().get(key, 0.0) == value, timeout))


def test_default_actor_holds_no_cpu_while_running(new_cluster):
    new_cluster(num_cpus=2)
    actors = [Holder.remote() for _ in range(4)]  # more actors than CPUs: all start
    assert ember.get([a.ping.remote() for a in actors], timeout=T) == ["pong"] * 4
    assert _settles_at("CPU", 2.0), ember.available_resources()
    # and tasks still get both CPUs
    assert ember.get([one_cpu_task.remote() for _ in range(4)], timeout=T) == ["ran"] * 4


def test_explicit_num_cpus_held_for_lifetime(new_cluster):
    new_cluster(num_cpus=2)
    a = Holder.options(num_cpus=1).remote()
    assert ember.get(a.ping.remote(), timeout=T) == "pong"
    assert _settles_at("CPU", 1.0), ember.available_resources()
    time.sleep(0.3)  # idle actor: still held
    assert _cpu() == 1.0
    assert ember.cluster_resources()["CPU"] == 2.0
    ember.kill(a)
    assert _settles_at("CPU", 2.0), f"CPU not returned after kill: {ember.available_resources()}"


def test_num_cpus_from_remote_decorator_is_held(new_cluster):
    new_cluster(num_cpus=2)

    @ember.remote(num_cpus=1)
    class OneCpu:
        def ping(self):
            return "pong"

    a = OneCpu.remote()
    ember.get(a.ping.remote(), timeout=T)
    assert _settles_at("CPU", 1.0), ember.available_resources()
    ember.kill(a)
    assert _settles_at("CPU", 2.0)


def test_actor_holding_all_cpus_keeps_tasks_pending(new_cluster):
    new_cluster(num_cpus=2)
    a = Holder.options(num_cpus=2).remote()
    ember.get(a.ping.remote(), timeout=T)
    assert _settles_at("CPU", 0.0)
    task = one_cpu_task.remote()
    ready, _ = ember.wait([task], timeout=1.0)
    assert not ready, "a task ran although the actor holds every CPU"
    ember.kill(a)
    assert ember.get(task, timeout=T) == "ran"


def test_blocked_actor_keeps_its_cpu(new_cluster):
    new_cluster(num_cpus=2)
    a = Holder.options(num_cpus=1).remote()
    ember.get(a.ping.remote(), timeout=T)

    @ember.remote(num_cpus=0)
    def slow():
        time.sleep(1.5)
        return "slow"

    waiting = a.wait_on.remote([slow.remote()])
    time.sleep(0.5)  # the actor is now blocked in get
    assert _cpu() == 1.0, f"a blocked actor gave its CPU back: {ember.available_resources()}"
    assert ember.get(waiting, timeout=T) == "slow"


def test_extra_actors_pend_until_one_is_killed(new_cluster):
    new_cluster(num_cpus=2)
    first, second, third = (Holder.options(num_cpus=1).remote() for _ in range(3))
    assert ember.get([first.ping.remote(), second.ping.remote()], timeout=T) == ["pong"] * 2
    pending = third.ping.remote()
    ready, _ = ember.wait([pending], timeout=1.5)
    assert not ready, "a third num_cpus=1 actor started on a 2-CPU cluster"
    assert _cpu() == 0.0
    ember.kill(first)
    assert ember.get(pending, timeout=T) == "pong"
    assert _cpu() == 0.0


def test_custom_resources_held_and_released(new_cluster):
    new_cluster(num_cpus=2, resources={"slot": 2})
    opts = {"num_cpus": 0, "resources": {"slot": 1}}
    a, b, c = (Holder.options(**opts).remote() for _ in range(3))
    assert ember.get([a.ping.remote(), b.ping.remote()], timeout=T) == ["pong"] * 2
    assert _settles_at("slot", 0.0), ember.available_resources()
    assert _cpu() == 2.0  # num_cpus=0: no CPU held
    pending = c.ping.remote()
    ready, _ = ember.wait([pending], timeout=1.5)
    assert not ready, "a third actor got a 'slot' resource that does not exist"
    ember.kill(b)
    assert ember.get(pending, timeout=T) == "pong"
    ember.kill(a)
    assert _settles_at("slot", 1.0), ember.available_resources()


def test_default_actor_placed_while_explicit_actors_hold_every_cpu(new_cluster):
    """Ray (checked with 2.60): a default actor needs a node with CPUs to be placed but
    holds none, so it starts even while other actors hold every CPU."""
    new_cluster(num_cpus=2)
    holders = [Holder.options(num_cpus=1).remote() for _ in range(2)]
    ember.get([h.ping.remote() for h in holders], timeout=T)
    assert _settles_at("CPU", 0.0)
    light = Holder.remote()
    ready, _ = ember.wait([light.ping.remote()], timeout=5)
    assert ready, "a default (num_cpus unset) actor did not start while every CPU was held"


def test_actor_asking_more_than_cluster_has_stays_pending(new_cluster, caplog):
    """As in Ray: an actor no node can fit stays pending (its calls wait), the driver is
    warned naming the resource, and ``kill`` ends it (its calls then raise RayActorError)."""
    caplog.set_level(logging.WARNING, logger="ember")
    new_cluster(num_cpus=2)
    a = Holder.options(num_cpus=3).remote()
    call = a.ping.remote()
    ready, _ = ember.wait([call], timeout=1.5)
    assert not ready, "an actor that fits no node ran"
    assert wait_until(lambda: any("cannot be scheduled right now" in r.getMessage() and "CPU" in r.getMessage()
                                  for r in caplog.records), 30, 0.1)
    ember.kill(a)
    with pytest.raises(ember.exceptions.RayActorError):
        ember.get(call, timeout=T)
    # what it would have held was never taken
    assert _settles_at("CPU", 2.0)


def test_restarted_actor_holds_its_cpu_again(new_cluster):
    new_cluster(num_cpus=2)
    a = Holder.options(num_cpus=1, max_restarts=1).remote()
    pid = ember.get(a.pid.remote(), timeout=T)
    assert _settles_at("CPU", 1.0)
    os.kill(pid, signal.SIGKILL)

    def restarted():
        try:
            return ember.get(a.pid.remote(), timeout=T) != pid
        except ember.exceptions.RayActorError:
            return False

    assert wait_until(restarted, 30, 0.2)
    assert _settles_at("CPU", 1.0), f"after a restart: {ember.available_resources()}"
    ember.kill(a)
    assert _settles_at("CPU", 2.0), f"after the kill: {ember.available_resources()}"


def test_dead_actor_releases_its_cpu(new_cluster):
    new_cluster(num_cpus=2)
    a = Holder.options(num_cpus=1).remote()
    pid = ember.get(a.pid.remote(), timeout=T)
    assert _settles_at("CPU", 1.0)
    os.kill(pid, signal.SIGKILL)
    assert _settles_at("CPU", 2.0), f"a dead actor kept its CPU: {ember.available_resources()}"


def test_dropped_actor_releases_its_cpu(new_cluster):
    new_cluster(num_cpus=2)
    a = Holder.options(num_cpus=1).remote()
    ember.get(a.ping.remote(), timeout=T)
    assert _settles_at("CPU", 1.0)
    del a
    gc.collect()
    assert _settles_at("CPU", 2.0), f"a dropped actor kept its CPU: {ember.available_resources()}"


def test_killing_a_pending_actor_fails_its_calls(new_cluster):
    new_cluster(num_cpus=1)
    running = Holder.options(num_cpus=1).remote()
    ember.get(running.ping.remote(), timeout=T)
    waiting = Holder.options(num_cpus=1).remote()
    call = waiting.ping.remote()
    ready, _ = ember.wait([call], timeout=0.5)
    assert not ready
    ember.kill(waiting)
    with pytest.raises(ember.exceptions.RayActorError):
        ember.get(call, timeout=T)
    ember.kill(running)
    assert _settles_at("CPU", 1.0)
    # the killed pending actor never starts, even now that a CPU is free
    assert ember.get(Holder.options(num_cpus=1).remote().ping.remote(), timeout=T) == "pong"


@ember.remote
class Announcer:
    """Writes a file when its constructor runs."""

    def __init__(self, path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))

    def ping(self):
        return "pong"


def test_dropping_a_pending_actor_means_it_never_starts(new_cluster, tmp_path):
    new_cluster(num_cpus=1)
    running = Holder.options(num_cpus=1).remote()
    ember.get(running.ping.remote(), timeout=T)
    started = tmp_path / "started"
    waiting = Announcer.options(num_cpus=1).remote(str(started))
    time.sleep(0.3)
    del waiting
    gc.collect()
    time.sleep(0.3)
    ember.kill(running)
    assert _settles_at("CPU", 1.0)
    time.sleep(1.0)
    assert not started.exists(), "an actor whose every handle was dropped started anyway"
    # the CPU is free for new work
    assert ember.get(one_cpu_task.remote(), timeout=T) == "ran"


def test_get_actor_finds_a_pending_named_actor(new_cluster):
    new_cluster(num_cpus=1)
    blocker = Holder.options(num_cpus=1).remote()
    ember.get(blocker.ping.remote(), timeout=T)
    pending = Holder.options(num_cpus=1, name="pending-one").remote()
    found = ember.get_actor("pending-one")
    assert found == pending
    call = found.ping.remote()
    ready, _ = ember.wait([call], timeout=0.5)
    assert not ready
    ember.kill(blocker)
    assert ember.get(call, timeout=T) == "pong"
    ember.kill(pending)
