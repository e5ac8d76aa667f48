"""Validation and parsing of RayCluster specs (pure)."""

import copy
from typing import Any

import pytest
from ember_operator.quantities import QuantityError, format_bytes, format_cpu, parse_quantity
from ember_operator.spec import (
    MAX_REPLICAS,
    InvalidSpecError,
    parse_cluster,
    spec_problems,
    validate_spec,
)


def container(name: str = "ember", image: str | None = "ember:1") -> dict[str, Any]:
    found: dict[str, Any] = {"name": name}
    if image:
        found["image"] = image
    return found


def good_spec() -> dict[str, Any]:
    return {
        "headGroupSpec": {"template": {"spec": {"containers": [container("ember-head")]}}},
        "workerGroupSpecs": [
            {"groupName": "cpu", "replicas": 2, "minReplicas": 1, "maxReplicas": 4,
             "template": {"spec": {"containers": [container("ember-worker")]}}},
            {"groupName": "gpu", "template": {"spec": {"containers": [container()]}}},
        ],
    }


def problems_of(mutate: Any, name: str = "demo") -> list[str]:
    spec = good_spec()
    mutate(spec)
    return spec_problems(name, spec)


def test_a_good_spec_has_no_problems() -> None:
    assert spec_problems("demo", good_spec()) == []
    validate_spec("demo", good_spec())


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda s: s["workerGroupSpecs"][0].update(numOfHosts=0),
     "workerGroupSpecs[0] ('cpu').numOfHosts must be a positive integer, not 0"),
    (lambda s: s["workerGroupSpecs"][0].update(minReplicas=5),
     "workerGroupSpecs[0] ('cpu'): minReplicas (5) is greater than maxReplicas (4)"),
    (lambda s: s["workerGroupSpecs"][0].update(replicas=-1),
     "workerGroupSpecs[0] ('cpu').replicas must be a non-negative integer, not -1"),
    (lambda s: s["workerGroupSpecs"][1].update(groupName="cpu"),
     "workerGroupSpecs[1] ('cpu').groupName is used by more than one worker group"),
    (lambda s: s["workerGroupSpecs"][1].update(groupName="GPU_big"),
     "workerGroupSpecs[1] ('GPU_big').groupName must be a DNS label"),
    (lambda s: s["workerGroupSpecs"][1].pop("groupName"), "workerGroupSpecs[1].groupName is required"),
    (lambda s: s["workerGroupSpecs"][1]["template"]["spec"].update(containers=[]),
     "workerGroupSpecs[1] ('gpu').template.spec.containers must list at least one container"),
    (lambda s: s["workerGroupSpecs"][1].pop("template"),
     "workerGroupSpecs[1] ('gpu').template is required"),
    (lambda s: s["headGroupSpec"]["template"]["spec"].pop("containers"),
     "headGroupSpec.template.spec.containers must list at least one container"),
    (lambda s: s["headGroupSpec"]["template"]["spec"].update(containers=[container("ember-head", None)]),
     "headGroupSpec.template.spec.containers[0].image is required"),
    (lambda s: s.pop("headGroupSpec"), "spec.headGroupSpec is required"),
    (lambda s: s["headGroupSpec"].update(serviceType="ExternalName"),
     "headGroupSpec.serviceType 'ExternalName' must be one of ClusterIP, NodePort, LoadBalancer"),
    (lambda s: s["headGroupSpec"].update(startParams={"address": "x:1"}),
     "headGroupSpec.startParams.address is set by the operator"),
    (lambda s: s["workerGroupSpecs"][0].update(startParams={"Num_CPUs": "1"}),
     "startParams key 'Num_CPUs' is not a flag name"),
    (lambda s: s.update(upgradeStrategy={"type": "Rolling"}),
     "spec.upgradeStrategy.type 'Rolling' must be one of Recreate, None"),
    (lambda s: s.update(suspend="yes"), "spec.suspend must be true or false"),
    (lambda s: s["workerGroupSpecs"][0].update(scaleStrategy={"workersToDelete": "a"}),
     "scaleStrategy.workersToDelete must be a list of pod names"),
])
def test_bad_specs_are_rejected_with_a_clear_message(mutate: Any, expected: str) -> None:
    problems = problems_of(mutate)
    assert any(expected in problem for problem in problems), problems
    with pytest.raises(InvalidSpecError, match="invalid RayCluster spec"):
        spec = good_spec()
        mutate(spec)
        validate_spec("demo", spec)


