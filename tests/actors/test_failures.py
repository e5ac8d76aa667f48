"""Failures: constructor and method exceptions, actor processes killed from outside,
max_restarts and max_task_retries.

Remote code counts constructor runs and call attempts by appending to files in tmp_path."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import ember
import ember.exceptions as exc
import pytest

from .helpers import wait_pid_gone, wait_until

CLUSTER_ARGS = {"num_cpus": 4}
T = 30  # every get is bounded (below the 60 s pytest timeout)


def _lines(path) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


@ember.remote
class Fragile:
    """Logs each constructor run (its pid) to ``log``; state starts at ``start``."""

    def __init__(self, log, start=0):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        self.value = start

    def incr(self):
        self.value += 1
        return self.value

    def read(self):
        return self.value

    def pid(self):
        return os.getpid()

    def fail(self, text):
        raise ValueError(text)

    def block_once(self, marker, ready):
        """First attempt: note our pid in ``ready`` and hang (to be killed). Later: finish."""
        if not os.path.exists(marker):
            open(marker, "w").close()
            with open(ready + ".tmp", "w") as f:  # renamed into place: readers never see it empty
                f.write(str(os.getpid()))
            os.replace(ready + ".tmp", ready)
            time.sleep(60)
            return "first attempt finished (unexpected)"
        return ("retried", os.getpid())


@ember.remote
class BadInit:
    def __init__(self, text):
        raise RuntimeError(text)

    def read(self):
        return "unreachable"


@ember.remote
class AsyncFailer:
    async def fail(self):
        raise KeyError("async-key")

    async def ok(self):
        return "ok"


def _kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    assert wait_pid_gone(pid), f"pid {pid} survived SIGKILL"


def _call_until_new_pid(handle, old_pid: int, timeout: float = 30) -> int:
    """Calls made while a restart is under way may fail; poll until the new process answers."""

    def new_pid():
        try:
            pid = ember.get(handle.pid.remote(), timeout=T)
        except exc.RayActorError:
            return None
        return pid if pid != old_pid else None

    pid = wait_until(new_pid, timeout, 0.2)
    assert pid, f"the actor did not come back in a new process within {timeout}s"
    return pid


# --------------------------------------------------------------------- exceptions


def test_constructor_exception_fails_every_call_with_cause(cluster):
    a = BadInit.remote("constructor-exploded-42")
    refs = [a.read.remote() for _ in range(3)]  # submitted before creation failed
    for ref in refs:
        with pytest.raises(exc.RayActorError) as info:
            ember.get(ref, timeout=T)
        assert "constructor-exploded-42" in str(info.value)
    # and after: still the same error, with the cause
    with pytest.raises(exc.RayActorError) as info:
        ember.get(a.read.remote(), timeout=T)
    assert "constructor-exploded-42" in str(info.value)
    assert "RuntimeError" in str(info.value)


def test_method_exception_is_task_error_and_actor_survives(cluster, tmp_path):
    a = Fragile.remote(str(tmp_path / "log"), 1)
    ember.get(a.incr.remote(), timeout=T)
    pid = ember.get(a.pid.remote(), timeout=T)
    with pytest.raises(ValueError) as info:
        ember.get(a.fail.remote("bad-value-7"), timeout=T)
    assert isinstance(info.value, exc.RayTaskError)
    assert "bad-value-7" in str(info.value)
    assert "raise ValueError(text)" in str(info.value), "no remote traceback in the error"
    # the actor is alive, with its state, in the same process
    assert ember.get(a.incr.remote(), timeout=T) == 3
    assert ember.get(a.pid.remote(), timeout=T) == pid
    assert len(_lines(tmp_path / "log")) == 1


class TwoPartError(Exception):
    """An exception whose constructor does not take its message (pickling trips on these)."""

    def __init__(self, part, other):
        super().__init__(f"{part}/{other}")
        self.part = part
        self.other = other


@ember.remote
class OddFailer:
    def fail(self):
        raise TwoPartError("left-17", "right-18")

    def ok(self):
        return "ok"


@pytest.mark.ray_differs
def test_method_exception_with_custom_constructor(cluster):
    """Ray 2.60 raises UnserializableException here (the exception does not unpickle);
    ember keeps the type, so the error is both a RayTaskError and a TwoPartError."""
    a = OddFailer.remote()
    with pytest.raises(exc.RayTaskError) as info:
        ember.get(a.fail.remote(), timeout=T)
    assert "left-17/right-18" in str(info.value)
    assert isinstance(info.value, TwoPartError)
    assert ember.get(a.ok.remote(), timeout=T) == "ok"


def test_async_method_exception_is_task_error(cluster):
    a = AsyncFailer.remote()
    with pytest.raises(KeyError) as info:
        ember.get(a.fail.remote(), timeout=T)
    assert isinstance(info.value, exc.RayTaskError)
    assert ember.get(a.ok.remote(), timeout=T) == "ok"


def test_error_ref_as_argument_propagates(cluster, tmp_path):
    a = Fragile.remote(str(tmp_path / "log"))
    bad = a.fail.remote("upstream-9")
    b = Fragile.remote(str(tmp_path / "log2"))

    @ember.remote
    def consume(x):
        return x

    with pytest.raises(ValueError, match="upstream-9"):
        ember.get(consume.remote(bad), timeout=T)
    assert ember.get(b.read.remote(), timeout=T) == 0


# --------------------------------------------------------------------- process death


def test_sigkilled_actor_raises_actor_died_with_cause(cluster, tmp_path):
    a = Fragile.remote(str(tmp_path / "log"))
    pid = ember.get(a.pid.remote(), timeout=T)
    _kill9(pid)
    with pytest.raises(exc.ActorDiedError) as info:
        ember.get(a.read.remote(), timeout=T)
    assert isinstance(info.value, exc.RayActorError)
    message = str(info.value)
    assert re.search(r"SIGKILL|signal 9", message), message
    assert str(pid) in message, message
    # it stays dead (max_restarts defaults to 0)
    time.sleep(0.5)
    with pytest.raises(exc.ActorDiedError):
        ember.get(a.read.remote(), timeout=T)
    assert len(_lines(tmp_path / "log")) == 1


def test_sigkill_fails_the_call_in_flight(cluster, tmp_path):
    a = Fragile.remote(str(tmp_path / "log"))
    ready = tmp_path / "ready"
    ref = a.block_once.remote(str(tmp_path / "marker"), str(ready))
    assert wait_until(ready.exists, 30), "the call never started"
    _kill9(int(ready.read_text()))
    with pytest.raises(exc.ActorDiedError):
        ember.get(ref, timeout=T)


def test_max_restarts_reruns_init_in_new_process_then_stays_dead(cluster, tmp_path):
    log = tmp_path / "log"
    a = Fragile.options(max_restarts=2).remote(str(log), 10)
    assert ember.get(a.incr.remote(), timeout=T) == 11
    pids = [ember.get(a.pid.remote(), timeout=T)]
    for restart in (1, 2):
        _kill9(pids[-1])
        pids.append(_call_until_new_pid(a, pids[-1]))
        assert ember.get(a.read.remote(), timeout=T) == 10, "state was not reset by the restart"
        assert ember.get(a.incr.remote(), timeout=T) == 11
        assert len(_lines(log)) == 1 + restart
    assert _lines(log) == [str(p) for p in pids]
    assert len(set(pids)) == 3
    # restarts spent: the next death is final
    _kill9(pids[-1])
    time.sleep(0.5)
    with pytest.raises(exc.ActorDiedError):
        ember.get(a.read.remote(), timeout=T)
    time.sleep(0.5)
    assert len(_lines(log)) == 3


def test_max_restarts_without_task_retries_fails_in_flight_call(cluster, tmp_path):
    a = Fragile.options(max_restarts=1).remote(str(tmp_path / "log"))
    ready = tmp_path / "ready"
    ref = a.block_once.remote(str(tmp_path / "marker"), str(ready))
    assert wait_until(ready.exists, 30)
    old = int(ready.read_text())
    _kill9(old)
    with pytest.raises(exc.RayActorError):
        ember.get(ref, timeout=T)
    _call_until_new_pid(a, old)  # but the actor itself came back


def test_max_task_retries_resubmits_in_flight_call_after_restart(cluster, tmp_path):
    log = tmp_path / "log"
    a = Fragile.options(max_restarts=1, max_task_retries=1).remote(str(log))
    ready = tmp_path / "ready"
    ref = a.block_once.remote(str(tmp_path / "marker"), str(ready))
    assert wait_until(ready.exists, 30), "the call never started"
    old = int(ready.read_text())
    _kill9(old)
    status, pid = ember.get(ref, timeout=T)
    assert status == "retried"
    assert pid != old
    assert len(_lines(log)) == 2


def test_max_task_retries_per_call_option(cluster, tmp_path):
    a = Fragile.options(max_restarts=1).remote(str(tmp_path / "log"))
    ready = tmp_path / "ready"
    ref = a.block_once.options(max_task_retries=1).remote(str(tmp_path / "marker"), str(ready))
    assert wait_until(ready.exists, 30)
    old = int(ready.read_text())
    _kill9(old)
    status, pid = ember.get(ref, timeout=T)
    assert status == "retried" and pid != old


def test_calls_queued_during_restart_run_on_new_instance(cluster, tmp_path):
    a = Fragile.options(max_restarts=1, max_task_retries=1).remote(str(tmp_path / "log"), 0)
    ready = tmp_path / "ready"
    in_flight = a.block_once.remote(str(tmp_path / "marker"), str(ready))
    queued = [a.incr.remote() for _ in range(3)]  # behind the blocked call
    assert wait_until(ready.exists, 30)
    _kill9(int(ready.read_text()))
    assert ember.get(in_flight, timeout=T)[0] == "retried"
    assert ember.get(queued, timeout=T) == [1, 2, 3]


def test_failed_constructor_argument_fails_the_actor(cluster, tmp_path):
    @ember.remote
    def broken():
        raise OSError("no-such-config-3")

    a = Fragile.remote(broken.remote())
    with pytest.raises(exc.RayActorError) as info:
        ember.get(a.read.remote(), timeout=60)
    assert "no-such-config-3" in str(info.value)


def test_unlimited_restarts(cluster, tmp_path):
    a = Fragile.options(max_restarts=-1).remote(str(tmp_path / "log"), 7)
    pid = ember.get(a.pid.remote(), timeout=T)
    for _ in range(3):
        _kill9(pid)
        pid = _call_until_new_pid(a, pid)
    assert ember.get(a.read.remote(), timeout=T) == 7
    assert len(_lines(tmp_path / "log")) == 4


@ember.remote
class CrashingInit:
    """The constructor kills its own process the first ``crashes`` times it runs."""

    def __init__(self, log, crashes):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        with open(log) as f:
            runs = len(f.read().splitlines())
        if runs <= crashes:
            os._exit(3)
        self.runs = runs

    def get_runs(self):
        return self.runs


def test_constructor_crash_is_restarted(cluster, tmp_path):
    a = CrashingInit.options(max_restarts=1).remote(str(tmp_path / "log"), 1)
    assert ember.get(a.get_runs.remote(), timeout=T) == 2


def test_constructor_crash_without_restarts_is_actor_died(cluster, tmp_path):
    a = CrashingInit.remote(str(tmp_path / "log"), 1)
    with pytest.raises(exc.ActorDiedError) as info:
        ember.get(a.get_runs.remote(), timeout=T)
    assert "exited with code 3" in str(info.value) or "code 3" in str(info.value), str(info.value)


def test_async_actor_restarts_with_a_fresh_loop(cluster, tmp_path):
    @ember.remote(max_restarts=1)
    class AsyncCounter:
        def __init__(self):
            self.n = 0

        async def incr(self):
            await asyncio.sleep(0.01)
            self.n += 1
            return self.n

        async def pid(self):
            return os.getpid()

    a = AsyncCounter.remote()
    assert ember.get([a.incr.remote() for _ in range(3)], timeout=T) == [1, 2, 3]
    pid = ember.get(a.pid.remote(), timeout=T)
    _kill9(pid)
    _call_until_new_pid(a, pid)
    assert ember.get(a.incr.remote(), timeout=T) == 1


def test_named_actor_that_died_frees_its_name(cluster, tmp_path):
    a = Fragile.options(name="fragile-named").remote(str(tmp_path / "log"))
    pid = ember.get(a.pid.remote(), timeout=T)
    _kill9(pid)

    def name_free():
        try:
            ember.get_actor("fragile-named")
        except ValueError:
            return True
        return False

    assert wait_until(name_free, 60, 0.1), "get_actor still finds an actor that died"
    b = Fragile.options(name="fragile-named").remote(str(tmp_path / "log"), 5)
    assert ember.get(ember.get_actor("fragile-named").read.remote(), timeout=T) == 5
    ember.kill(b)


def test_restarting_named_actor_keeps_its_name(cluster, tmp_path):
    a = Fragile.options(name="fragile-restarts", max_restarts=1).remote(str(tmp_path / "log"), 3)
    pid = ember.get(a.pid.remote(), timeout=T)
    _kill9(pid)
    found = ember.get_actor("fragile-restarts")
    _call_until_new_pid(found, pid)
    assert ember.get(found.read.remote(), timeout=T) == 3
    ember.kill(a)
