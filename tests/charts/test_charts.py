"""Chart tier: the Helm charts, the RayCluster CRD and the example manifests.

There is no Kubernetes API server on the machines these tests run on. What a
server would check is checked here instead:

* ``helm lint --strict`` on both charts;
* the helm-unittest suites in ``charts/*/tests`` (one pytest test per
  helm-unittest test), run with the real ``helm template`` by
  ``tools/helm_unittest`` (tested itself in ``test_helm_unittest.py``);
* every object that ``helm template`` renders, for default and non-default
  values, against the official Kubernetes schemas (``kubernetes-validate``,
  strict: unknown fields are errors) of the oldest Kubernetes the charts
  accept and of the newest one known; RayClusters against our CRD
  (``charts_crdcheck``: defaults, OpenAPI validations, list-map keys, CEL rules);
* the RBAC rules and the operator's watch-namespace flags, together;
* the CRD itself, the examples, and CRs that the CRD must refuse.

helm comes from ``.tools/bin/helm`` (``make -f make/k8s.mk k8s-tools``); the
session fixture runs that target when the binary is missing and skips the
helm-based tests, saying why, when it cannot be fetched. ``EMBER_TEST_HELM``
names another helm binary to use instead (the tier passes with Helm 3.17 and 4.1).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import charts_crdcheck as crdcheck  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import helm_unittest  # noqa: E402

CHARTS = REPO / "charts"
OPERATOR_CHART = CHARTS / "ember-operator"
CLUSTER_CHART = CHARTS / "ember-cluster"
# EMBER_TEST_HELM runs the tier with another helm binary (e.g. a Helm 3 release).
HELM = Path(os.environ.get("EMBER_TEST_HELM") or REPO / ".tools" / "bin" / "helm")
EXAMPLES = [REPO / "examples" / "raycluster.yaml", REPO / "examples" / "raycluster-full.yaml"]

# The oldest Kubernetes the charts accept (Chart.yaml kubeVersion) and the
# newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of a working helm binary, fetched with make/k8s.mk when missing."""
    if "EMBER_TEST_HELM" in os.environ and not HELM.exists():
        pytest.skip(f"EMBER_TEST_HELM={HELM} does not exist")
    if not HELM.exists():
        try:
            proc = subprocess.run(
                ["make", "-s", "-f", "make/k8s.mk", "k8s-tools"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(
                f"helm is not in .tools/bin and `make -f make/k8s.mk k8s-tools` could not run: {error}"
            )
        if proc.returncode != 0 or not HELM.exists():
            pytest.skip(
                "helm is not in .tools/bin and `make -f make/k8s.mk k8s-tools` failed "
                f"(it needs npm and the npm registry): {proc.stderr.strip()[-500:]}"
            )
    return str(HELM)


def helm_run(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [helm, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def render(
    helm: str, chart: Path, *args: str, release: str = "demo", namespace: str = "ember"
) -> list[dict]:
    proc = helm_run(helm, "template", release, str(chart), "--namespace", namespace, *args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


# --- helm lint -------------------------------------------------------------


@pytest.mark.parametrize(
    ("chart", "args"),
    [
        (OPERATOR_CHART, []),
        (
            OPERATOR_CHART,
            ["--set", "watch.allNamespaces=false", "--set", "serviceMonitor.enabled=true"],
        ),
        (CLUSTER_CHART, []),
        (CLUSTER_CHART, ["--values", str(CLUSTER_CHART / "tests/values/two-groups.yaml")]),
    ],
    ids=["operator", "operator-namespaced", "cluster", "cluster-groups"],
)
def test_helm_lint(helm, chart, args):
    proc = helm_run(helm, "lint", "--strict", str(chart), *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


# --- the helm-unittest suites --------------------------------------------

UNITTEST_CASES = helm_unittest.collect(OPERATOR_CHART) + helm_unittest.collect(CLUSTER_CHART)


@pytest.mark.parametrize("case", UNITTEST_CASES, ids=[case.name for case in UNITTEST_CASES])
def test_helm_unittest(helm, case):
    failures = helm_unittest.run_case(helm, case)
    assert not failures, "\n".join(failures)


# The runner itself is tested in tests/charts/test_helm_unittest.py.


# --- rendered objects against the Kubernetes schemas and the CRD --------

OPERATOR_SCENARIOS = {
    "defaults": [],
    "one-namespace": ["--set", "watch.allNamespaces=false", "--set", "watch.namespaces={team-a}"],
    "several-namespaces": [
        "--set",
        "watch.allNamespaces=false",
        "--set",
        "watch.namespaces={team-a,team-b,team-c}",
    ],
    "release-namespace": ["--set", "watch.allNamespaces=false"],
    "all-namespaces-servicemonitor": [
        "--set",
        "watch.allNamespaces=true",
        "--set",
        "serviceMonitor.enabled=true",
    ],
    "namespaced-servicemonitor": [
        "--set",
        "watch.allNamespaces=false",
        "--set",
        "serviceMonitor.enabled=true",
    ],
    "everything-set": [
        "--set",
        "image.repository=registry.example.com/ember",
        "--set",
        "image.tag=1.2.3",
        "--set",
        "imagePullSecrets[0].name=regcred",
        "--set",
        "logLevel=debug",
        "--set",
        "nodeSelector.kubernetes\\.io/os=linux",
        "--set",
        "tolerations[0].key=dedicated",
        "--set",
        "tolerations[0].operator=Exists",
        "--set",
        "podAnnotations.a=b",
        "--set",
        "podLabels.team=x",
        "--set",
        "metrics.port=9090",
        "--set",
        "metrics.service.type=NodePort",
        "--set",
        "priorityClassName=high",
        "--set",
        "extraEnv[0].name=FOO",
        "--set",
        "extraEnv[0].value=bar",
        "--set",
        "serviceAccount.annotations.a=b",
    ],
    "grafana-dashboards": [
        "--set",
        "grafanaDashboards.enabled=true",
        "--set",
        "grafanaDashboards.namespace=monitoring",
        "--set",
        "grafanaDashboards.annotations.grafana_folder=ember",
    ],
    "kuberay-watch-namespace": ["--set", "watchNamespace={team-a,team-b}"],
    "kuberay-single-namespace": ["--set", "singleNamespaceInstall=true"],
    "one-replica-no-election": ["--set", "replicaCount=1", "--set", "leaderElection.enabled=false"],
    "no-rbac-existing-account": [
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=ops",
    ],
}

CLUSTER_SCENARIOS = {
    "defaults": [],
    "three-workers": ["--set", "worker.replicas=3"],
    "several-groups": ["--values", str(CLUSTER_CHART / "tests/values/two-groups.yaml")],
    "load-balancer-suspended": [
        "--set",
        "head.serviceType=LoadBalancer",
        "--set",
        "suspend=true",
        "--set",
        "upgradeStrategy=Recreate",
        "--set",
        "head.startParams.num-cpus=0",
        "--set",
        "worker.maxReplicas=5",
        "--set",
        "worker.minReplicas=1",
    ],
    "no-workers": ["--set", "worker.enabled=false"],
    "kuberay-values": ["--values", str(CLUSTER_CHART / "tests/values/kuberay-values.yaml")],
}


def check_object(doc: dict) -> None:
    """Validate one rendered object; raises with the reason on failure."""
    kind = doc["kind"]
    if kind == "RayCluster":
        errors = crdcheck.validate(doc)
        assert not errors, f"RayCluster {doc['metadata']['name']}: {errors}"
        for template in pod_templates(doc):
            check_pod_template(template)
    elif kind == "ServiceMonitor":
        # prometheus-operator's CRD is not in the Kubernetes schemas and is not
        # vendored here; the helm-unittest suite asserts its fields instead.
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    else:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def pod_templates(raycluster: dict) -> list[dict]:
    spec = raycluster["spec"]
    return [spec["headGroupSpec"]["template"]] + [
        group["template"] for group in spec.get("workerGroupSpecs", [])
    ]


def check_pod_template(template: dict) -> None:
    """A RayCluster pod template must be a valid core/v1 PodTemplateSpec."""
    wrapped = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "t"},
        "template": template,
    }
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(wrapped, version, strict=True)


@pytest.mark.parametrize("scenario", sorted(OPERATOR_SCENARIOS))
def test_operator_chart_objects_are_valid(helm, scenario):
    docs = render(helm, OPERATOR_CHART, "--include-crds", *OPERATOR_SCENARIOS[scenario])
    kinds = {doc["kind"] for doc in docs}
    assert {"CustomResourceDefinition", "Deployment", "Service"} <= kinds
    for doc in docs:
        check_object(doc)


@pytest.mark.parametrize("scenario", sorted(CLUSTER_SCENARIOS))
def test_cluster_chart_objects_are_valid(helm, scenario):
    docs = render(helm, CLUSTER_CHART, *CLUSTER_SCENARIOS[scenario])
    assert [doc["kind"] for doc in docs] == ["RayCluster"]
    for doc in docs:
        check_object(doc)


def test_operator_chart_ships_the_dashboards_as_they_are(helm):
    """Each dashboards/*.json lands, unchanged and still JSON, in its own sidecar ConfigMap."""
    docs = render(helm, OPERATOR_CHART, "--set", "grafanaDashboards.enabled=true")
    shipped = {}
    for doc in by_kind(docs, "ConfigMap"):
        assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        shipped.update(doc["data"])
    files = sorted((OPERATOR_CHART / "dashboards").glob("*.json"))
    assert sorted(shipped) == [f.name for f in files]
    for f in files:
        assert shipped[f.name] == f.read_text().rstrip("\n")
        assert json.loads(shipped[f.name])["uid"] == f.stem
        assert len(shipped[f.name].encode()) < 1 << 20  # a ConfigMap holds at most 1 MiB


def test_cluster_chart_worker_replicas_shortcut(helm):
    (cluster,) = render(helm, CLUSTER_CHART, "--set", "worker.replicas=3")
    groups = cluster["spec"]["workerGroupSpecs"]
    assert [(g["groupName"], g["replicas"]) for g in groups] == [("workers", 3)]
    assert (
        crdcheck.apply_defaults(cluster, crdcheck.version_schema(crdcheck.load_crd()))["spec"][
            "workerGroupSpecs"
        ][0]["maxReplicas"]
        == 2147483647
    )


def test_cluster_chart_several_groups(helm):
    (cluster,) = render(
        helm, CLUSTER_CHART, "--values", str(CLUSTER_CHART / "tests/values/two-groups.yaml")
    )
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert list(groups) == ["workers", "gpu", "spot"]
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]
    assert gpu["name"] == "ember-worker"
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert groups["gpu"]["startParams"] == {"resources": '{"gpu_type_a": 1}'}


def dry_run_install(helm: str, *args: str) -> subprocess.CompletedProcess:
    """``helm install --dry-run=client``: renders NOTES.txt, which ``helm template`` does not."""
    proc = helm_run(helm, "install", *args, "--dry-run=client")
    if proc.returncode != 0 and "cluster unreachable" in proc.stderr:
        pytest.skip("this helm (Helm 3) wants a cluster even for --dry-run=client; Helm 4 does not")
    assert proc.returncode == 0, proc.stderr
    return proc


def test_cluster_chart_notes_explain_how_to_connect(helm):
    proc = dry_run_install(
        helm, "demo", str(CLUSTER_CHART), "--namespace", "research", "--set", "worker.replicas=3"
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n research port-forward svc/demo-head-svc 6380:6380" in notes
    assert (
        "EMBER_TOKEN=$(kubectl -n research get secret demo-token -o jsonpath='{.data.token}' | base64 -d)"
        in notes
    )
    assert 'ember.init("127.0.0.1:6380")' in notes


def test_operator_accepts_what_the_cluster_chart_and_examples_produce(helm):
    """The operator's own spec check agrees with the chart and the examples."""
    spec = pytest.importorskip(
        "ember_operator.spec", reason="the ember_operator package is not importable"
    )
    bodies = [yaml.safe_load(path.read_text()) for path in EXAMPLES]
    for args in CLUSTER_SCENARIOS.values():
        bodies += render(helm, CLUSTER_CHART, *args)
    schema = crdcheck.version_schema(crdcheck.load_crd())
    for body in bodies:
        defaulted = crdcheck.apply_defaults(body, schema)  # the API server would default first
        assert spec.spec_problems(body["metadata"]["name"], defaulted["spec"]) == [], body[
            "metadata"
        ]["name"]


def test_cluster_chart_refuses_the_operators_reserved_start_params(helm):
    spec = pytest.importorskip(
        "ember_operator.spec", reason="the ember_operator package is not importable"
    )
    for key in spec.RESERVED_START_PARAMS:
        proc = helm_run(
            helm, "template", "demo", str(CLUSTER_CHART), "--set", f"head.startParams.{key}=1"
        )
        assert proc.returncode != 0, (
            f"the chart accepts startParams {key!r}, which the operator refuses"
        )
        assert f'"{key}" is set by the operator' in proc.stderr


def test_operator_chart_notes_render(helm):
    proc = dry_run_install(
        helm,
        "ops",
        str(OPERATOR_CHART),
        "--namespace",
        "ember-system",
        "--set",
        "watch.allNamespaces=false",
        "--set",
        "watch.namespaces={a,b}",
    )
    assert "It manages RayClusters (ember.dev/v1alpha1) in: a, b." in proc.stdout


# --- RBAC and watch flags, together -----------------------------------------

NAMESPACED_RULES = {
    ("ember.dev", "rayclusters"): {"get", "list", "watch", "patch", "update"},
    ("ember.dev", "rayclusters/status"): {"get", "patch", "update"},
    ("ember.dev", "rayclusters/finalizers"): {"get", "patch", "update"},
    ("", "pods"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "services"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "secrets"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "events"): {"create", "patch"},
}
CLUSTER_ONLY_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}


def granted(role: dict) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, refusing wildcards and resourceNames-free surprises."""
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in (group, resource) and "*" not in rule["verbs"], rule
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def watch_args(docs: list[dict]) -> tuple[bool, list[str]]:
    (deployment,) = [doc for doc in docs if doc["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    namespaces = [args[i + 1] for i, arg in enumerate(args) if arg == "--namespace"]
    return "--all-namespaces" in args, namespaces


@pytest.mark.parametrize("scenario", sorted(OPERATOR_SCENARIOS))
def test_operator_accepts_the_charts_command_line(helm, scenario):
    """The Deployment's args parse with the operator's own parser, and mean what the values say."""
    main = pytest.importorskip(
        "ember_operator.main", reason="the ember_operator package is not importable"
    )
    docs = render(helm, OPERATOR_CHART, *OPERATOR_SCENARIOS[scenario], namespace="ember-system")
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["ember-operator"]
    try:
        args = main.parse_args(container["args"])
    except SystemExit:
        pytest.fail(f"ember-operator refuses the chart's arguments {container['args']}")
    all_namespaces, namespaces = watch_args(docs)
    assert args.all_namespaces is all_namespaces
    assert (args.namespaces or []) == namespaces
    (port,) = container["ports"]
    assert args.metrics_port == port["containerPort"]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def watch_rbac(docs: list[dict], kind: str) -> list[dict]:
    """Roles or RoleBindings of the watched namespaces (not the leader-election ones)."""
    return [doc for doc in by_kind(docs, kind) if not doc["metadata"]["name"].endswith("-leader-election")]


def test_rbac_for_leader_election(helm):
    docs = render(helm, OPERATOR_CHART, namespace="ember-system")
    roles = [d for d in by_kind(docs, "Role") if d not in watch_rbac(docs, "Role")]
    (role,) = roles
    assert role["metadata"]["namespace"] == "ember-system"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "patch", "update"]}]
    (binding,) = [d for d in by_kind(docs, "RoleBinding") if d not in watch_rbac(docs, "RoleBinding")]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    off = render(helm, OPERATOR_CHART, "--set", "leaderElection.enabled=false", "--set", "replicaCount=1",
                 namespace="ember-system")
    assert not by_kind(off, "Role") and not by_kind(off, "RoleBinding")


def test_rbac_all_namespaces(helm):
    docs = render(helm, OPERATOR_CHART, namespace="ember-system")
    assert watch_args(docs) == (True, [])
    assert not watch_rbac(docs, "Role") and not watch_rbac(docs, "RoleBinding")
    (role,) = by_kind(docs, "ClusterRole")
    assert granted(role) == NAMESPACED_RULES | CLUSTER_ONLY_RULES
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    (account,) = by_kind(docs, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "ember-system"}
    ]
    (deployment,) = by_kind(docs, "Deployment")
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    )


@pytest.mark.parametrize(
    ("namespaces", "expected"),
    [
        (None, ["ember-system"]),
        (["team-a"], ["team-a"]),
        (["team-a", "team-b", "team-c"], ["team-a", "team-b", "team-c"]),
    ],
    ids=["release-namespace", "one", "several"],
)
def test_rbac_watched_namespaces(helm, namespaces, expected):
    args = ["--set", "watch.allNamespaces=false"]
    if namespaces:
        args += ["--set", "watch.namespaces={" + ",".join(namespaces) + "}"]
    docs = render(helm, OPERATOR_CHART, *args, namespace="ember-system")
    assert watch_args(docs) == (False, expected)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles = watch_rbac(docs, "Role")
    bindings = watch_rbac(docs, "RoleBinding")
    assert sorted(role["metadata"]["namespace"] for role in roles) == sorted(expected)
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == sorted(expected)
    (account,) = by_kind(docs, "ServiceAccount")
    for role in roles:
        assert granted(role) == NAMESPACED_RULES
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] in {role["metadata"]["name"] for role in roles}
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": "ember-system",
            }
        ]


# --- the CRD ----------------------------------------------------------------


@pytest.fixture(scope="module")
def crd() -> dict:
    return crdcheck.load_crd()


@pytest.fixture(scope="module")
def schema(crd) -> dict:
    return crdcheck.version_schema(crd)


def test_crd_is_a_valid_crd_object(crd):
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)


def test_crd_names_and_version(crd):
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "rayclusters.ember.dev"
    assert spec["group"] == "ember.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "RayCluster"
    assert spec["names"]["plural"] == "rayclusters" and spec["names"]["singular"] == "raycluster"
    assert spec["names"]["shortNames"] == ["emc", "eraycluster"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_crd_printer_columns_point_at_schema_fields(crd, schema):
    (version,) = crd["spec"]["versions"]
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns == {
        "DESIRED": ".status.desiredWorkerReplicas",
        "READY": ".status.readyWorkerReplicas",
        "CPUS": ".status.desiredCPU",
        "STATUS": ".status.state",
        "HEAD-IP": ".status.head.podIP",
        "AGE": ".metadata.creationTimestamp",
    }
    for path in columns.values():
        if path.startswith(".metadata."):
            continue
        node = schema
        for part in path.strip(".").split("."):
            node = node["properties"][part]


def _schema_nodes(node: dict, path: str = ""):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}{{}}")


def test_crd_schema_is_structural(schema):
    """What the API server demands of a structural schema, and what this checker understands."""
    assert crdcheck.unsupported(schema) == []
    for path, node in _schema_nodes(schema):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        elif path != "":
            assert "type" in node, f"{path} has no type"
        if node.get("x-kubernetes-list-type") == "map":
            for key in node["x-kubernetes-list-map-keys"]:
                item = node["items"]
                assert key in item.get("required", []) or "default" in item["properties"][key], path
        if "default" in node:
            assert (
                crdcheck.validate(
                    node["default"], {k: v for k, v in node.items() if k != "default"}
                )
                == []
            ), path


def test_crd_cel_rules_compile(schema):
    rules = [
        rule["rule"]
        for _, node in _schema_nodes(schema)
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) == 2  # replicas outside the bounds is clamped by the operator, not refused
    for rule in rules:
        crdcheck._program(rule)


def test_crd_defaults(schema):
    minimal = yaml.safe_load(EXAMPLES[0].read_text())
    defaulted = crdcheck.apply_defaults(minimal, schema)["spec"]
    assert defaulted["suspend"] is False
    assert defaulted["upgradeStrategy"] == {"type": "None"}
    assert defaulted["headGroupSpec"]["serviceType"] == "ClusterIP"
    group = defaulted["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["maxReplicas"]) == (0, 4)
    bare = crdcheck.apply_defaults(
        {"groupName": "g", "template": {}},
        schema["properties"]["spec"]["properties"]["workerGroupSpecs"]["items"],
    )
    # replicas has no schema default: the operator uses minReplicas, so a group that only
    # sets minReplicas is valid (a default of 0 would fail the range rule)
    assert "replicas" not in bare
    assert (bare["minReplicas"], bare["maxReplicas"]) == (0, 2147483647)
    only_min = yaml.safe_load(EXAMPLES[0].read_text())
    group = only_min["spec"]["workerGroupSpecs"][0]
    group.pop("replicas", None)
    group["minReplicas"] = 1
    check_object(only_min)


# --- examples and CRs the CRD must refuse ------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_is_valid(path):
    (doc,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert doc["apiVersion"] == "ember.dev/v1alpha1" and doc["kind"] == "RayCluster"
    check_object(doc)


def test_full_example_has_a_gpu_group_with_custom_resources():
    doc = yaml.safe_load(EXAMPLES[1].read_text())
    groups = {group["groupName"]: group for group in doc["spec"]["workerGroupSpecs"]}
    assert len(groups) == 2
    gpu = groups["gpu"]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["startParams"]["resources"] == '{"gpu_type_a": 1}'


def test_status_as_the_operator_writes_it_is_valid():
    doc = yaml.safe_load(EXAMPLES[0].read_text())
    doc["status"] = {
        "state": "ready",
        "conditions": [
            {
                "type": "HeadPodReady",
                "status": "True",
                "reason": "HeadPodRunning",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            },
            {
                "type": "ClusterProvisioned",
                "status": "True",
                "reason": "AllPodsReady",
                "message": "3 pods",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ],
        "readyWorkerReplicas": 2,
        "availableWorkerReplicas": 2,
        "desiredWorkerReplicas": 2,
        "minWorkerReplicas": 0,
        "maxWorkerReplicas": 4,
        "desiredCPU": "3",
        "desiredMemory": "6Gi",
        "desiredGPU": "0",
        "endpoints": {"client": "6380", "metrics": "8080", "dashboard": "8265"},
        "head": {
            "podName": "raycluster-minimal-head",
            "podIP": "10.0.0.5",
            "serviceName": "raycluster-minimal-head",
            "serviceIP": "10.96.0.10",
        },
        "observedGeneration": 1,
        "lastUpdateTime": "2026-01-01T00:00:05Z",
    }
    assert crdcheck.validate(doc) == []


def _minimal() -> dict:
    return yaml.safe_load(EXAMPLES[0].read_text())


def _with(change):
    def build():
        doc = _minimal()
        change(doc)
        return doc

    return build


def _group(doc: dict) -> dict:
    return doc["spec"]["workerGroupSpecs"][0]


INVALID = {
    "min-above-max": (
        _with(lambda d: _group(d).update(replicas=3, minReplicas=3, maxReplicas=2)),
        "minReplicas must be less than or equal to maxReplicas",
    ),
    "duplicate-group-names": (
        _with(lambda d: d["spec"]["workerGroupSpecs"].append(copy.deepcopy(_group(d)))),
        "Duplicate value: ('workers',)",
    ),
    "bad-group-name": (
        _with(lambda d: _group(d).update(groupName="GPU_workers")),
        "does not match",
    ),
    "long-group-name": (_with(lambda d: _group(d).update(groupName="g" * 41)), "is too long"),
    "negative-replicas": (
        _with(lambda d: _group(d).update(replicas=-1)),
        "less than the minimum of 0",
    ),
    "string-replicas": (
        _with(lambda d: _group(d).update(replicas="3")),
        "is not of type 'integer'",
    ),
    "missing-group-template": (
        _with(lambda d: _group(d).pop("template")),
        "'template' is a required property",
    ),
    "missing-head": (
        _with(lambda d: d["spec"].pop("headGroupSpec")),
        "'headGroupSpec' is a required property",
    ),
    "bad-service-type": (
        _with(lambda d: d["spec"]["headGroupSpec"].update(serviceType="ExternalName")),
        "is not one of",
    ),
    "bad-upgrade-strategy": (
        _with(lambda d: d["spec"].update(upgradeStrategy={"type": "Rolling"})),
        "is not one of",
    ),
    "non-string-start-param": (
        _with(lambda d: d["spec"]["headGroupSpec"].update(startParams={"num-cpus": 4})),
        "is not of type 'string'",
    ),
    "unknown-field": (
        _with(lambda d: d["spec"].update(rayVersoin="2.9.0")),
        "'rayVersoin' was unexpected",
    ),
    "bad-cluster-name": (_with(lambda d: d["metadata"].update(name="9-lives")), "DNS-1035"),
    "long-cluster-name": (
        _with(lambda d: d["metadata"].update(name="c" * 51)),
        "at most 50 characters",
    ),
    "bad-condition-status": (
        _with(
            lambda d: d.update(
                status={
                    "conditions": [
                        {
                            "type": "HeadPodReady",
                            "status": "yes",
                            "reason": "R",
                            "message": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ]
                }
            )
        ),
        "is not one of",
    ),
    "bad-quantity": (_with(lambda d: d.update(status={"desiredCPU": "four"})), "does not match"),
}


def test_crd_accepts_replicas_outside_the_bounds():
    """As KubeRay's: the operator clamps them (with an Event) rather than the API refusing."""
    for change in ({"replicas": 5, "maxReplicas": 4}, {"replicas": 1, "minReplicas": 2}):
        assert crdcheck.validate(_with(lambda d, change=change: _group(d).update(change))()) == []


@pytest.mark.parametrize("name", sorted(INVALID))
def test_crd_refuses_invalid_raycluster(name):
    build, expected = INVALID[name]
    errors = crdcheck.validate(build())
    assert errors, f"{name} was accepted"
    assert any(expected in error for error in errors), errors
