"""Status computation (pure), and the status and specs checked against our CRD's schema."""

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ember_operator.planner import PodInfo
from ember_operator.spec import ClusterSpec, parse_cluster
from ember_operator.status import (
    compute_status,
    desired_resources,
    get_condition,
    invalid_status,
    provisioned_just_now,
    status_changed,
)

CRD = Path(__file__).resolve().parents[2] / "charts" / "ember-operator" / "crds" / "rayclusters.ember.dev.yaml"
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"


def spec(workers: int = 2, suspend: bool = False) -> dict[str, Any]:
    limits = {"cpu": "1", "memory": "1Gi"}
    return {
        "headGroupSpec": {"template": {"spec": {"containers": [
            {"name": "ember-head", "image": "e", "resources": {"limits": {"cpu": "2", "memory": "2Gi"}}}]}}},
        "workerGroupSpecs": [{"groupName": "cpu", "replicas": workers, "minReplicas": 1, "maxReplicas": 5,
                              "template": {"spec": {"containers": [
                                  {"name": "w", "image": "e", "resources": {"limits": limits}}]}}}],
        "suspend": suspend,
    }


def cluster(workers: int = 2, suspend: bool = False) -> ClusterSpec:
    return parse_cluster({"metadata": {"name": "demo", "namespace": "ns", "uid": "u", "generation": 4},
                          "spec": spec(workers, suspend)})


def head(ready: bool = True) -> PodInfo:
    return PodInfo(name="demo-head-aaaaa", group="head", node_type="head",
                   phase="Running" if ready else "Pending", ready=ready, ip="10.0.0.2" if ready else None)


def worker(name: str, ready: bool = True) -> PodInfo:
    return PodInfo(name=name, group="cpu", node_type="worker", phase="Running" if ready else "Pending",
                   ready=ready)


SERVICE = {"metadata": {"name": "demo-head-svc"}, "spec": {"clusterIP": "10.96.0.1"}}


def status_of(c: ClusterSpec, pods: list[PodInfo], previous: dict[str, Any] | None = None,
              now: str = T0, **kw: Any) -> dict[str, Any]:
    return compute_status(c, pods, service=SERVICE, previous=previous, now=now, **kw)


def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found = get_condition(status, kind)
    assert found is not None
    return dict(found)


def test_provisioning_then_ready() -> None:
    first = status_of(cluster(), [head(False), worker("w1", False), worker("w2", False)])
    assert first["state"] == "provisioning"
    assert first["reason"] == "head pod not ready; cpu: 0/2 workers ready"
    assert cond(first, "HeadPodReady")["status"] == "False"
    assert cond(first, "RayClusterProvisioned")["reason"] == "RayClusterPodsProvisioning"

    ready = status_of(cluster(), [head(), worker("w1"), worker("w2")], previous=first, now=T1)
    assert ready["state"] == "ready" and ready["reason"] == ""
    assert cond(ready, "HeadPodReady") == {
        "type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady", "message": "",
        "lastTransitionTime": T1, "observedGeneration": 4}
    assert cond(ready, "RayClusterSuspended")["lastTransitionTime"] == T0  # unchanged condition keeps its time
    assert ready["readyWorkerReplicas"] == 2 and ready["availableWorkerReplicas"] == 2
    assert ready["desiredWorkerReplicas"] == 2
    assert (ready["minWorkerReplicas"], ready["maxWorkerReplicas"]) == (1, 5)
    assert (ready["desiredCPU"], ready["desiredMemory"], ready["desiredGPU"]) == ("4", "4Gi", "0")
    assert ready["head"] == {"podName": "demo-head-aaaaa", "podIP": "10.0.0.2",
                             "serviceName": "demo-head-svc", "serviceIP": "10.96.0.1"}
    assert ready["endpoints"] == {"gcs-server": "6379", "client": "10001", "dashboard": "8265",
                                  "metrics": "8080", "grpc": "6380"}  # keyed as KubeRay's
    assert ready["observedGeneration"] == 4
    assert provisioned_just_now(first, ready)

    # A worker lost later: RayClusterProvisioned does not revert (as KubeRay's), the state
    # does, and there is no second histogram observation.
    degraded = status_of(cluster(), [head(), worker("w1")], previous=ready, now=T2)
    assert cond(degraded, "RayClusterProvisioned")["status"] == "True"
    assert cond(degraded, "RayClusterProvisioned")["lastTransitionTime"] == T1
    assert degraded["state"] == "provisioning" and degraded["reason"] == "cpu: 1/2 workers ready"
    again = status_of(cluster(), [head(), worker("w1"), worker("w3")], previous=degraded, now=T2)
    assert not provisioned_just_now(degraded, again)


