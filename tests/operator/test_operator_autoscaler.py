"""In-tree autoscaling, the scale-down half: which idle workers go (pure)."""

from typing import Any

from ember_operator.autoscaler import idle_timeout, plan_scale_down
from ember_operator.spec import ClusterSpec, parse_cluster


def cluster(autoscaling: bool = True, options: dict | None = None, **group: Any) -> ClusterSpec:
    template = {"spec": {"containers": [{"name": "ray-worker", "image": "e"}]}}
    worker = {"groupName": "cpu", "replicas": 3, "minReplicas": 1, "maxReplicas": 5, "template": template,
              **group}
    spec: dict[str, Any] = {"headGroupSpec": {"template": template}, "workerGroupSpecs": [worker],
                            "enableInTreeAutoscaling": autoscaling}
    if options is not None:
        spec["autoscalerOptions"] = options
    return parse_cluster({"metadata": {"name": "demo", "uid": "u"}, "spec": spec})


PODS = ["w-a", "w-b", "w-c"]


def test_idle_timeout_group_then_options_then_60() -> None:
    assert idle_timeout(cluster(), cluster().workers[0]) == 60
    c = cluster(options={"idleTimeoutSeconds": 30})
    assert idle_timeout(c, c.workers[0]) == 30
    c = cluster(options={"idleTimeoutSeconds": 30}, idleTimeoutSeconds=5)
    assert idle_timeout(c, c.workers[0]) == 5


def test_the_idlest_go_first_never_below_min_replicas() -> None:
    c = cluster(idleTimeoutSeconds=10)
    change = plan_scale_down(c, c.workers[0], PODS, {"w-a": 50.0, "w-b": 500.0, "w-c": 70.0})
    assert change is not None and change.pods == ("w-b", "w-c") and change.new_replicas == 1


def test_busy_unknown_and_recently_idle_workers_stay() -> None:
    c = cluster(idleTimeoutSeconds=10)
    change = plan_scale_down(c, c.workers[0], PODS, {"w-a": 0.0, "w-b": 9.0})
    assert change is None
    assert plan_scale_down(c, c.workers[0], PODS, None) is None
    change = plan_scale_down(c, c.workers[0], PODS, {"w-a": 0.0, "w-c": 11.0})
    assert change is not None and change.pods == ("w-c",) and change.new_replicas == 2


def test_nothing_without_autoscaling_or_with_a_pending_list_or_several_hosts() -> None:
    idle = {name: 1000.0 for name in PODS}
    c = cluster(autoscaling=False)
    assert plan_scale_down(c, c.workers[0], PODS, idle) is None
    c = cluster(scaleStrategy={"workersToDelete": ["w-a"]})
    assert plan_scale_down(c, c.workers[0], PODS, idle) is None
    c = cluster(numOfHosts=2)
    assert plan_scale_down(c, c.workers[0], PODS, idle) is None
