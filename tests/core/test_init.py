"""Embedded cluster lifecycle: init, shutdown, interpreter exit, driver killed, init args,
and the introspection calls (nodes, cluster_resources, available_resources)."""

from __future__ import annotations

import json
import os
import signal
import time

import ember
import pytest

from .helpers import (
    AGENT_MARK,
    WORKER_MARK,
    MiB,
    agent_processes,
    child_processes,
    cmdline,
    read_json_line,
    run_driver,
    shm_used_by,
    start_driver,
    wait_pids_gone,
    wait_shm_gone,
    wait_until,
    worker_processes,
)

# The store's files are /dev/shm/ember-*: ember's naming, so when these tests run
# against real Ray (see conftest.py) only the process checks apply.
EMBER_SHM = ember.__name__ == "ember"

# A driver script that starts a cluster, creates a large (shared-memory) object, runs a
# task, leaves another task running, then prints the pids of everything it started
# and the /dev/shm entries its cluster uses.
_DRIVER_PRELUDE = """
    import json, os, sys, time
    import numpy as np
    import psutil
    import ember

    ember.init(num_cpus=2)
    big = ember.put(np.ones(4 * 1024 * 1024 // 8))    # 4 MiB: goes to the shared-memory store

    @ember.remote
    def where():
        return os.getpid()

    worker_pid = ember.get(where.remote(), timeout=60)

    @ember.remote
    def linger(path):                                  # still running when the driver goes
        open(path, "w").close()
        time.sleep(100)

    lingering = linger.remote(os.path.abspath("lingering.started"))
    deadline = time.time() + 30
    while not os.path.exists("lingering.started") and time.time() < deadline:
        time.sleep(0.02)
    assert os.path.exists("lingering.started")
    assert float(ember.get(big, timeout=60).sum()) == 4 * 1024 * 1024 // 8
    pids = [p.pid for p in psutil.Process().children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE]

    shm = set()                       # /dev/shm/ember* entries this driver's cluster uses
    for pid in [os.getpid(), *pids]:
        try:
            with open(f"/proc/{pid}/maps") as f:
                shm |= {line.split("/dev/shm/")[1].split()[0].split("/")[0]
                        for line in f if "/dev/shm/ember" in line}
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("/dev/shm/ember"):
                    shm.add(target.split("/dev/shm/")[1].split()[0].split("/")[0])
        except OSError:
            pass
    print("PIDS " + json.dumps({"pids": pids, "worker": worker_pid, "shm": sorted(shm)}),
          flush=True)
"""


@pytest.mark.ray_differs
def test_init_starts_agent_and_prestarted_workers(new_cluster):
    """Process names are ember's (Ray's raylet and workers look different)."""
    assert not ember.is_initialized()
    t0 = time.monotonic()
    new_cluster(num_cpus=2)
    elapsed = time.monotonic() - t0
    print(f"ember.init() took {elapsed * 1000:.0f} ms")
    # The issue asks for "well under a second"; this is only a loose sanity bound,
    # the real target lives in the benchmarks.
    assert elapsed < 3.0, f"init took {elapsed:.2f} s"
    assert ember.is_initialized()

    agents = agent_processes()
    assert agents, (
        f"no child process with {AGENT_MARK!r} in its command line; children: "
        f"{[cmdline(p) for p in child_processes()]}"
    )
    # Workers are pre-started: they appear without any task being submitted.
    workers = wait_until(worker_processes, timeout=60)
    assert workers, (
        f"no pre-started {WORKER_MARK!r} process within 10 s of init; children: "
        f"{[cmdline(p) for p in child_processes()]}"
    )


@pytest.mark.ray_differs
def test_tasks_run_in_reused_workers(new_cluster):
    """Workers are pre-started and reused: no process per task. (Process names are ember's.)"""
    new_cluster(num_cpus=2)

    @ember.remote
    def pid():
        return os.getpid()

    pids = [ember.get(pid.remote(), timeout=60) for _ in range(20)]
    pids += ember.get([pid.remote() for _ in range(40)], timeout=60)
    workers = {p.pid for p in worker_processes()}
    assert set(pids) <= workers, f"tasks ran in {set(pids) - workers}, not in workers {workers}"
    assert len(set(pids)) < 10, f"60 tasks used {len(set(pids))} distinct processes"
    assert os.getpid() not in pids


