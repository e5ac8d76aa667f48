"""Actors on a two-node cluster on this machine: a head started with ``ember start --head``
and a worker node joined with ``ember start --address``; the driver connects with
``ember.init(address="auto")``. Actors that need the worker node's custom resource run
there, and everything a single-node actor does must still hold across the node boundary."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import ember
import ember.exceptions as exc
import psutil
import pytest

from .helpers import session_processes, shm_used_by, wait_pid_gone, wait_shm_gone, wait_until

T = 30
CLI = [sys.executable, "-m", "ember_node.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, (
        f"`{what}` failed (rc={proc.returncode})\nstdout: {proc.stdout[-2000:]}\n"
        f"stderr: {proc.stderr[-3000:]}"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes():
    """Head (1 CPU) + worker node (1 CPU, resource ``far``); yields the worker node's pid."""
    if ember.is_initialized():
        ember.shutdown()
    private = tempfile.mkdtemp(prefix="em-", dir="/tmp")  # private record of `ember start`
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", private)
        mp.setattr(tempfile, "tempdir", private)
        port = _free_port()
        try:
            head = _cli("start", "--head", "--port", str(port), "--num-cpus", "1")
            _check(head, "ember start --head")
            token = os.path.join(private, f"ember-{os.getuid()}", "token")
            node = _cli("start", "--address", f"127.0.0.1:{port}", "--token-file", token,
                        "--num-cpus", "1", "--resources", json.dumps({"far": 1}))
            _check(node, "ember start --address")
            ember.init(address="auto")
            joined = wait_until(lambda: ember.cluster_resources().get("far") == 1.0, 30, 0.1)
            assert joined, f"the worker node never joined: {ember.cluster_resources()}"
            worker_agents = [p for p in session_processes()
                             if "worker_node" in " ".join(p.cmdline())]
            assert len(worker_agents) == 1, worker_agents
            yield worker_agents[0].pid
        finally:
            used = shm_used_by(session_processes())
            if ember.is_initialized():
                ember.shutdown()
            stopped = _cli("stop")
            shutil.rmtree(private, ignore_errors=True)
    _check(stopped, "ember stop")
    left = wait_shm_gone(used)
    assert not left, f"/dev/shm entries left after `ember stop`: {sorted(left)}"


@ember.remote
class Remote:
    def __init__(self, start=0):
        self.value = start
        self.seen = []

    def incr(self):
        self.value += 1
        return self.value

    def read(self):
        return self.value

    def pid(self):
        return os.getpid()

    def append(self, x):
        self.seen.append(x)
        return x

    def log(self):
        return list(self.seen)

    def call_other(self, other):
        return ember.get(other.incr.remote(), timeout=60)


@ember.remote
def delayed(x, seconds):
    time.sleep(seconds)
    return x


@ember.remote
def bump(handle):
    return ember.get(handle.incr.remote(), timeout=60)


FAR = {"resources": {"far": 1}, "num_cpus": 0}


def _runs_under(pid: int, agent_pid: int) -> bool:
    try:
        return any(p.pid == agent_pid for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False


def test_actor_runs_on_the_node_with_its_resource(two_nodes):
    a = Remote.options(**FAR).remote(10)
    pid = ember.get(a.pid.remote(), timeout=T)
    assert _runs_under(pid, two_nodes), "the actor is not on the worker node"
    assert ember.get(a.incr.remote(), timeout=T) == 11
    assert wait_until(lambda: ember.available_resources().get("far", 0.0) == 0.0, 10)
    ember.kill(a)
    assert wait_pid_gone(pid)
    assert wait_until(lambda: ember.available_resources().get("far", 0.0) == 1.0, 10), (
        f"the killed actor kept its resource: {ember.available_resources()}"
    )


def test_handles_cross_nodes(two_nodes):
    far = Remote.options(**FAR).remote()
    near = Remote.remote(100)
    assert ember.get(bump.remote(far), timeout=T) == 1  # task (any node) -> far actor
    assert ember.get(far.call_other.remote(near), timeout=T) == 101  # far -> near
    assert ember.get(near.call_other.remote(far), timeout=T) == 2  # near -> far
    ember.kill(far)
    ember.kill(near)


def test_order_kept_across_nodes(two_nodes):
    far = Remote.options(**FAR).remote()
    refs = [far.append.remote(delayed.remote(i, (i * 7 % 5) / 100)) for i in range(40)]
    assert ember.get(refs, timeout=T) == list(range(40))
    assert ember.get(far.log.remote(), timeout=T) == list(range(40))
    ember.kill(far)


def test_remote_actor_killed_by_signal_restarts(two_nodes):
    far = Remote.options(max_restarts=1, **FAR).remote(5)
    ember.get(far.incr.remote(), timeout=T)
    pid = ember.get(far.pid.remote(), timeout=T)
    os.kill(pid, signal.SIGKILL)

    def restarted():
        try:
            return ember.get(far.pid.remote(), timeout=T) != pid
        except exc.RayActorError:
            return False

    assert wait_until(restarted, 30, 0.2), "the remote actor did not restart"
    assert ember.get(far.read.remote(), timeout=T) == 5
    assert _runs_under(ember.get(far.pid.remote(), timeout=T), two_nodes)
    os.kill(ember.get(far.pid.remote(), timeout=T), signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(exc.ActorDiedError):
        ember.get(far.read.remote(), timeout=T)


def test_remote_named_actor_and_gc(two_nodes):
    named = Remote.options(name="far-named", **FAR).remote(1)
    assert ember.get(ember.get_actor("far-named").read.remote(), timeout=T) == 1
    ember.kill(named)
    anonymous = Remote.options(**FAR).remote()
    pid = ember.get(anonymous.pid.remote(), timeout=T)
    del anonymous
    gc.collect()
    assert wait_pid_gone(pid, 15), "a remote actor survived its last handle"


def test_remote_actor_waits_for_its_resource(two_nodes):
    first = Remote.options(**FAR).remote()
    ember.get(first.read.remote(), timeout=T)
    second = Remote.options(**FAR).remote()
    pending = second.read.remote()
    ready, _ = ember.wait([pending], timeout=1.0)
    assert not ready
    ember.kill(first)
    assert ember.get(pending, timeout=T) == 0
    ember.kill(second)
