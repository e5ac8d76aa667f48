"""Detached actors outlive the driver that created them and are reachable by name from a
later driver. This needs a cluster that outlives a driver process: ``ember start --head``
(a background node agent on this machine) and ``ember.init(address="auto")``.

Until both exist the test skips, saying which part is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid

import ember
import pytest

from .helpers import (
    CLEANUP_GRACE_S,
    describe,
    pid_alive,
    run_script,
    session_processes,
    shm_used_by,
    wait_pid_gone,
    wait_shm_gone,
    wait_until,
)

CLI = [sys.executable, "-m", "ember_node.cli"]

DRIVER_1 = """
import json, os
import ember as ray

ray.init(address="auto", namespace=NAMESPACE)  # as Ray needs across drivers

@ray.remote
class Store:
    def __init__(self, owner):
        self.data = {"owner": owner}

    def put(self, key, value):
        self.data[key] = value
        return len(self.data)

    def get(self, key):
        return self.data.get(key)

    def pid(self):
        return os.getpid()

keeper = Store.options(name=NAME, lifetime="detached").remote("driver-1")
ray.get(keeper.put.remote("answer", 42), timeout=60)
temp = Store.options(name=NAME + "-temp").remote("driver-1")  # not detached
ray.get(temp.put.remote("x", 1), timeout=60)
print("RESULT " + json.dumps({
    "pid": ray.get(keeper.pid.remote(), timeout=60),
    "temp_pid": ray.get(temp.pid.remote(), timeout=60),
}), flush=True)
"""

DRIVER_2 = """
import json
import ember as ray

ray.init(address="auto", namespace=NAMESPACE)  # as Ray needs across drivers
keeper = ray.get_actor(NAME)
result = {
    "answer": ray.get(keeper.get.remote("answer"), timeout=60),
    "owner": ray.get(keeper.get.remote("owner"), timeout=60),
    "pid": ray.get(keeper.pid.remote(), timeout=60),
}
try:
    ray.get_actor(NAME + "-temp")
    result["temp_found"] = True
except ValueError:
    result["temp_found"] = False
ray.kill(keeper)
print("RESULT " + json.dumps(result), flush=True)
ray.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_tmpdir(monkeypatch):
    """A private TMPDIR for this test and its subprocesses.

    ``ember start`` records the cluster it started under ``$TMPDIR/ember-<uid>`` and
    ``address="auto"`` reads that record, so a private TMPDIR keeps this test away from any
    other cluster started on the machine (and a short path keeps Unix socket paths short).
    """
    path = tempfile.mkdtemp(prefix="ea-", dir="/tmp")
    monkeypatch.setenv("TMPDIR", path)
    monkeypatch.setattr(tempfile, "tempdir", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def _result(proc: subprocess.CompletedProcess, which: str) -> dict:
    assert proc.returncode == 0, (
        f"{which} failed (rc={proc.returncode})\nstdout: {proc.stdout[-2000:]}\n"
        f"stderr: {proc.stderr[-3000:]}"
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise AssertionError(f"{which} printed no RESULT line; stdout: {proc.stdout[-2000:]}")


def _require_auto_address() -> None:
    """Skip when this ember cannot connect to a cluster started by ``ember start``."""
    if ember.is_initialized():
        ember.shutdown()
    try:
        ember.init(address="auto")
    except ValueError as err:
        if "not available" in str(err):
            pytest.skip(f"ember.init(address='auto') is not available yet: {err}")
        raise
    except Exception:  # noqa: BLE001 - supported, but no cluster runs yet: what we expect
        return
    # connected although nothing was started under our private TMPDIR
    ember.shutdown()
    pytest.fail("ember.init(address='auto') connected to a cluster before the test started one")


def test_detached_actor_outlives_its_driver(tmp_path, private_tmpdir):
    _require_auto_address()
    if importlib.util.find_spec("ember_node.cli") is None:
        pytest.skip("ember_node.cli (`ember start` / `ember stop`) does not exist yet")
    help_text = _cli("start", "--help", timeout=30).stdout
    args = ["start", "--head", "--num-cpus", "2"]
    if "--port" in help_text:
        args += ["--port", str(_free_port())]  # do not collide with a cluster on 6380
    started = _cli(*args)
    ours: set[str] = set()
    try:
        assert started.returncode == 0, (
            f"`ember {' '.join(args)}` failed (rc={started.returncode})\n"
            f"stdout: {started.stdout[-2000:]}\nstderr: {started.stderr[-3000:]}"
        )
        name = f"keeper-{uuid.uuid4().hex[:8]}"
        prelude = f"NAME = {name!r}\nNAMESPACE = 'ember-actor-tests'\n"

        first = _result(run_script(tmp_path, prelude + DRIVER_1, "driver1.py"), "driver 1")
        assert pid_alive(first["pid"]), "the detached actor died with driver 1"
        assert wait_pid_gone(first["temp_pid"]), (
            "a non-detached actor survived the exit of the driver that created it"
        )

        second = _result(run_script(tmp_path, prelude + DRIVER_2, "driver2.py"), "driver 2")
        assert second["answer"] == 42
        assert second["owner"] == "driver-1"
        assert second["pid"] == first["pid"], "driver 2 reached a different actor process"
        assert second["temp_found"] is False
        assert wait_pid_gone(first["pid"]), "ember.kill from driver 2 did not end the actor"
    finally:
        ours = shm_used_by(session_processes())  # the background cluster's store
        stopped = _cli("stop")
    assert stopped.returncode == 0, (
        f"`ember stop` failed (rc={stopped.returncode})\nstdout: {stopped.stdout[-2000:]}\n"
        f"stderr: {stopped.stderr[-3000:]}"
    )
    wait_until(lambda: not session_processes(), CLEANUP_GRACE_S, 0.1)
    survivors = session_processes()
    assert not survivors, f"processes left after `ember stop`: {describe(survivors)}"
    assert ours, "the background cluster had no /dev/shm/ember* store mapped"
    left = wait_shm_gone(ours)
    assert not left, f"/dev/shm entries left after `ember stop`: {sorted(left)}"
