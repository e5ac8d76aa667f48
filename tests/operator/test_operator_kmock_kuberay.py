"""KubeRay manifests under the real operator (kopf in-process) against kmock's API emulator.

kmock emulates the Kubernetes API server over real HTTP because no real API server
exists on these machines (see ``ember_kmock.py``); the tests play the kubelet by
patching pod status.
"""

import pytest
from ember_kmock import (
    Cluster,
    EmberEmulator,
    cluster_spec,
    counts,
    eventually,
    started,
    worker_group,
)
from ember_operator.runtime import Operator

pytestmark = [
    pytest.mark.kmock(cls=EmberEmulator),
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),
]


async def test_fields_not_acted_on_get_a_warning_event_and_a_condition(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = await started(kmock, workers=1, rayVersion="2.52.0",
                            gcsFaultToleranceOptions={"redisAddress": "redis:6379"})

    def reported() -> None:
        condition = cluster.condition("UnsupportedFields")
        assert condition["status"] == "True", condition
        assert "spec.gcsFaultToleranceOptions" in condition["message"]
        warnings = [e for e in cluster.events() if e["reason"] == "UnsupportedFields"]
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings
        assert "spec.gcsFaultToleranceOptions" in warnings[0]["message"]

    await eventually(reported)
    assert "rayVersion" not in cluster.condition("UnsupportedFields")["message"]


async def test_a_cluster_managed_by_another_controller_is_left_alone(
    kmock: EmberEmulator, operator: Operator
) -> None:
    other = Cluster(kmock, "default", "elsewhere")
    await other.create(cluster_spec(1, managedBy="kueue.x-k8s.io/multikueue"))
    mine = await started(kmock, workers=1, name="mine")  # a pass surely ran by then
    await eventually(lambda: mine.condition("UnsupportedFields"))
    counts(other, 0, 0)
    assert other.status() == {} and other.objects("services") == []


async def test_a_start_flag_the_agent_would_refuse_is_a_status_reason_and_an_event(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = Cluster(kmock, "default", "typo")
    spec = cluster_spec(1)
    spec["headGroupSpec"]["rayStartParams"] = {"dashbord-host": "0.0.0.0"}
    await cluster.create(spec)

    def refused() -> None:
        assert cluster.status().get("state") == "failed", cluster.status()
        assert "--dashbord-host is neither an `ember start` flag" in cluster.status()["reason"]
        assert [e for e in cluster.events() if e["reason"] == "InvalidSpec" and e["type"] == "Warning"]

    await eventually(refused)
    counts(cluster, 0, 0)


async def test_workers_to_delete_go_whatever_replicas_says_and_are_replaced(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = await started(kmock, workers=2)
    victim, survivor = cluster.pod_names("worker")
    await cluster.patch_spec({"workerGroupSpecs": [
        worker_group(2, scaleStrategy={"workersToDelete": [victim]})]})

    def replaced() -> None:
        names = cluster.pod_names("worker")
        assert len(names) == 2 and victim not in names and survivor in names, names
        assert cluster.object()["spec"]["workerGroupSpecs"][0]["scaleStrategy"]["workersToDelete"] == []

    await eventually(replaced)


async def test_replicas_outside_the_bounds_are_clamped_with_an_event(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = Cluster(kmock, "default", "clamped")
    await cluster.create(cluster_spec(workers=12))  # maxReplicas is 10
    await eventually(lambda: counts(cluster, 1, 10))

    def warned() -> None:
        (event,) = [e for e in cluster.events() if e["reason"] == "ReplicasClamped"]
        assert event["type"] == "Warning"
        assert "replicas 12 is outside minReplicas..maxReplicas (0..10); using 10" in event["message"]

    await eventually(warned)
    assert cluster.status().get("state") != "failed"


async def test_num_of_hosts_makes_that_many_pods_per_replica(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = Cluster(kmock, "default", "multihost")
    await cluster.create(cluster_spec(workers=0, workerGroupSpecs=[worker_group(2, numOfHosts=3)]))
    await eventually(lambda: counts(cluster, 1, 6))
    await eventually(lambda: _status(cluster, desiredWorkerReplicas=6))
    await cluster.make_ready()
    await eventually(lambda: _status(cluster, state="ready", readyWorkerReplicas=6))


def _status(cluster: Cluster, **expected: object) -> None:
    status = cluster.status()
    assert {key: status.get(key) for key in expected} == expected, status
