"""Start params as `ember start` sees them (ember_node.start_flags) and as the operator checks
them before creating pods (pure: no process is started)."""

from typing import Any

import pytest
from ember_node.start_flags import check_start_params, parse_bool, parse_resources
from ember_operator.builders import start_args
from ember_operator.spec import parse_cluster, spec_problems


def test_ray_flags_with_the_same_meaning_are_kept_under_embers_names() -> None:
    check = check_start_params({"num-cpus": "0", "dashboard-host": "0.0.0.0", "metrics-export-port": "9000",
                                "resources": '\'{"TPU": 4}\'', "include-dashboard": "false"})
    assert check.problems == () and check.ignored == {}
    assert check.flags == {"num-cpus": "0", "dashboard-host": "0.0.0.0", "metrics-port": "9000",
                           "resources": '\'{"TPU": 4}\'', "include-dashboard": "false"}


def test_ray_flags_without_meaning_are_ignored_with_a_reason_and_others_are_problems() -> None:
    check = check_start_params({"redis-password": "x", "enable-resource-isolation": "true",
                                "system-reserved-cpu": "1.0", "frobnicate": "1", "num-gpus": "two",
                                "memory": "-5"})
    assert set(check.ignored) == {"redis-password", "enable-resource-isolation", "system-reserved-cpu"}
    assert "Redis" in check.ignored["redis-password"]
    assert check.problems == (
        "--frobnicate is neither an `ember start` flag nor a `ray start` flag",
        "--num-gpus wants a number, not 'two'",
        "--memory must not be negative, not '-5'",
    )


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}', {"a": 1.0}), ('\'{"a": 2}\'', {"a": 2.0}), ('"{\\"a\\": 3}"', {"a": 3.0}), ("", {}),
])
def test_parse_resources(text: str, expected: dict[str, float]) -> None:
    assert parse_resources(text) == expected


@pytest.mark.parametrize("text", ["a=1", "[1]", '{"a": -1}', '{"a": "x"}'])
def test_parse_resources_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--resources"):
        parse_resources(text)


def test_parse_bool() -> None:
    assert parse_bool(None) and parse_bool("") and parse_bool("True") and not parse_bool("false")
    with pytest.raises(ValueError):
        parse_bool("maybe")


def head_spec(params: dict[str, Any]) -> dict[str, Any]:
    return {"headGroupSpec": {"rayStartParams": params,
                              "template": {"spec": {"containers": [{"name": "ray-head", "image": "e"}]}}}}


def test_the_operator_refuses_a_flag_the_agent_would_refuse() -> None:
    assert spec_problems("demo", head_spec({"dashbord-host": "0.0.0.0"})) == [
        "headGroupSpec.rayStartParams: --dashbord-host is neither an `ember start` flag nor a "
        "`ray start` flag (the agent would refuse it)"]
    assert spec_problems("demo", head_spec({"metrics-export-port": "9"})) == [
        "headGroupSpec.startParams.metrics-port is set by the operator (probes and scraping use 8080)"]


def test_the_operator_drops_ignored_and_tolerated_flags_and_reports_the_ignored() -> None:
    body = {"metadata": {"name": "demo", "uid": "u"},
            "spec": head_spec({"num-cpus": "0", "block": "true", "redis-password": "$REDIS_PASSWORD",
                               "dashboard-host": "0.0.0.0"})}
    assert spec_problems("demo", body["spec"]) == []
    cluster = parse_cluster(body)
    args = start_args(cluster, cluster.head)
    assert args.count("--block") == 1 and "--redis-password" not in args
    assert args[-4:] == ["--dashboard-host", "0.0.0.0", "--num-cpus", "0"]
    assert [f.split(" (")[0] for f in cluster.unsupported] == [
        "spec.headGroupSpec.rayStartParams.redis-password"]