def test_every_problem_is_reported_at_once() -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["workerGroupSpecs"][0]["minReplicas"] = 9
        spec["workerGroupSpecs"][1]["groupName"] = "cpu"

    assert len(problems_of(mutate)) == 2


@pytest.mark.parametrize("name", ["Demo", "1demo", "a" * 59, "demo_1", ""])
def test_cluster_names_must_fit_in_a_service_name(name: str) -> None:
    assert any("metadata.name" in p for p in spec_problems(name, good_spec()))


def test_the_agent_container_is_found_by_name() -> None:
    spec = good_spec()
    spec["headGroupSpec"]["template"]["spec"]["containers"] = [
        container("sidecar", None), container("ember-head")]
    assert spec_problems("demo", spec) == []
    spec["headGroupSpec"]["template"]["spec"]["containers"] = [container("sidecar", None)]
    assert spec_problems("demo", spec) == [
        "headGroupSpec.template.spec.containers[0].image is required (it runs the ember agent: "
        "the container named 'ember-head', else the first)"]


def test_parse_applies_defaults() -> None:
    body = {"metadata": {"name": "demo", "namespace": "ns", "uid": "u-1", "generation": 3},
            "spec": good_spec()}
    body["spec"]["workerGroupSpecs"][0]["startParams"] = {"num-cpus": 4, "include-dashboard": True}
    cluster = parse_cluster(body)
    assert (cluster.name, cluster.namespace, cluster.uid, cluster.generation) == ("demo", "ns", "u-1", 3)
    assert cluster.service_type == "ClusterIP" and cluster.suspend is False
    assert cluster.upgrade_strategy == "None"
    cpu, gpu = cluster.workers
    assert (cpu.replicas, cpu.min_replicas, cpu.max_replicas) == (2, 1, 4)
    assert (gpu.replicas, gpu.min_replicas, gpu.max_replicas) == (0, 0, MAX_REPLICAS)
    assert cpu.start_params == {"num-cpus": "4", "include-dashboard": "true"}
    assert cluster.head.replicas == 1 and cluster.head.node_type == "head"
    assert [g.name for g in cluster.groups] == ["head", "cpu", "gpu"]


@pytest.mark.parametrize(("replicas", "expected"), [(9, 4), (0, 1), (None, 1), (3, 3)])
def test_replicas_outside_the_bounds_are_clamped(replicas: int | None, expected: int) -> None:
    spec = copy.deepcopy(good_spec())
    spec["workerGroupSpecs"][0]["replicas"] = replicas
    assert spec_problems("demo", spec) == []
    group = parse_cluster({"metadata": {"name": "demo"}, "spec": spec}).workers[0]
    assert group.replicas == expected
    assert group.clamped == (replicas not in (None, expected))


def test_num_of_hosts_multiplies_the_pods() -> None:
    spec = copy.deepcopy(good_spec())
    spec["workerGroupSpecs"][0]["numOfHosts"] = 4
    group = parse_cluster({"metadata": {"name": "demo"}, "spec": spec}).workers[0]
    assert (group.replicas, group.num_of_hosts, group.desired_pods) == (2, 4, 8)


def test_parse_refuses_an_invalid_spec() -> None:
    spec = copy.deepcopy(good_spec())
    spec["workerGroupSpecs"][0]["minReplicas"] = 99
    with pytest.raises(InvalidSpecError) as info:
        parse_cluster({"metadata": {"name": "demo"}, "spec": spec})
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(("text", "value"), [
    ("500m", "0.5"), ("2", "2"), ("1.5", "1.5"), ("1Gi", str(2**30)), ("1G", "1000000000"),
    ("1e3", "1000"), ("128Mi", str(128 * 2**20)), (3, "3"),
])
def test_quantities(text: Any, value: str) -> None:
    assert parse_quantity(text) == parse_quantity(value)


def test_bad_quantity() -> None:
    with pytest.raises(QuantityError):
        parse_quantity("lots")


def test_quantity_formatting() -> None:
    assert format_cpu(parse_quantity("1500m")) == "1500m"
    assert format_cpu(parse_quantity("4")) == "4"
    assert format_bytes(parse_quantity("8Gi")) == "8Gi"
    assert format_bytes(parse_quantity("1536Mi")) == "1536Mi"
    assert format_bytes(parse_quantity("1000")) == "1000"
