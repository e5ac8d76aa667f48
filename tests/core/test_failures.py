"""Worker failures and cancellation: crashes give WorkerCrashedError once retries are
spent (max_retries, default 3), and cancel() makes get raise TaskCancelledError.
Remote code counts its attempts by appending to a file in tmp_path."""

from __future__ import annotations

import os
import signal
import time

import ember
import ember.exceptions as exc
import pytest

from .helpers import pid_alive, wait_until

CLUSTER_ARGS = {"num_cpus": 2}


def _lines(path) -> int:
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def crash(cluster):
    """A task that logs its attempt, then dies in the given way while attempt <= crashes."""

    @ember.remote
    def crash_task(log, how, crashes):
        import ctypes
        import os
        import signal

        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        with open(log) as f:
            attempt = len(f.read().splitlines())
        if attempt <= crashes:
            if how == "exit":
                os._exit(1)
            elif how == "segfault":
                ctypes.string_at(0)
            elif how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
        return attempt

    return crash_task


@pytest.fixture
def healthy(cluster):
    """After the test: the cluster still runs tasks and gets its CPUs back."""
    yield

    @ember.remote
    def ping(i):
        return i

    assert ember.get([ping.remote(i) for i in range(20)], timeout=60) == list(range(20))
    idle = wait_until(lambda: ember.available_resources().get("CPU", 0.0) == 2.0, 20)
    assert idle, f"CPUs not returned: available={ember.available_resources()}"


# ----------------------------------------------------------------------- crashes


@pytest.mark.parametrize("how", ["exit", "segfault", "sigkill"])
def test_crash_without_retries(crash, healthy, tmp_path, how):
    log = tmp_path / "attempts"
    ref = crash.options(max_retries=0).remote(str(log), how, 99)
    t0 = time.monotonic()
    with pytest.raises(exc.WorkerCrashedError) as info:
        ember.get(ref, timeout=60)
    assert time.monotonic() - t0 < 15, "the crash was not reported promptly"
    assert isinstance(info.value, exc.RayError)
    assert _lines(log) == 1


def test_crash_default_max_retries_is_three(crash, healthy, tmp_path):
    log = tmp_path / "attempts"
    with pytest.raises(exc.WorkerCrashedError):
        ember.get(crash.remote(str(log), "exit", 99), timeout=60)
    assert _lines(log) == 4  # first try + 3 retries


def test_crash_then_succeed_within_default_retries(crash, healthy, tmp_path):
    log = tmp_path / "attempts"
    assert ember.get(crash.remote(str(log), "exit", 3), timeout=60) == 4


def test_crash_once_with_max_retries_two(crash, healthy, tmp_path):
    log = tmp_path / "attempts"
    ref = crash.options(max_retries=2).remote(str(log), "segfault", 1)
    assert ember.get(ref, timeout=60) == 2
    pids = {int(line) for line in (tmp_path / "attempts").read_text().split()}
    assert len(pids) == 2, "the retry should have run in a new worker"


def test_retry_after_crash_keeps_large_arguments(cluster, healthy, tmp_path):
    np = pytest.importorskip("numpy")

    @ember.remote(max_retries=2)
    def crash_once_then_sum(log, arr, arr_in_list):
        import os

        with open(log, "a") as f:
            f.write("x\n")
        with open(log) as f:
            if len(f.read().splitlines()) == 1:
                os._exit(1)
        return float(arr.sum()) + float(ember.get(arr_in_list[0]).sum())

    big = ember.put(np.ones(1_000_000))
    ref = crash_once_then_sum.remote(str(tmp_path / "log"), big, [big])
    del big
    assert ember.get(ref, timeout=60) == 2_000_000.0


def test_crash_in_a_nested_task(crash, healthy, tmp_path):
    @ember.remote
    def outer(log):
        return ember.get(crash.options(max_retries=0).remote(log, "exit", 99))

    with pytest.raises(exc.WorkerCrashedError):
        ember.get(outer.remote(str(tmp_path / "log")), timeout=60)


def test_worker_killed_from_outside(cluster, healthy, tmp_path, kill_on_exit):
    pid_file = tmp_path / "pid"

    @ember.remote(max_retries=0)
    def wait_forever(path):
        import os
        import time

        with open(path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(path + ".tmp", path)
        time.sleep(120)

    ref = wait_forever.remote(str(pid_file))
    assert wait_until(pid_file.exists, 30), "the task never started"
    pid = int(pid_file.read_text())
    kill_on_exit.append(pid)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(exc.WorkerCrashedError):
        ember.get(ref, timeout=60)


@pytest.mark.parametrize("size", ["small", "large"])
def test_object_owned_by_a_dead_worker(cluster, healthy, kill_on_exit, size):
    """A ref whose owner (the worker that submitted the task) died: get either still
    returns the value or raises ObjectLostError (Ray: OwnerDiedError), never hangs."""

    @ember.remote
    def child(n):
        import numpy as np

        return np.full(n, 1.0)

    @ember.remote
    def parent(n):
        import os

        ref = child.remote(n)
        ember.wait([ref], timeout=30)
        return os.getpid(), [ref]

    n = 10 if size == "small" else 1_000_000
    pid, (ref,) = ember.get(parent.remote(n), timeout=60)
    kill_on_exit.append(pid)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(pid), 10)
    try:
        value = ember.get(ref, timeout=30)
    except exc.GetTimeoutError:
        pytest.fail("get of an object whose owner died hung")
    except exc.ObjectLostError:
        pass
    else:
        assert value.shape == (n,) and float(value.sum()) == float(n)


