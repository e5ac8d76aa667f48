"""The scaling planner (pure)."""

from ember_operator.planner import Deletion, PodInfo, ScalePlan, plan_group


def pod(name: str, created: str = "2026-01-01T00:00:00Z", phase: str = "Running",
        hash_: str = "h1", deleting: bool = False) -> PodInfo:
    return PodInfo(name=name, group="cpu", node_type="worker", phase=phase, ready=phase == "Running",
                   template_hash=hash_, created=created, deleting=deleting)


def three() -> list[PodInfo]:
    return [pod("w-a", "2026-01-01T00:00:01Z"), pod("w-b", "2026-01-01T00:00:02Z"),
            pod("w-c", "2026-01-01T00:00:03Z")]


def names(plan: ScalePlan) -> list[str]:
    return [d.name for d in plan.delete]


def test_scale_up_creates_the_difference() -> None:
    assert plan_group(5, three()) == ScalePlan(create=2)
    assert plan_group(3, three()).empty


def test_named_workers_are_deleted_whatever_replicas_says() -> None:
    # as KubeRay: the list says which pods go, replicas how many stay (the rest is made anew)
    plan = plan_group(1, three(), workers_to_delete=["w-c", "w-a"])
    assert plan.delete == (Deletion("w-a", "requested"), Deletion("w-c", "requested"))
    assert plan.create == 0
    plan = plan_group(3, three(), workers_to_delete=["w-a"])
    assert plan.delete == (Deletion("w-a", "requested"),) and plan.create == 1


def test_never_more_pods_than_asked() -> None:
    plan = plan_group(2, three(), workers_to_delete=["w-a", "w-b", "w-c"])
    assert len(names(plan)) == 3 and plan.create == 2


def test_unknown_or_duplicate_names_are_ignored() -> None:
    plan = plan_group(1, three(), workers_to_delete=["nope", "w-b", "w-b"])
    assert names(plan) == ["w-b", "w-c"]  # then the newest


def test_without_names_the_idlest_go_first() -> None:
    plan = plan_group(1, three(), idleness={"w-a": 300.0, "w-b": 10.0})
    assert plan.delete == (Deletion("w-a", "scale-down"), Deletion("w-b", "scale-down"))


def test_unknown_idleness_falls_back_to_newest_first() -> None:
    assert names(plan_group(1, three(), idleness=None)) == ["w-c", "w-b"]
    assert names(plan_group(1, three(), idleness={})) == ["w-c", "w-b"]
    # Reported pods go before unreported ones.
    assert names(plan_group(1, three(), idleness={"w-a": 1.0})) == ["w-a", "w-c"]


def test_named_then_idlest_then_newest() -> None:
    plan = plan_group(0, three(), workers_to_delete=["w-b"], idleness={"w-a": 9.0})
    assert plan.delete == (Deletion("w-b", "requested"), Deletion("w-a", "scale-down"),
                           Deletion("w-c", "scale-down"))
    plan = plan_group(1, three(), workers_to_delete=["w-c"], idleness={"w-a": 9.0})
    assert plan.delete == (Deletion("w-c", "requested"), Deletion("w-a", "scale-down"))


def test_failed_pods_are_deleted_and_replaced() -> None:
    pods = [*three()[:2], pod("w-c", phase="Failed"), pod("w-d", phase="Succeeded")]
    plan = plan_group(3, pods)
    assert plan.delete == (Deletion("w-c", "failed"), Deletion("w-d", "failed"))
    assert plan.create == 1


def test_pods_being_deleted_neither_count_nor_get_deleted_again() -> None:
    pods = [*three()[:2], pod("w-c", deleting=True)]
    assert plan_group(3, pods) == ScalePlan(create=1)
    assert plan_group(2, pods).empty


def test_recreate_replaces_outdated_pods() -> None:
    pods = [pod("w-a", hash_="old"), pod("w-b", hash_="new"), pod("w-c", hash_="old")]
    plan = plan_group(3, pods, template_hash="new", recreate_outdated=True)
    assert plan.delete == (Deletion("w-a", "outdated"), Deletion("w-c", "outdated"))
    assert plan.create == 2


def test_without_recreate_outdated_pods_stay() -> None:
    pods = [pod("w-a", hash_="old"), pod("w-b", hash_="new")]
    assert plan_group(2, pods, template_hash="new", recreate_outdated=False).empty


def test_scale_down_and_failures_together() -> None:
    pods = [*three(), pod("w-d", phase="Failed")]
    plan = plan_group(2, pods, workers_to_delete=["w-a"])
    assert plan.delete == (Deletion("w-a", "requested"), Deletion("w-d", "failed"))
    assert plan.create == 0


def test_pod_info_from_a_pod_object() -> None:
    info = PodInfo.from_pod({
        "metadata": {"name": "demo-cpu-worker-abcde", "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"ember.dev/group": "cpu", "ember.dev/node-type": "worker"},
                     "annotations": {"ember.dev/pod-template-hash": "h"}},
        "status": {"phase": "Running", "podIP": "10.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })
    assert info == PodInfo(name="demo-cpu-worker-abcde", group="cpu", node_type="worker",
                           phase="Running", ready=True, ip="10.0.0.1", template_hash="h",
                           created="2026-01-01T00:00:00Z", deleting=False)
    assert info.alive
    assert not PodInfo.from_pod({"metadata": {"name": "x", "deletionTimestamp": "t"}}).alive