def test_unchanged_inputs_give_an_unchanged_status() -> None:
    pods = [head(), worker("w1"), worker("w2")]
    first = status_of(cluster(), pods)
    second = status_of(cluster(), pods, previous=first, now=T2)
    assert not status_changed(first, second)
    assert status_changed(first, status_of(cluster(), pods[:2], previous=first, now=T2))


def test_suspended() -> None:
    suspending = status_of(cluster(suspend=True), [head(), worker("w1")])
    assert suspending["state"] == "suspended"
    assert cond(suspending, "RayClusterSuspended")["status"] == "False"
    assert cond(suspending, "RayClusterSuspended")["reason"] == "Suspending"
    assert cond(suspending, "RayClusterSuspending")["status"] == "True"
    done = status_of(cluster(suspend=True), [], previous=suspending)
    assert cond(done, "RayClusterSuspended")["status"] == "True"
    assert cond(done, "RayClusterSuspending")["status"] == "False"
    assert done["desiredWorkerReplicas"] == 0 and done["desiredCPU"] == "0"
    assert cond(done, "RayClusterProvisioned")["status"] == "False"


def test_replica_failure() -> None:
    status = status_of(cluster(), [head()], replica_failure="creating a cpu pod failed: 403 Forbidden")
    assert cond(status, "ReplicaFailure")["status"] == "True"
    assert cond(status, "ReplicaFailure")["reason"] == "PodCreationFailed"


def test_a_partial_status_changes_nothing_when_its_keys_match() -> None:
    previous = status_of(cluster(), [head()])
    failed = invalid_status(["bad"], previous=previous, generation=4, now=T1)
    merged = {**previous, **failed}
    again = invalid_status(["bad"], previous=merged, generation=4, now=T2)
    assert not status_changed(merged, again)
    assert status_changed(merged, invalid_status(["worse"], previous=merged, generation=4, now=T2))


def test_invalid_status_keeps_other_conditions() -> None:
    previous = status_of(cluster(), [head()])
    status = invalid_status(["replicas (9) out of range"], previous=previous, generation=5, now=T1)
    assert status["state"] == "failed" and status["reason"] == "replicas (9) out of range"
    assert cond(status, "ReplicaFailure")["reason"] == "InvalidSpec"
    assert cond(status, "HeadPodReady") == cond(previous, "HeadPodReady")


def test_desired_resources_count_every_container_of_every_desired_pod() -> None:
    assert desired_resources(cluster(workers=3)) == {
        "desiredCPU": "5", "desiredMemory": "5Gi", "desiredGPU": "0"}


# --- against the CRD the chart installs ---------------------------------------------------------
@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    if not CRD.exists():
        pytest.skip(f"{CRD} is not there yet")
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def test_statuses_match_the_crd(schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema["properties"]["status"],
                                           format_checker=jsonschema.FormatChecker())
    first = status_of(cluster(), [head(False)])
    statuses = [
        first,
        status_of(cluster(), [head(), worker("w1"), worker("w2")], previous=first),
        status_of(cluster(suspend=True), []),
        status_of(cluster(), [head()], replica_failure="boom"),
        invalid_status(["bad"], previous=first, generation=1, now=T0),
    ]
    for status in statuses:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(status)]
        assert not errors, errors


def test_specs_the_operator_accepts_match_the_crd(schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema["properties"]["spec"])
    for candidate in (spec(), spec(suspend=True), {**spec(), "upgradeStrategy": {"type": "Recreate"}}):
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(candidate)]
        assert not errors, errors
