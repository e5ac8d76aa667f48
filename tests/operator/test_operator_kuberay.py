"""KubeRay's fields: start params merged and derived, managedBy, what is reported unsupported (pure)."""

import json
from typing import Any

from ember_operator.kuberay import (
    managed_elsewhere,
    merged_start_params,
    resource_params,
    unsupported_fields,
)
from ember_operator.spec import parse_cluster, spec_problems
from ember_operator.status import compute_status, get_condition


def group(**extra: Any) -> dict[str, Any]:
    return {"template": {"spec": {"containers": [{"name": "ray-head", "image": "ember:1"}]}}, **extra}


def spec(**extra: Any) -> dict[str, Any]:
    return {"headGroupSpec": group(rayStartParams={}), **extra}


def test_ray_start_params_and_the_start_params_alias_merge_with_the_alias_winning() -> None:
    params = merged_start_params(group(rayStartParams={"num-cpus": "0", "num-gpus": "1"},
                                       startParams={"num-gpus": "2", "block": True}))
    assert params == {"num-cpus": "0", "num-gpus": "2", "block": "true"}


def test_group_resources_override_start_params_as_kuberay_does() -> None:
    params = merged_start_params(group(rayStartParams={"num-cpus": "4", "memory": "1"},
                                       resources={"CPU": "0", "memory": "2Gi", "TPU": "4", "nvidia.com/gpu": "1"}))
    assert params["num-cpus"] == "0"
    assert params["memory"] == str(2 * 1024**3)
    assert params["num-gpus"] == "1"
    assert json.loads(params["resources"]) == {"TPU": 4.0}


def test_resource_params_keep_fractions_and_skip_what_is_not_a_quantity() -> None:
    assert resource_params({"cpu": "500m", "custom": "1.5", "bad": "lots"}) == {
        "num-cpus": "0.5", "resources": json.dumps({"custom": 1.5})}
    assert resource_params(None) == {}


def test_managed_by() -> None:
    assert managed_elsewhere({}) is None
    assert managed_elsewhere({"managedBy": "ray.io/kuberay-operator"}) is None
    assert managed_elsewhere({"managedBy": "ember.dev/ember-operator"}) is None
    assert managed_elsewhere({"managedBy": "kueue.x-k8s.io/multikueue"}) == "kueue.x-k8s.io/multikueue"


def test_a_plain_spec_has_nothing_unsupported() -> None:
    assert unsupported_fields(spec(rayVersion="2.52.0", suspend=False, authOptions={"mode": "token"},
                                   headServiceAnnotations={"a": "b"})) == []


def test_fields_not_acted_on_are_named_with_the_reason() -> None:
    worker = group(groupName="w", idleTimeoutSeconds=30, labels={"zone": "a"})
    found = unsupported_fields(spec(
        enableInTreeAutoscaling=True,
        autoscalerOptions={"upscalingMode": "Default", "idleTimeoutSeconds": 60, "env": [{"name": "A", "value": "1"}],
                           "securityContext": {}},
        gcsFaultToleranceOptions={"redisAddress": "redis:6379"}, authOptions={"mode": "disabled"},
        workerGroupSpecs=[worker]))
    paths = [entry.split(" (")[0] for entry in found]
    assert paths == [
        "spec.autoscalerOptions.{env}",
        "spec.gcsFaultToleranceOptions",
        "spec.authOptions.mode=disabled",
        "spec.workerGroupSpecs[0].labels",
    ]
    # without autoscaling an idle timeout means nothing
    plain = unsupported_fields(spec(workerGroupSpecs=[group(groupName="w", idleTimeoutSeconds=30)]))
    assert [entry.split(" (")[0] for entry in plain] == ["spec.workerGroupSpecs[0].idleTimeoutSeconds"]
    plain = unsupported_fields(spec(autoscalerOptions={"upscalingMode": "Conservative"}))
    assert [entry.split(" (")[0] for entry in plain] == ["spec.autoscalerOptions.{upscalingMode}"]
    assert all(entry.endswith(")") for entry in found)


def test_a_group_resource_that_is_not_a_quantity_is_a_problem() -> None:
    problems = spec_problems("demo", spec(headGroupSpec=group(resources={"CPU": "many"})))
    assert problems == ["headGroupSpec.resources.CPU 'many' is not a quantity (e.g. \"2\", \"500m\", \"4Gi\")"]


def test_the_unsupported_fields_condition() -> None:
    body = {"metadata": {"name": "demo", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": spec(gcsFaultToleranceOptions={"redisAddress": "r:6379"}, rayVersion="2.52.0")}
    cluster = parse_cluster(body)
    assert cluster.ray_version == "2.52.0"
    status = compute_status(cluster, [], service=None, previous=None, now="2026-01-01T00:00:00Z")
    condition = get_condition(status, "UnsupportedFields")
    assert condition["status"] == "True" and condition["reason"] == "FieldsNotActedOn"
    assert "spec.gcsFaultToleranceOptions" in condition["message"]
    body["spec"].pop("gcsFaultToleranceOptions")
    status = compute_status(parse_cluster(body), [], service=None, previous=status, now="2026-01-01T00:00:00Z")
    assert get_condition(status, "UnsupportedFields")["status"] == "False"
