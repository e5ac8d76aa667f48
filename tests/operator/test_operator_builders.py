"""The objects the operator builds (pure), checked against the official Kubernetes schemas."""

import base64
import copy
import re
from typing import Any

import kubernetes_validate
import pytest
from ember_operator import builders
from ember_operator.spec import ClusterSpec, parse_cluster

K8S_VERSION = kubernetes_validate.latest_version()


def k8s_valid(obj: dict[str, Any]) -> None:
    """Validate against the official schema, rejecting unknown fields (strict)."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def make_cluster(**spec_changes: Any) -> ClusterSpec:
    spec: dict[str, Any] = {
        "headGroupSpec": {
            "serviceType": "LoadBalancer",
            "template": {
                "metadata": {"labels": {"team": "ml", "ember.dev/cluster": "spoofed"},
                             "annotations": {"note": "hi"}},
                "spec": {"containers": [{
                    "name": "ember-head", "image": "ember:1",
                    "resources": {"limits": {"cpu": "2500m", "memory": "4Gi"}},
                }]},
            },
        },
        "workerGroupSpecs": [{
            "groupName": "gpu", "replicas": 2, "maxReplicas": 8,
            "startParams": {"resources": '{"accel": 1}', "object-store-memory": "1000000"},
            "template": {"spec": {"containers": [
                {"name": "logs", "image": "busybox"},
                {"name": "ember-worker", "image": "ember:1",
                 "env": [{"name": "EMBER_POD_IP", "value": "override"}],
                 "resources": {"requests": {"cpu": "500m"},
                               "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"}}},
            ]}},
        }],
    }
    spec.update(spec_changes)
    body = {"metadata": {"name": "demo", "namespace": "ml", "uid": "uid-1", "generation": 2}, "spec": spec}
    return parse_cluster(body)


OWNER = {"apiVersion": "ember.dev/v1alpha1", "kind": "RayCluster", "name": "demo", "uid": "uid-1",
         "controller": True, "blockOwnerDeletion": True}


def test_head_pod() -> None:
    cluster = make_cluster()
    pod = builders.build_head_pod(cluster, "abcde")
    k8s_valid(pod)
    meta = pod["metadata"]
    assert meta["name"] == "demo-head-abcde" and meta["namespace"] == "ml"
    assert meta["ownerReferences"] == [OWNER]
    assert meta["labels"] == {
        "team": "ml",
        "ember.dev/cluster": "demo",
        "ember.dev/node-type": "head",
        "ember.dev/group": "head",
        "app.kubernetes.io/name": "ember",
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/component": "head",
        "app.kubernetes.io/managed-by": "ember-operator",
        "ray.io/cluster": "demo",
        "ray.io/node-type": "head",
        "ray.io/group": "headgroup",
        "ray.io/is-ray-node": "yes",
    }
    assert meta["annotations"] == {"note": "hi",
                                   "ember.dev/pod-template-hash": builders.template_hash(cluster.head)}
    (agent,) = pod["spec"]["containers"]
    assert agent["command"] == ["ember"]
    assert agent["args"] == [
        "start", "--head", "--block", "--host", "0.0.0.0", "--port", "6380",
        "--metrics-port", "8080", "--dashboard-port", "8265", "--state-dir", "/var/lib/ember/state/head",
        "--dashboard-host", "0.0.0.0",
        "--token-file", "/etc/ember/token/token",
        "--num-cpus", "2", "--memory", str(4 * 2**30),
    ]
    assert {p["name"]: p["containerPort"] for p in agent["ports"]} == \
        {"grpc": 6380, "metrics": 8080, "dashboard": 8265}
    for probe in (agent["readinessProbe"], agent["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": 8080}
    assert {"name": "ember-token", "mountPath": "/etc/ember/token", "readOnly": True} in agent["volumeMounts"]
    assert {"name": "ember-shm", "mountPath": "/dev/shm"} in agent["volumeMounts"]
    assert pod["spec"]["volumes"] == [
        # readable by the image's non-root user: Kubernetes makes Secret files root-owned
        {"name": "ember-token", "secret": {"secretName": "demo-token", "defaultMode": 0o444}},
        # the object store's shared memory: 30% of the 4 GiB memory limit
        {"name": "ember-shm", "emptyDir": {"medium": "Memory", "sizeLimit": str(int(4 * 2**30 * 3 / 10))}},
        # the head's --state-dir: survives container restarts in the pod
        {"name": "ember-state", "emptyDir": {}}]
    assert {"name": "ember-state", "mountPath": "/var/lib/ember/state"} in agent["volumeMounts"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["EMBER_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["EMBER_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_head_state_volume_is_the_named_claim_and_workers_have_none() -> None:
    import dataclasses

    cluster = dataclasses.replace(make_cluster(), state_claim="demo-head-state")
    pod = builders.build_head_pod(cluster, "abcde")
    k8s_valid(pod)
    assert {"name": "ember-state", "persistentVolumeClaim": {"claimName": "demo-head-state"}} in pod["spec"]["volumes"]
    worker = builders.build_pod(cluster, cluster.workers[0], "demo-gpu-x")
    assert not any(v["name"] == "ember-state" for v in worker["spec"]["volumes"])
    assert "--state-dir" not in worker["spec"]["containers"][1]["args"]


def test_the_state_claim_comes_from_the_annotation() -> None:
    from ember_operator.spec import parse_cluster as parse

    body = {"metadata": {"name": "demo", "namespace": "ml", "uid": "u", "generation": 1,
                         "annotations": {"ember.dev/state-volume-claim": "my-pvc"}},
            "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ember-head", "image": "e"}]}}}}}
    assert parse(body).state_claim == "my-pvc"


def test_worker_pod_runs_the_agent_in_the_named_container() -> None:
    cluster = make_cluster()
    group = cluster.workers[0]
    pod = builders.build_worker_pod(cluster, group, "x1y2z")
    k8s_valid(pod)
    assert pod["metadata"]["name"] == "demo-gpu-worker-x1y2z"
    assert pod["metadata"]["labels"]["ember.dev/node-type"] == "worker"
    assert pod["metadata"]["labels"]["ember.dev/group"] == "gpu"
    sidecar, agent = pod["spec"]["containers"]
    assert sidecar == {"name": "logs", "image": "busybox"}  # untouched
    assert agent["args"] == [
        "start", "--block", "--address", "demo-head-svc.ml.svc:6380", "--host", "0.0.0.0",
        "--metrics-port", "8080", "--token-file", "/etc/ember/token/token",
        "--num-cpus", "1", "--num-gpus", "1", "--memory", str(2 * 2**30),
        "--object-store-memory", "1000000", "--resources", '{"accel": 1}',
    ]
    assert [p["name"] for p in agent["ports"]] == ["metrics"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["EMBER_POD_IP"] == {"name": "EMBER_POD_IP", "value": "override"}  # the user's wins


def test_start_params_override_resource_defaults() -> None:
    cluster = make_cluster()
    head = cluster.head.__class__(**{**cluster.head.__dict__, "start_params": {
        "num-cpus": "8", "memory": "123", "include-dashboard": ""}})
    args = builders.start_args(cluster, head)
    assert args[args.index("--num-cpus") + 1] == "8"
    assert args.count("--num-cpus") == 1 and args.count("--memory") == 1
    assert args[-5:] == ["--include-dashboard", "--memory", "123", "--num-cpus", "8"]


def test_head_dashboard_binds_all_addresses_unless_start_params_say_where() -> None:
    cluster = make_cluster()
    args = builders.start_args(cluster, cluster.head)
    assert args[args.index("--dashboard-host") + 1] == "0.0.0.0"
    head = cluster.head.__class__(**{**cluster.head.__dict__, "start_params": {"dashboard-host": "10.0.0.7"}})
    args = builders.start_args(cluster, head)
    assert args.count("--dashboard-host") == 1 and args[args.index("--dashboard-host") + 1] == "10.0.0.7"
    worker = builders.start_args(cluster, cluster.workers[0])
    assert "--dashboard-host" not in worker and "--dashboard-port" not in worker


def test_cpu_limits_round_down_but_never_below_one() -> None:
    assert builders.container_resources({"resources": {"limits": {"cpu": "250m"}}})["cpu"] < 1
    cluster = make_cluster(headGroupSpec={"template": {"spec": {"containers": [
        {"name": "ember-head", "image": "e", "resources": {"limits": {"cpu": "250m"}}}]}}})
    args = builders.start_args(cluster, cluster.head)
    assert args[args.index("--num-cpus") + 1] == "1"
    assert "--memory" not in args and "--num-gpus" not in args


def test_head_service() -> None:
    cluster = make_cluster()
    service = builders.build_head_service(cluster)
    k8s_valid(service)
    assert service["metadata"]["name"] == "demo-head-svc"
    assert service["metadata"]["ownerReferences"] == [OWNER]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["selector"] == {"ember.dev/cluster": "demo", "ember.dev/node-type": "head"}
    # KubeRay's port names; every target is a number, never a name a user's port may carry
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("gcs-server", 6379, 6380), ("client", 10001, 6380), ("dashboard", 8265, 8265),
        ("metrics", 8080, 8080), ("grpc", 6380, 6380)]
    # The selector picks the head pod.
    head_labels = builders.build_head_pod(cluster, "aaaaa")["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= head_labels.items()


def test_head_service_merges_the_users_head_service_and_annotations() -> None:
    head = make_cluster().head
    cluster = make_cluster(
        headServiceAnnotations={"cloud.example/lb": "internal"},
        headGroupSpec={
            "template": head.template,
            "headService": {
                "metadata": {"name": "custom-head", "labels": {"team": "ml"}, "annotations": {"a": "b"}},
                "spec": {"type": "NodePort", "sessionAffinity": "ClientIP",
                         "selector": {"app": "spoofed"},
                         "ports": [{"name": "serve", "port": 8000, "targetPort": 8000},
                                   {"name": "client", "port": 10002}]}}})
    service = builders.build_head_service(cluster)
    k8s_valid(service)
    meta, spec = service["metadata"], service["spec"]
    assert meta["name"] == "custom-head" and meta["annotations"] == {"a": "b", "cloud.example/lb": "internal"}
    assert meta["labels"]["team"] == "ml" and meta["labels"]["ember.dev/cluster"] == "demo"
    assert spec["type"] == "NodePort" and spec["sessionAffinity"] == "ClientIP"
    assert spec["selector"] == {"ember.dev/cluster": "demo", "ember.dev/node-type": "head"}
    assert [p["name"] for p in spec["ports"]] == ["gcs-server", "client", "dashboard", "metrics", "grpc", "serve"]
    worker = builders.build_worker_pod(cluster, cluster.workers[0], "aaaaa")
    args = worker["spec"]["containers"][1]["args"]  # ember-worker, after the logs container
    assert args[args.index("--address") + 1] == "custom-head.ml.svc:6380"


def test_a_users_port_named_like_ours_is_kept_and_ours_goes_by_number() -> None:
    template = {"spec": {"containers": [{"name": "ray-head", "image": "ember:1", "ports": [
        {"name": "grpc", "containerPort": 8888}, {"name": "gcs-server", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265}]}]}}
    cluster = make_cluster(headGroupSpec={"template": template})
    pod = builders.build_head_pod(cluster, "aaaaa")
    k8s_valid(pod)
    ports = pod["spec"]["containers"][0]["ports"]
    assert {"name": "grpc", "containerPort": 8888} in ports  # the user's, untouched
    assert {"containerPort": 6380, "protocol": "TCP"} in ports  # ours, unnamed
    assert [p["containerPort"] for p in ports].count(8265) == 1
    for probe in ("readinessProbe", "livenessProbe"):
        assert pod["spec"]["containers"][0][probe]["httpGet"]["port"] == 8080


def _head_with_command(**container: Any) -> dict[str, Any]:
    return {"template": {"spec": {"containers": [{"name": "ray-head", "image": "ember:1", **container}]}}}


def test_a_users_command_runs_before_the_agent_as_kuberay_does() -> None:
    cluster = make_cluster(headGroupSpec=_head_with_command(command=["echo 123"], args=["456"]))
    pod = builders.build_head_pod(cluster, "aaaaa")
    k8s_valid(pod)
    agent = pod["spec"]["containers"][0]
    generated = builders.start_args(cluster, cluster.head)
    assert agent["command"] == ["/bin/sh", "-c"]
    assert agent["args"] == [f"echo 123 456 && exec ember {' '.join(generated)}"]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["EMBER_START_CMD"] == env["KUBERAY_GEN_RAY_START_CMD"] == "ember " + " ".join(generated)


def test_with_the_overwrite_annotation_the_users_command_is_kept() -> None:
    command = {"command": ["/bin/bash", "-c", "--"], "args": ["ulimit -n 65536; $KUBERAY_GEN_RAY_START_CMD"]}
    body = {"metadata": {"name": "demo", "namespace": "ml", "uid": "uid-1",
                         "annotations": {"ray.io/overwrite-container-cmd": "true"}},
            "spec": {"headGroupSpec": _head_with_command(**command)}}
    cluster = parse_cluster(body)
    agent = builders.build_head_pod(cluster, "aaaaa")["spec"]["containers"][0]
    assert (agent["command"], agent["args"]) == (command["command"], command["args"])
    assert any(e["name"] == "KUBERAY_GEN_RAY_START_CMD" for e in agent["env"])


def test_group_labels_label_the_pods() -> None:
    head = make_cluster().head
    cluster = make_cluster(headGroupSpec={"template": head.template, "labels": {"zone": "a"}})
    assert builders.build_head_pod(cluster, "aaaaa")["metadata"]["labels"]["zone"] == "a"


def test_token_secret() -> None:
    cluster = make_cluster()
    secret = builders.build_token_secret(cluster, "s3cret")
    k8s_valid(secret)
    assert secret["metadata"]["name"] == "demo-token"
    assert secret["metadata"]["ownerReferences"] == [OWNER]
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ember-operator"
    assert base64.b64decode(secret["data"]["token"]) == b"s3cret"
    assert len(builders.new_token()) >= 43 and builders.new_token() != builders.new_token()


def test_event() -> None:
    body = {"apiVersion": "ember.dev/v1alpha1", "kind": "RayCluster",
            "metadata": {"name": "demo", "namespace": "ml", "uid": "uid-1"}}
    event = builders.build_event(body, "Normal", "CreatedPod", "Created head pod demo-head-aaaaa",
                                 now="2026-01-01T00:00:00Z", instance="op-1")
    k8s_valid(event)
    assert event["involvedObject"]["uid"] == "uid-1" and event["metadata"]["generateName"] == "demo."


def test_random_suffix() -> None:
    suffixes = {builders.random_suffix() for _ in range(50)}
    assert all(re.fullmatch(r"[a-z0-9]{5}", s) for s in suffixes)
    assert len(suffixes) > 45


def test_template_hash_follows_template_and_start_params_only() -> None:
    cluster = make_cluster()
    group = cluster.workers[0]
    same = group.__class__(**{**group.__dict__, "replicas": 7, "workers_to_delete": ("a",)})
    assert builders.template_hash(same) == builders.template_hash(group)
    template = copy.deepcopy(dict(group.template))
    template["spec"]["containers"][1]["image"] = "ember:2"
    changed = group.__class__(**{**group.__dict__, "template": template})
    assert builders.template_hash(changed) != builders.template_hash(group)
    params = group.__class__(**{**group.__dict__, "start_params": {"num-cpus": "3"}})
    assert builders.template_hash(params) != builders.template_hash(group)


def test_builders_do_not_modify_the_spec() -> None:
    cluster = make_cluster()
    before = copy.deepcopy(dict(cluster.workers[0].template))
    builders.build_worker_pod(cluster, cluster.workers[0], "aaaaa")
    assert dict(cluster.workers[0].template) == before


@pytest.mark.parametrize("service_type", ["ClusterIP", "NodePort"])
def test_service_types(service_type: str) -> None:
    cluster = make_cluster(headGroupSpec={"serviceType": service_type, "template": {"spec": {
        "containers": [{"name": "x", "image": "e"}]}}})
    service = builders.build_head_service(cluster)
    k8s_valid(service)
    assert service["spec"]["type"] == service_type
