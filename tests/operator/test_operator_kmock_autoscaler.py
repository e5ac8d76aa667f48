"""In-tree autoscaling scales an idle worker down: the real operator (kopf in-process)
against kmock's Kubernetes API emulator, asking a real head (real agents, real gRPC on
loopback) which workers are idle.

kmock emulates the Kubernetes API server because no real API server exists on these
machines (see ``ember_kmock.py``); the test plays the kubelet: the worker node agent it
starts advertises the name of the worker pod the operator made, as a pod's agent does.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import ember
import pytest
from ember_kmock import Cluster, EmberEmulator, cluster_spec, counts, eventually, worker_group
from ember_operator.idleness import HeadIdleness
from ember_operator.reconciler import ReconcilerOptions
from ember_operator.runtime import Operator, OperatorConfig
from ember_realhead import head_with_worker

pytestmark = [
    pytest.mark.kmock(cls=EmberEmulator),
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),
]

TOKEN = "autoscaler-test-token"
WORKER_POD = "demo-cpu-worker-00002"  # the names fixture: head 00001, then the worker


@pytest.fixture
def head() -> Iterator[str]:
    """A real head and a worker node advertising WORKER_POD; yields the head's address."""
    with head_with_worker(TOKEN, WORKER_POD, "ember-autoscale-") as address:
        yield address


@pytest.fixture
def operator_config(names: Iterator[str], head: str) -> OperatorConfig:
    """The operator asking the real head for idleness, resyncing often."""
    secret = {"data": {"token": base64.b64encode(TOKEN.encode()).decode()}}
    idleness = HeadIdleness(lambda ns, name: secret, address=lambda name, ns: head)
    return OperatorConfig(metrics_host="127.0.0.1", metrics_port=0, resync_seconds=0.3,
                          reconciler=ReconcilerOptions(suffix=lambda: next(names), idleness=idleness))


async def test_an_idle_worker_is_scaled_down_to_min_replicas(kmock: EmberEmulator, operator: Operator) -> None:
    cluster = Cluster(kmock, "default", "demo")
    await cluster.create(cluster_spec(
        enableInTreeAutoscaling=True,
        workerGroupSpecs=[worker_group(1, idleTimeoutSeconds=1)]))
    await eventually(lambda: counts(cluster, 1, 1))
    assert cluster.pod_names("worker") == [WORKER_POD]

    def scaled_down() -> None:
        counts(cluster, 1, 0)
        group = cluster.object()["spec"]["workerGroupSpecs"][0]
        assert group["replicas"] == 0 and group["scaleStrategy"]["workersToDelete"] == [], group
        (event,) = [e for e in cluster.events() if e["reason"] == "ScaledDown"]
        assert f"removing idle {WORKER_POD}" in event["message"]

    await eventually(scaled_down, timeout=30)


async def test_a_busy_worker_is_not_scaled_down(kmock: EmberEmulator, operator: Operator, head: str) -> None:
    # driver calls block: run them in a thread of our own (not the loop's default pool,
    # which would outlive the test), never on the loop the emulator serves on
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1, thread_name_prefix="driver")
    await loop.run_in_executor(pool, lambda: ember.init(head, token=TOKEN))
    try:
        @ember.remote(resources={"on_pod": 1})
        def busy() -> str:
            time.sleep(4)
            return "done"

        ref = busy.remote()
        cluster = Cluster(kmock, "default", "demo")
        await cluster.create(cluster_spec(
            enableInTreeAutoscaling=True,
            workerGroupSpecs=[worker_group(1, idleTimeoutSeconds=1)]))
        await eventually(lambda: counts(cluster, 1, 1))
        # the operator resyncs every 0.3 s meanwhile: the worker runs the task, so it stays
        assert await loop.run_in_executor(pool, lambda: ember.get(ref, timeout=30)) == "done"
        assert cluster.pod_names("worker") == [WORKER_POD]
        assert not [e for e in cluster.events() if e["reason"] == "ScaledDown"]
        await eventually(lambda: counts(cluster, 1, 0), timeout=30)  # idle now: it goes
    finally:
        await loop.run_in_executor(pool, ember.shutdown)
        pool.shutdown(wait=True)
