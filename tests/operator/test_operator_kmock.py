"""The operator run for real (kopf in-process) against kmock's Kubernetes API emulator.

kmock emulates the Kubernetes API server over real HTTP because no real API server
exists on these machines (see ``ember_kmock.py`` for the gaps our subclass fills).
The tests play the kubelet by patching pod status, and assert ownerReferences
instead of garbage collection, which the emulator does not do.
"""

import copy
from typing import Any

import aiohttp
import pytest
from ember_kmock import (
    IMAGE,
    Cluster,
    EmberEmulator,
    agent,
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

async def test_create_makes_owned_head_service_secret_and_workers(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = await started(kmock, workers=2)
    uid = cluster.object()["metadata"]["uid"]
    owner = [{"apiVersion": "ember.dev/v1alpha1", "kind": "RayCluster", "name": "demo", "uid": uid,
              "controller": True, "blockOwnerDeletion": True}]

    (head,) = cluster.pods("head")
    workers = cluster.pods("worker")
    (service,) = cluster.objects("services")
    (secret,) = cluster.objects("secrets")
    for obj in [head, *workers, service, secret]:
        assert obj["metadata"]["ownerReferences"] == owner, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ember-operator"

    assert head["metadata"]["name"] == "demo-head-00001"
    assert sorted(cluster.pod_names("worker")) == ["demo-cpu-worker-00002", "demo-cpu-worker-00003"]
    assert agent(head)["args"][:3] == ["start", "--head", "--block"]
    assert "--address" in agent(workers[0])["args"]
    assert agent(workers[0])["args"][agent(workers[0])["args"].index("--address") + 1] == \
        "demo-head-svc.default.svc:6380"
    assert service["metadata"]["name"] == "demo-head-svc"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == \
        {"gcs-server": 6379, "client": 10001, "dashboard": 8265, "metrics": 8080, "grpc": 6380}
    assert head["metadata"]["labels"]["ray.io/node-type"] == "head"
    assert {w["metadata"]["labels"]["ray.io/group"] for w in workers} == {"cpu"}
    assert secret["metadata"]["name"] == "demo-token" and secret["data"]["token"]

    await eventually(lambda: _assert_status(cluster, state="provisioning", desiredWorkerReplicas=2))
    status = cluster.status()
    assert status["head"]["serviceName"] == "demo-head-svc" and status["head"]["serviceIP"]
    assert cluster.condition("HeadPodReady")["status"] == "False"
    assert cluster.condition("RayClusterProvisioned")["reason"] == "RayClusterPodsProvisioning"
    assert not cluster.object()["metadata"].get("finalizers"), "a RayCluster must stay deletable"
    reasons = {e["reason"] for e in cluster.events()}
    assert {"CreatedSecret", "CreatedService", "CreatedPod"} <= reasons


def _assert_status(cluster: Cluster, **expected: Any) -> None:
    status = cluster.status()
    for key, value in expected.items():
        assert status.get(key) == value, (key, status)


async def test_status_conditions_follow_pod_readiness_and_metrics_are_served(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = await started(kmock, workers=2)
    await cluster.make_ready(cluster.pod_names("head"))
    await eventually(lambda: _assert_condition(cluster, "HeadPodReady", "True"))
    assert cluster.status()["state"] == "provisioning"
    assert cluster.status()["head"]["podIP"].startswith("10.244.")

    await cluster.make_ready()
    await eventually(lambda: _assert_status(cluster, state="ready", readyWorkerReplicas=2,
                                            availableWorkerReplicas=2))
    assert cluster.condition("RayClusterProvisioned")["status"] == "True"
    assert cluster.condition("ReplicaFailure")["status"] == "False"
    assert cluster.status()["desiredCPU"] == "4"  # head 2 + 2 workers x 1
    assert cluster.status()["observedGeneration"] == cluster.object()["metadata"]["generation"]

    base = f"http://127.0.0.1:{operator.server.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
    assert 'ember_operator_clusters{state="ready"} 1.0' in text
    assert "ember_operator_cluster_provision_seconds_count 1.0" in text
    assert "ember_operator_reconciles_total" in text
    assert "ember_operator_reconcile_errors_total" in text


def _assert_condition(cluster: Cluster, kind: str, status: str) -> None:
    assert cluster.condition(kind)["status"] == status, cluster.condition(kind)


async def test_deleted_worker_is_recreated(kmock: EmberEmulator, operator: Operator) -> None:
    cluster = await started(kmock, workers=2)
    victim, survivor = cluster.pod_names("worker")
    await cluster.delete_pod(victim)

    def replaced() -> None:
        names = cluster.pod_names("worker")
        assert len(names) == 2 and victim not in names and survivor in names, names

    await eventually(replaced)


async def test_failed_head_is_replaced(kmock: EmberEmulator, operator: Operator) -> None:
    cluster = await started(kmock, workers=1)
    (head,) = cluster.pod_names("head")
    await cluster.set_pod_status(head, phase="Failed", ready=False)
    await eventually(lambda: _assert_single_head_other_than(cluster, head))


def _assert_single_head_other_than(cluster: Cluster, old: str) -> None:
    names = cluster.pod_names("head")
    assert len(names) == 1 and names[0] != old, names


async def test_scale_down_deletes_exactly_the_named_workers(kmock: EmberEmulator, operator: Operator) -> None:
    cluster = await started(kmock, workers=3)
    first, second, third = cluster.pod_names("worker")
    await cluster.patch_spec({"workerGroupSpecs": [
        worker_group(1, scaleStrategy={"workersToDelete": [first, third]})]})
    await eventually(lambda: _assert_workers(cluster, [second]))
    expected = [f"Deleted pod {first} (requested)", f"Deleted pod {third} (requested)"]
    await eventually(lambda: _assert_event_messages(cluster, "DeletedPod", expected))
    await eventually(lambda: _assert_status(cluster, desiredWorkerReplicas=1))
    # done with the list: the operator empties it, as KubeRay does
    await eventually(lambda: _assert_to_delete(cluster, []))

    await cluster.patch_spec({"workerGroupSpecs": [worker_group(3)]})  # and up again
    await eventually(lambda: counts(cluster, 1, 3))
    assert second in cluster.pod_names("worker")


def _assert_to_delete(cluster: Cluster, names: list[str]) -> None:
    group = cluster.object()["spec"]["workerGroupSpecs"][0]
    assert group["scaleStrategy"]["workersToDelete"] == names, group


def _assert_reconciles(operator: Operator, trigger: str, at_least: int) -> None:
    done = operator.metrics.registry.get_sample_value("ember_operator_reconciles_total", {"trigger": trigger})
    assert (done or 0) >= at_least, done


def _assert_event_messages(cluster: Cluster, reason: str, messages: list[str]) -> None:
    assert sorted(e["message"] for e in cluster.events() if e["reason"] == reason) == sorted(messages)


def _assert_workers(cluster: Cluster, names: list[str]) -> None:
    assert cluster.pod_names("worker") == names


async def test_suspend_deletes_pods_keeps_service_and_secret_then_resume(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = await started(kmock, workers=2)
    await cluster.patch_spec({"suspend": True})
    await eventually(lambda: counts(cluster, 0, 0))
    await eventually(lambda: _assert_condition(cluster, "RayClusterSuspended", "True"))
    assert cluster.status()["state"] == "suspended"
    assert len(cluster.objects("services")) == 1 and len(cluster.objects("secrets")) == 1
    token = cluster.objects("secrets")[0]["data"]["token"]

    await cluster.patch_spec({"suspend": False})
    await eventually(lambda: counts(cluster, 1, 2))
    await eventually(lambda: _assert_condition(cluster, "RayClusterSuspended", "False"))
    assert cluster.objects("secrets")[0]["data"]["token"] == token
    await cluster.make_ready()
    await eventually(lambda: _assert_status(cluster, state="ready"))
    # RayClusterProvisioned was never True before the suspension: it becomes True now
    assert cluster.condition("RayClusterProvisioned")["reason"] == "AllPodRunningAndReadyFirstTime"


async def test_recreate_rolls_pods_whose_template_changed(kmock: EmberEmulator, operator: Operator) -> None:
    cluster = await started(kmock, workers=2, upgradeStrategy={"type": "Recreate"})
    heads, old_workers = cluster.pod_names("head"), cluster.pod_names("worker")
    old_hash = cluster.pods("worker")[0]["metadata"]["annotations"]["ember.dev/pod-template-hash"]
    await cluster.patch_spec({"workerGroupSpecs": [worker_group(2, image="registry.local/ember:2")]})

    def rolled() -> None:
        pods = cluster.pods("worker")
        assert len(pods) == 2 and not set(old_workers) & {p["metadata"]["name"] for p in pods}
        assert all(agent(p)["image"] == "registry.local/ember:2" for p in pods)
        assert all(p["metadata"]["annotations"]["ember.dev/pod-template-hash"] != old_hash for p in pods)

    await eventually(rolled)
    assert cluster.pod_names("head") == heads  # the head's template did not change


async def test_without_recreate_template_changes_only_reach_new_pods(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = await started(kmock, workers=1)
    old = cluster.pod_names("worker")
    await cluster.patch_spec({"workerGroupSpecs": [worker_group(2, image="registry.local/ember:2")]})
    await eventually(lambda: counts(cluster, 1, 2))
    images = {p["metadata"]["name"]: agent(p)["image"] for p in cluster.pods("worker")}
    assert images[old[0]] == IMAGE
    assert sorted(images.values()) == [IMAGE, "registry.local/ember:2"]


async def test_invalid_spec_is_reported_and_fixing_it_provisions(kmock: EmberEmulator, operator: Operator) -> None:
    cluster = Cluster(kmock, "default", "bad")
    spec = cluster_spec(2)
    broken = copy.deepcopy(spec)
    broken["workerGroupSpecs"][0]["minReplicas"] = 11
    await cluster.create(broken)
    await eventually(lambda: _assert_status(cluster, state="failed"))
    condition = cluster.condition("ReplicaFailure")
    assert condition["status"] == "True" and condition["reason"] == "InvalidSpec"
    assert "minReplicas (11) is greater than maxReplicas (10)" in condition["message"]
    assert cluster.pods() == []
    await eventually(lambda: _assert_event_messages(cluster, "InvalidSpec", [condition["message"]]))
    # More passes (here after a label change) neither rewrite the status nor repeat the event.
    written = cluster.status()["lastUpdateTime"]
    await cluster.patch({"metadata": {"labels": {"touched": "yes"}}})
    await eventually(lambda: _assert_reconciles(operator, "update", 1))
    assert cluster.status()["lastUpdateTime"] == written
    assert len([e for e in cluster.events() if e["reason"] == "InvalidSpec"]) == 1

    await cluster.patch_spec({"workerGroupSpecs": spec["workerGroupSpecs"]})
    await eventually(lambda: counts(cluster, 1, 2))
    await eventually(lambda: _assert_condition(cluster, "ReplicaFailure", "False"))


async def test_head_template_change_with_recreate_replaces_the_head(
    kmock: EmberEmulator, operator: Operator
) -> None:
    cluster = await started(kmock, workers=1, upgradeStrategy={"type": "Recreate"})
    (old_head,) = cluster.pod_names("head")
    workers = cluster.pod_names("worker")
    spec = cluster_spec(1)
    spec["headGroupSpec"]["startParams"] = {"num-cpus": "1"}
    await cluster.patch_spec({"headGroupSpec": spec["headGroupSpec"]})
    await eventually(lambda: _assert_single_head_other_than(cluster, old_head))
    assert cluster.pod_names("worker") == workers
    (head,) = cluster.pods("head")
    args = agent(head)["args"]
    assert args[args.index("--num-cpus") + 1] == "1"


async def test_removed_worker_group_loses_its_pods(kmock: EmberEmulator, operator: Operator) -> None:
    cluster = await started(kmock, workers=2)
    await cluster.patch_spec({"workerGroupSpecs": []})
    await eventually(lambda: counts(cluster, 1, 0))
    await eventually(lambda: _assert_status(cluster, desiredWorkerReplicas=0))


async def test_refused_pod_creation_is_reported_and_retried(kmock: EmberEmulator, operator: Operator) -> None:
    kmock.refuse_creation["pods"] = (403, "exceeded quota: pods")
    cluster = Cluster(kmock, "default", "demo")
    await cluster.create(cluster_spec(1))
    await eventually(lambda: _assert_condition(cluster, "ReplicaFailure", "True"))
    assert "exceeded quota: pods" in cluster.condition("ReplicaFailure")["message"]
    assert cluster.condition("ReplicaFailure")["reason"] == "PodCreationFailed"
    await eventually(lambda: _assert_has_event(cluster, "PodCreationFailed", "Warning"))

    del kmock.refuse_creation["pods"]
    await cluster.patch_spec({"workerGroupSpecs": [worker_group(2)]})  # any trigger retries
    await eventually(lambda: counts(cluster, 1, 2))
    await eventually(lambda: _assert_condition(cluster, "ReplicaFailure", "False"))


def _assert_has_event(cluster: Cluster, reason: str, type_: str) -> None:
    assert any(e["reason"] == reason and e["type"] == type_ for e in cluster.events()), cluster.events()