def test_dependent_of_crashed_task_fails(crash, healthy, tmp_path):
    @ember.remote
    def downstream(x):
        return x

    upstream = crash.options(max_retries=0).remote(str(tmp_path / "a"), "exit", 99)
    with pytest.raises(exc.WorkerCrashedError):
        ember.get(downstream.remote(upstream), timeout=60)


# -------------------------------------------------------------------- cancellation


@pytest.fixture(scope="module")
def busy(cluster):
    """A task that logs its start and then stays busy (short sleeps) until released."""

    @ember.remote
    def busy_task(folder, name, seconds=60):
        import os
        import time

        with open(os.path.join(folder, f"{name}.started"), "a") as f:
            f.write(f"{os.getpid()}\n")
        deadline = time.time() + seconds
        while time.time() < deadline and not os.path.exists(os.path.join(folder, "release")):
            time.sleep(0.05)
        with open(os.path.join(folder, f"{name}.finished"), "w") as f:
            f.write("done")
        return name

    return busy_task


def test_cancel_queued_task(busy, healthy, tmp_path):
    folder = str(tmp_path)
    blockers = [busy.remote(folder, f"blocker{i}") for i in range(2)]  # both CPUs
    assert wait_until(lambda: len(list(tmp_path.glob("blocker*.started"))) == 2, 30)
    queued = busy.remote(folder, "queued", 0)
    time.sleep(0.2)
    ember.cancel(queued)
    try:
        with pytest.raises(exc.TaskCancelledError):
            ember.get(queued, timeout=60)
    finally:
        (tmp_path / "release").touch()
    assert ember.get(blockers, timeout=30) == ["blocker0", "blocker1"]
    time.sleep(0.5)
    assert not (tmp_path / "queued.started").exists(), "a cancelled queued task ran"


def test_cancel_running_task(busy, healthy, tmp_path):
    ref = busy.options(max_retries=3).remote(str(tmp_path), "running")
    assert wait_until((tmp_path / "running.started").exists, 30), "the task never started"
    t0 = time.monotonic()
    ember.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(ref, timeout=20)
    assert time.monotonic() - t0 < 10
    time.sleep(0.5)
    assert not (tmp_path / "running.finished").exists(), "the cancelled task ran to the end"
    assert _lines(tmp_path / "running.started") == 1, "a cancelled task was retried"


@pytest.mark.ray_differs
def test_cancel_task_in_one_long_sleep(cluster, healthy, tmp_path):
    """A task inside a single long time.sleep() is interrupted by cancel().

    (Ray 2.60 only delivers the cancel when the task next runs Python code, so a
    60 s sleep is not interrupted there; ember interrupts it.)"""
    started = tmp_path / "started"

    @ember.remote
    def long_sleep(path):
        import time

        open(path, "w").close()
        time.sleep(60)
        return "slept"

    ref = long_sleep.remote(str(started))
    assert wait_until(started.exists, 30), "the task never started"
    ember.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(ref, timeout=20)


def test_cancel_force_kills_the_worker(busy, healthy, tmp_path):
    ref = busy.remote(str(tmp_path), "forced")
    started = tmp_path / "forced.started"
    assert wait_until(lambda: _lines(started) == 1, 30), "the task never started"
    pid = int(started.read_text().split()[0])
    ember.cancel(ref, force=True)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(ref, timeout=20)
    assert wait_until(lambda: not pid_alive(pid), 10), "force-cancel left the worker alive"
    time.sleep(0.5)
    assert _lines(started) == 1, "a force-cancelled task was retried"


def test_cancel_task_waiting_for_its_arguments(busy, healthy, tmp_path):
    folder = str(tmp_path)
    upstream = busy.remote(folder, "upstream")
    assert wait_until((tmp_path / "upstream.started").exists, 30)

    @ember.remote
    def downstream(x):
        return x

    waiting = downstream.remote(upstream)
    after = downstream.remote(waiting)
    ember.cancel(waiting)
    try:
        with pytest.raises(exc.TaskCancelledError):
            ember.get(waiting, timeout=60)
        with pytest.raises(exc.TaskCancelledError):
            ember.get(after, timeout=60)
    finally:
        (tmp_path / "release").touch()
    assert ember.get(upstream, timeout=30) == "upstream"


def test_cancel_finished_task_is_a_no_op(busy, healthy, tmp_path):
    ref = busy.remote(str(tmp_path), "quick", 0)
    assert ember.get(ref, timeout=30) == "quick"
    ember.cancel(ref)
    assert ember.get(ref, timeout=30) == "quick"
