"""In-tree autoscaling: which pods are added for pending demand, which idle workers go (pure)."""

from typing import Any

from ember_operator.autoscaler import (
    GroupState,
    PendingShape,
    ScaleUpPlan,
    idle_timeout,
    plan_scale_down,
    plan_scale_up,
    pod_resources,
)
from ember_operator.spec import ClusterSpec, parse_cluster, spec_problems


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


# --- scale-up ---------------------------------------------------------------------------------
def upcluster(*groups: dict[str, Any], mode: str | None = None, autoscaling: bool = True) -> ClusterSpec:
    spec: dict[str, Any] = {"headGroupSpec": {"template": template("ray-head")},
                            "workerGroupSpecs": list(groups), "enableInTreeAutoscaling": autoscaling}
    if mode is not None:
        spec["autoscalerOptions"] = {"upscalingMode": mode}
    return parse_cluster({"metadata": {"name": "demo", "uid": "u"}, "spec": spec})


def template(name: str, **limits: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": "e"}
    if limits:
        container["resources"] = {"limits": limits}
    return {"spec": {"containers": [container]}}


def group(name: str, replicas: int = 0, max_replicas: int = 10, **extra: Any) -> dict[str, Any]:
    return {"groupName": name, "replicas": replicas, "minReplicas": 0, "maxReplicas": max_replicas,
            "template": template("ray-worker", cpu="2", memory="1Gi"), **extra}


def shapes(plan: ScaleUpPlan) -> dict[str, tuple[int, int]]:
    return {s.group: (s.replicas, s.new_replicas) for s in plan.scale}


def test_pod_resources_come_from_start_params_then_container_limits() -> None:
    c = upcluster(group("cpu"), group("gpu", rayStartParams={"num-gpus": "1", "resources": '{"big": 2}'}),
                  group("many", startParams={"num-cpus": "8"}), group("bare", template=template("ray-worker")))
    cpu, gpu, many, bare = c.workers
    assert pod_resources(c, cpu) == {"CPU": 2.0, "memory": 2.0**30}
    assert pod_resources(c, gpu) == {"CPU": 2.0, "GPU": 1.0, "big": 2.0, "memory": 2.0**30}
    assert pod_resources(c, many)["CPU"] == 8.0
    assert pod_resources(c, bare) == {}  # the agent counts the machine's CPUs: unknown here


def test_demand_is_bin_packed_into_new_pods_of_the_group_that_fits() -> None:
    c = upcluster(group("cpu", replicas=1))
    # five 1-CPU tasks: 2 per 2-CPU pod -> 3 pods; the one pod already joined fits nothing more
    plan = plan_scale_up(c, [PendingShape({"CPU": 1.0}, 5)], {"cpu": GroupState(joined=1)})
    assert shapes(plan) == {"cpu": (1, 4)}
    assert plan.scale[0].shapes == ({"CPU": 1.0},) and not plan.unfit and not plan.at_max


def test_pods_on_their_way_are_counted_before_new_ones() -> None:
    c = upcluster(group("cpu", replicas=2))
    demand = [PendingShape({"CPU": 2.0}, 3)]
    assert shapes(plan_scale_up(c, demand, {})) == {"cpu": (2, 3)}  # 2 asked for, not joined: 1 more
    assert plan_scale_up(c, [PendingShape({"CPU": 2.0}, 2)], {}).scale == ()
    assert shapes(plan_scale_up(c, demand, {"cpu": GroupState(joined=2)})) == {"cpu": (2, 5)}


def test_never_above_max_replicas() -> None:
    c = upcluster(group("cpu", replicas=1, max_replicas=3))
    plan = plan_scale_up(c, [PendingShape({"CPU": 2.0}, 10)], {"cpu": GroupState(joined=1)})
    assert shapes(plan) == {"cpu": (1, 3)} and plan.at_max == ("cpu",)
    full = upcluster(group("cpu", replicas=3, max_replicas=3))
    plan = plan_scale_up(full, [PendingShape({"CPU": 2.0}, 1)], {"cpu": GroupState(joined=3)})
    assert plan.scale == () and plan.at_max == ("cpu",)


def test_the_group_with_least_to_spare_is_chosen_and_gpus_are_kept_for_gpu_work() -> None:
    c = upcluster(group("gpu", rayStartParams={"num-gpus": "1"}),
                  group("big", startParams={"num-cpus": "16"}), group("cpu"))
    plan = plan_scale_up(c, [PendingShape({"CPU": 1.0}, 1), PendingShape({"CPU": 1.0, "GPU": 1.0}, 1),
                             PendingShape({"CPU": 4.0}, 1)], {})
    # the 1-CPU task packs into room left on a pod already planned rather than a new cpu pod
    assert shapes(plan) == {"gpu": (0, 1), "big": (0, 1)}


def test_work_no_group_fits_names_the_largest_group() -> None:
    c = upcluster(group("small", template=template("ray-worker", cpu="1")), group("cpu"))
    plan = plan_scale_up(c, [PendingShape({"CPU": 8.0}, 2)], {})
    assert plan.scale == ()
    (unfit,) = plan.unfit
    assert unfit.count == 2 and unfit.resources == {"CPU": 8.0}
    assert unfit.largest_group == "cpu" and unfit.largest == {"CPU": 2.0, "memory": 2.0**30}
    nothing = upcluster()
    (unfit,) = plan_scale_up(nothing, [PendingShape({"CPU": 1.0}, 1)], {}).unfit
    assert unfit.largest_group is None and unfit.largest is None


def test_what_a_joined_pod_reports_beats_the_estimate() -> None:
    c = upcluster(group("cpu", replicas=1))
    # the pod said 2 CPUs on paper, but its node reports 1: a 2-CPU task fits no pod of it
    plan = plan_scale_up(c, [PendingShape({"CPU": 2.0}, 1)], {"cpu": GroupState(1, {"CPU": 1.0})})
    assert plan.scale == () and plan.unfit[0].largest == {"CPU": 1.0}


def test_conservative_pending_pods_never_outnumber_the_cluster() -> None:
    demand = [PendingShape({"CPU": 2.0}, 10)]
    for mode in (None, "Default", "Aggressive"):
        assert shapes(plan_scale_up(upcluster(group("cpu"), mode=mode), demand, {})) == {"cpu": (0, 10)}
    c = upcluster(group("cpu"), mode="Conservative")
    plan = plan_scale_up(c, demand, {})  # the cluster is the head alone: one pod at a time
    assert shapes(plan) == {"cpu": (0, 1)} and plan.deferred == 9
    c = upcluster(group("cpu", replicas=4), mode="Conservative")
    # head + 3 joined = 4 nodes, 1 on its way: 3 more may come now
    plan = plan_scale_up(c, demand, {"cpu": GroupState(joined=3)})
    assert shapes(plan) == {"cpu": (4, 7)}


def test_several_hosts_per_replica_add_that_many_pods() -> None:
    c = upcluster(group("tpu", numOfHosts=2, max_replicas=2))
    plan = plan_scale_up(c, [PendingShape({"CPU": 2.0}, 3)], {})
    assert shapes(plan) == {"tpu": (0, 2)}  # 3 pods needed: 2 replicas of 2 hosts


def test_nothing_without_autoscaling_suspended_or_a_pending_delete_list() -> None:
    demand = [PendingShape({"CPU": 1.0}, 1)]
    assert plan_scale_up(upcluster(group("cpu"), autoscaling=False), demand, {}) == ScaleUpPlan()
    c = upcluster(group("cpu", replicas=1, scaleStrategy={"workersToDelete": ["w-a"]}))
    assert plan_scale_up(c, demand, {}).scale == ()


def test_an_unknown_upscaling_mode_is_refused() -> None:
    body = {"headGroupSpec": {"template": template("ray-head")}, "autoscalerOptions": {"upscalingMode": "Fast"}}
    assert spec_problems("demo", body) == [
        "spec.autoscalerOptions.upscalingMode 'Fast' must be one of Conservative, Default, Aggressive"]


def test_waiting_work_goes_into_free_room_first_then_new_pods() -> None:
    c = upcluster(group("cpu", replicas=1))
    joined = {"cpu": GroupState(joined=1)}
    waiting = [PendingShape({"CPU": 1.0}, 5)]
    # one CPU free on the head and one on the joined pod: 3 tasks are left, 2 per new pod
    plan = plan_scale_up(c, [], joined, waiting=waiting, free=[{"CPU": 1.0}, {"CPU": 1.0}])
    assert shapes(plan) == {"cpu": (1, 3)}
    assert plan_scale_up(c, [], joined, waiting=waiting, free=[{"CPU": 8.0}]).scale == ()


def test_waiting_work_no_group_fits_waits_without_a_warning() -> None:
    c = upcluster(group("cpu"))
    plan = plan_scale_up(c, [], {}, waiting=[PendingShape({"CPU": 1.0, "head_only": 1.0}, 3)], free=[{"CPU": 1.0}])
    assert plan == ScaleUpPlan()