def test_shutdown_stops_everything(new_cluster, tmp_path):
    new_cluster(num_cpus=2)
    import numpy as np

    ref = ember.put(np.ones(4 * MiB // 8))
    assert float(ember.get(ref, timeout=30).sum()) == 4 * MiB // 8

    @ember.remote
    def linger(path):
        import time

        open(path, "w").close()
        time.sleep(100)

    started = tmp_path / "started"
    lingering = linger.remote(str(started))  # still running at shutdown
    assert wait_until(started.exists, 30)
    pids = [p.pid for p in child_processes()]
    assert pids
    new_shm = shm_used_by([os.getpid(), *pids])
    if EMBER_SHM:
        assert new_shm, "expected the large put to use a /dev/shm/ember* entry"

    del ref, lingering
    ember.shutdown()
    assert not ember.is_initialized()
    alive = wait_pids_gone(pids)
    assert not alive, f"processes alive 15 s after shutdown: {alive}"
    left = wait_shm_gone(new_shm)
    assert not left, f"/dev/shm entries left after shutdown: {sorted(left)}"


def test_shutdown_leaves_no_threads(new_cluster):
    import threading

    before = {t.ident for t in threading.enumerate()}
    new_cluster(num_cpus=1)

    @ember.remote
    def f():
        return 1

    assert ember.get(f.remote(), timeout=60) == 1
    ember.shutdown()
    extra = wait_until(lambda: not [t for t in threading.enumerate() if t.ident not in before], 10)
    left = [t.name for t in threading.enumerate() if t.ident not in before]
    assert extra or not left, f"threads left running after shutdown: {left}"


def test_driver_exits_with_an_uncaught_exception(tmp_path):
    result = run_driver(
        tmp_path,
        """
        import json, psutil, ember
        ember.init(num_cpus=1)
        print("PIDS " + json.dumps([p.pid for p in psutil.Process().children(recursive=True)]),
              flush=True)
        raise SystemError("driver fails")
        """,
    )
    assert result.returncode != 0 and "driver fails" in result.stderr
    pids = json.loads(result.stdout.split("PIDS ", 1)[1].splitlines()[0])
    assert pids
    alive = wait_pids_gone(pids)
    assert not alive, f"processes alive 15 s after the driver failed: {alive}"


def test_shutdown_without_init_is_harmless():
    assert not ember.is_initialized()
    ember.shutdown()
    assert not ember.is_initialized()


def test_is_initialized_and_restart(new_cluster):
    assert not ember.is_initialized()
    new_cluster(num_cpus=1)
    assert ember.is_initialized()
    ember.shutdown()
    assert not ember.is_initialized()

    # A second cluster in the same process, with different resources.
    new_cluster(num_cpus=3)
    assert ember.is_initialized()
    assert ember.cluster_resources()["CPU"] == 3.0

    @ember.remote
    def f(x):
        return x + 1

    assert ember.get(f.remote(1), timeout=60) == 2


def test_init_twice_raises_unless_ignored(new_cluster):
    new_cluster(num_cpus=2)
    with pytest.raises(RuntimeError):
        ember.init(num_cpus=2)
    assert ember.is_initialized()
    ember.init(num_cpus=3, ignore_reinit_error=True)  # no error, keeps the first cluster
    assert ember.is_initialized()
    assert ember.cluster_resources()["CPU"] == 2.0

    @ember.remote
    def f():
        return "still works"

    assert ember.get(f.remote(), timeout=60) == "still works"


def test_init_resource_arguments(new_cluster):
    new_cluster(
        num_cpus=3,
        num_gpus=1,
        resources={"widget": 2, "gadget": 5},
        object_store_memory=300 * MiB,
    )
    res = ember.cluster_resources()
    assert res["CPU"] == 3.0
    assert res["GPU"] == 1.0
    assert res["widget"] == 2.0
    assert res["gadget"] == 5.0
    avail = wait_until(
        lambda: ember.available_resources().get("CPU") == 3.0 and ember.available_resources(), 10
    )
    assert avail, f"idle cluster: available_resources()={ember.available_resources()}"
    assert avail.get("widget") == 2.0
    assert avail.get("GPU") == 1.0


def test_init_defaults_to_machine_cpus(new_cluster):
    new_cluster()
    assert ember.cluster_resources()["CPU"] == float(os.cpu_count())


def test_nodes(new_cluster):
    new_cluster(num_cpus=2, resources={"widget": 1})
    nodes = ember.nodes()
    assert isinstance(nodes, list) and nodes
    for node in nodes:
        assert isinstance(node, dict)
        assert {"NodeID", "Alive", "Resources"} <= node.keys(), node.keys()
    alive = [n for n in nodes if n["Alive"]]
    assert len(alive) == 1, nodes
    assert alive[0]["Resources"]["CPU"] == 2.0
    assert alive[0]["Resources"]["widget"] == 1.0
    assert isinstance(alive[0]["NodeID"], str) and alive[0]["NodeID"]


def test_interpreter_exit_stops_everything(tmp_path):
    """A driver that never calls shutdown() leaves nothing behind when it exits."""
    proc = start_driver(tmp_path, _DRIVER_PRELUDE + "\n    print('EXITING', flush=True)\n")
    try:
        info = read_json_line(proc, "PIDS")
        new_shm = set(info["shm"])
        rc = proc.wait(timeout=30)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err[-3000:]
    assert info["pids"], "the driver had no child processes"
    alive = wait_pids_gone(info["pids"])
    assert not alive, f"processes alive 15 s after the driver exited: {alive}"
    if EMBER_SHM:
        assert new_shm, "expected the driver's large put to create /dev/shm/ember* entries"
    left = wait_shm_gone(new_shm)
    assert not left, f"/dev/shm entries left after the driver exited: {sorted(left)}"


@pytest.mark.ray_differs
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_driver_killed_agent_exits_and_frees_shm(tmp_path, kill_on_exit, sig):
    """Driver killed (no atexit runs): the agent notices, stops its workers (one of them
    busy), removes its shm. (Ray's local cluster outlives a killed driver; ember's must not.)"""
    proc = start_driver(tmp_path, _DRIVER_PRELUDE + "\n    time.sleep(120)\n")
    kill_on_exit.append(proc.pid)
    info = read_json_line(proc, "PIDS")
    kill_on_exit.extend(info["pids"])
    new_shm = set(info["shm"])
    assert info["pids"], "the driver had no child processes"
    assert info["worker"] in info["pids"]

    os.kill(proc.pid, sig)
    proc.wait(timeout=10)
    proc.communicate(timeout=10)
    alive = wait_pids_gone(info["pids"], timeout=20)
    assert not alive, f"processes alive 20 s after the driver was killed: {alive}"
    assert new_shm, "expected the driver's large put to create /dev/shm/ember* entries"
    left = wait_shm_gone(new_shm, timeout=10)
    assert not left, f"/dev/shm entries left after the driver was killed: {sorted(left)}"


def test_init_in_a_fresh_interpreter(tmp_path):
    """`import ember as ray` + ray.init() + a task + shutdown, in a clean process."""
    result = run_driver(
        tmp_path,
        """
        import ember as ray
        ray.init(num_cpus=2)

        @ray.remote
        def square(x):
            return x * x

        print("RESULT", ray.get([square.remote(i) for i in range(5)], timeout=60))
        ray.shutdown()
        print("IS_INITIALIZED", ray.is_initialized())
        """,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RESULT [0, 1, 4, 9, 16]" in result.stdout
    assert "IS_INITIALIZED False" in result.stdout
