"""In-tree autoscaling end to end: pending work no node fits (or that waits for room) scales
a worker group up, the work runs on the new workers, and the idle workers are scaled down.

The real operator (kopf in-process) runs against kmock's Kubernetes API emulator, because no
real API server exists on these machines (see ``ember_kmock.py``); it asks a real head (real
agents, real gRPC on loopback) for its pending demand and idleness. The test plays the
kubelet: when the operator creates a worker pod, the test starts a real worker node agent
that advertises that pod's name (as the agent in the pod does) and marks the pod ready.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import ember
import pytest
from ember_kmock import Cluster, EmberEmulator, cluster_spec, counts, eventually, worker_group
from ember_operator.demand import HeadDemand
from ember_operator.idleness import HeadIdleness
from ember_operator.reconciler import ReconcilerOptions
from ember_operator.runtime import Operator, OperatorConfig

pytestmark = [
    pytest.mark.kmock(cls=EmberEmulator),
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),
]

TOKEN = "scale-up-test-token"
WORKER_POD = "demo-cpu-worker-00002"  # the names fixture: head 00001, then the first worker


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    rfd, wfd = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", *args, "--ready-fd", str(wfd)], pass_fds=(wfd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    os.close(wfd)
    with os.fdopen(rfd) as f:
        assert json.loads(f.readline())
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Head:
    """A real head agent (1 CPU, nothing else), and the worker agents the test starts."""

    address: str
    root: str
    token_file: str
    workers: list[subprocess.Popen] = field(default_factory=list)

    def join(self, pod: str, resources: dict[str, float]) -> None:
        """Play the kubelet running ``pod``: a worker node agent advertising its name."""
        self.workers.append(_start([
            "ember_node.worker_node", "--address", self.address, "--token-file", self.token_file,
            "--session-dir", os.path.join(self.root, pod), "--num-cpus", "1",
            "--resources", json.dumps(resources), "--advertise", pod], env={"EMBER_TEST_POD": pod}))


@pytest.fixture
def head() -> Iterator[Head]:
    tmp = tempfile.mkdtemp(prefix="ember-scaleup-")
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(TOKEN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = None
    head = Head(f"127.0.0.1:{port}", tmp, token_file)
    try:
        proc = _start(["ember_node", "--session-dir", os.path.join(tmp, "head"), "--num-cpus", "1",
                       "--port", str(port), "--token-file", token_file])
        yield head
    finally:
        for worker in reversed(head.workers):
            _stop(worker)
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def operator_config(names: Iterator[str], head: Head) -> OperatorConfig:
    """The operator asking the real head for demand and idleness, resyncing often."""
    secret = {"data": {"token": base64.b64encode(TOKEN.encode()).decode()}}
    options = ReconcilerOptions(
        suffix=lambda: next(names),
        idleness=HeadIdleness(lambda ns, name: secret, address=lambda name, ns: head.address),
        demand=HeadDemand(lambda ns, name: secret, address=lambda name, ns: head.address))
    return OperatorConfig(metrics_host="127.0.0.1", metrics_port=0, resync_seconds=0.3, reconciler=options)


def _events(cluster: Cluster, reason: str) -> list[dict]:
    return [e for e in cluster.events() if e["reason"] == reason]


def _one(cluster: Cluster, reason: str) -> dict:
    """The one Event of ``reason`` (AssertionError while there is none, or if several)."""
    found = _events(cluster, reason)
    assert len(found) == 1, [e["message"] for e in found]
    return found[0]


async def test_pending_work_scales_a_group_up_then_idle_scales_it_down(
        kmock: EmberEmulator, operator: Operator, head: Head) -> None:
    # driver calls block: run them in a thread of our own, never on the emulator's loop
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1, thread_name_prefix="driver")
    await loop.run_in_executor(pool, lambda: ember.init(head.address, token=TOKEN))
    try:
        cluster = Cluster(kmock, "default", "demo")
        await cluster.create(cluster_spec(
            enableInTreeAutoscaling=True,
            workerGroupSpecs=[
                worker_group(0, idleTimeoutSeconds=1, rayStartParams={"resources": '{"on_pod": 1}'}),
                {**worker_group(0, maxReplicas=0, rayStartParams={"resources": '{"big_pod": 1}'}),
                 "groupName": "big"}]))
        await eventually(lambda: counts(cluster, 1, 0))

        @ember.remote(resources={"on_pod": 1})
        def where() -> str:
            return os.environ.get("EMBER_TEST_POD", "?")  # its workers inherit the agent's environment

        @ember.remote(resources={"on_pod": 4})
        def too_big() -> None:
            return None

        @ember.remote(resources={"big_pod": 1})
        def capped() -> None:
            return None

        ref = where.remote()
        impossible = too_big.remote()
        waiting = capped.remote()

        def scaled_up() -> None:
            assert cluster.pod_names("worker") == [WORKER_POD], cluster.pod_names()
            assert cluster.object()["spec"]["workerGroupSpecs"][0]["replicas"] == 1
            event = _one(cluster, "ScaledUp")
            assert "0 -> 1 replicas" in event["message"] and "on_pod: 1" in event["message"], event

        await eventually(scaled_up, timeout=60, interval=0.1)

        def warned() -> None:
            event = _one(cluster, "UnschedulableDemand")
            assert event["type"] == "Warning"
            assert "on_pod: 4" in event["message"] and "the largest, cpu, offers" in event["message"], event

        await eventually(warned, timeout=30, interval=0.1)

        def at_max() -> None:
            event = _one(cluster, "AtMaxReplicas")
            assert event["message"].startswith("worker group big is at maxReplicas"), event

        await eventually(at_max, timeout=30, interval=0.1)

        # play the kubelet: the pod's agent joins the head, the pod turns ready
        await loop.run_in_executor(pool, head.join, WORKER_POD, {"on_pod": 1})
        await cluster.make_ready([WORKER_POD])
        assert await loop.run_in_executor(pool, lambda: ember.get(ref, timeout=60)) == WORKER_POD
        ember.cancel(impossible)
        ember.cancel(waiting)
        assert len(_events(cluster, "ScaledUp")) == 1  # the pod on its way was counted: no second one

        def scaled_down() -> None:
            counts(cluster, 1, 0)
            group = cluster.object()["spec"]["workerGroupSpecs"][0]
            assert group["replicas"] == 0 and group["scaleStrategy"]["workersToDelete"] == [], group
            event = _one(cluster, "ScaledDown")
            assert f"removing idle {WORKER_POD}" in event["message"], event

        await eventually(scaled_down, timeout=60, interval=0.1)
        # posted once, not every pass
        assert len(_events(cluster, "UnschedulableDemand")) == len(_events(cluster, "AtMaxReplicas")) == 1
        assert cluster.pod_names("worker", group="big") == []
    finally:
        await loop.run_in_executor(pool, ember.shutdown)
        pool.shutdown(wait=True)


async def test_work_waiting_for_room_adds_pods_that_each_run_some(
        kmock: EmberEmulator, operator: Operator, head: Head) -> None:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1, thread_name_prefix="driver")
    await loop.run_in_executor(pool, lambda: ember.init(head.address, token=TOKEN))
    try:
        cluster = Cluster(kmock, "default", "demo")
        await cluster.create(cluster_spec(
            enableInTreeAutoscaling=True,
            workerGroupSpecs=[worker_group(1, idleTimeoutSeconds=1, rayStartParams={"resources": '{"on_pod": 1}'})]))
        await eventually(lambda: counts(cluster, 1, 1))
        await loop.run_in_executor(pool, head.join, WORKER_POD, {"on_pod": 1})
        await cluster.make_ready([WORKER_POD])

        @ember.remote(resources={"on_pod": 1})
        def where(flag: str) -> str:
            import time

            while not os.path.exists(flag):  # hold the pod until the test has seen the scale-up
                time.sleep(0.05)
            return os.environ.get("EMBER_TEST_POD", "?")

        flag = os.path.join(head.root, "go")
        refs = [where.remote(flag) for _ in range(3)]  # one runs on the pod, two wait for room

        def scaled_up() -> None:
            assert cluster.object()["spec"]["workerGroupSpecs"][0]["replicas"] == 3
            assert len(cluster.pod_names("worker")) == 3, cluster.pod_names()
            event = _one(cluster, "ScaledUp")
            assert "1 -> 3 replicas" in event["message"], event

        await eventually(scaled_up, timeout=60, interval=0.1)
        new = [name for name in cluster.pod_names("worker") if name != WORKER_POD]
        for pod in new:  # play the kubelet for the two new pods
            await loop.run_in_executor(pool, head.join, pod, {"on_pod": 1})
        await cluster.make_ready(new)
        probe = HeadDemand(lambda ns, name: {"data": {"token": base64.b64encode(TOKEN.encode()).decode()}},
                           address=lambda name, ns: head.address)

        body = cluster.object()
        deadline = loop.time() + 60
        while True:  # the new pods joined and each took a waiting task (asked off the emulator's loop)
            report = await loop.run_in_executor(pool, probe, body)
            if report is not None and set(report.workers) == {WORKER_POD, *new} and report.waiting == ():
                break
            assert loop.time() < deadline, report
            await asyncio.sleep(0.1)
        open(flag, "w").close()
        ran = await loop.run_in_executor(pool, lambda: ember.get(refs, timeout=60))
        assert sorted(ran) == sorted([WORKER_POD, *new])  # each pod ran one
        assert len(_events(cluster, "ScaledUp")) == 1
        await eventually(lambda: counts(cluster, 1, 0), timeout=60, interval=0.1)  # all idle: gone
    finally:
        await loop.run_in_executor(pool, ember.shutdown)
        pool.shutdown(wait=True)
