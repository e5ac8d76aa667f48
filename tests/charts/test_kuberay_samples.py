"""KubeRay's own sample RayClusters, with only apiVersion and the image changed, against ember.

The samples are not part of this repository: they are read at test time from a copy of
KubeRay's repository (``$KUBERAY_REPO``: a git directory, bare or not, or a checkout;
by default the mirror the project's tooling fetches), and the tests skip, saying why,
when there is none. Each RayCluster document of
``ray-operator/config/samples/ray-cluster*.yaml`` must

- pass strict validation against our CRD's schema (``charts_crdcheck``: unknown fields
  are errors, as with ``kubectl apply``'s strict field validation), and
- be accepted by the operator's own spec check, with every field it does not act on named.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import charts_crdcheck as crdcheck  # noqa: E402

SAMPLES_DIR = "ray-operator/config/samples"
DEFAULT_REPO = "/work/.mirror/ray-project+kuberay/repo"
EMBER_IMAGE = "ember:test"


def _repo() -> tuple[str, str] | None:
    """("git", git dir) or ("dir", checkout) of KubeRay's repository, if one is here."""
    path = Path(os.environ.get("KUBERAY_REPO", DEFAULT_REPO))
    if (path / SAMPLES_DIR).is_dir():
        return "dir", str(path)
    git_dir = path / ".git" if (path / ".git").exists() else path
    if (git_dir / "HEAD").exists():
        return "git", str(git_dir)
    return None


def _sample_texts() -> dict[str, str]:
    repo = _repo()
    if repo is None:
        return {}
    kind, where = repo
    if kind == "dir":
        return {p.name: p.read_text() for p in sorted((Path(where) / SAMPLES_DIR).glob("ray-cluster*.yaml"))}
    listing = subprocess.run(["git", "--git-dir", where, "ls-tree", "--name-only", "HEAD", f"{SAMPLES_DIR}/"],
                             capture_output=True, text=True, check=True).stdout.split()
    texts = {}
    for path in listing:
        name = path.rsplit("/", 1)[-1]
        if name.startswith("ray-cluster") and name.endswith(".yaml"):
            texts[name] = subprocess.run(["git", "--git-dir", where, "show", f"HEAD:{path}"],
                                         capture_output=True, text=True, check=True).stdout
    return texts


def _ported(doc: dict) -> dict:
    """The sample as a KubeRay user ports it: apiVersion and every image changed, nothing else."""
    doc = copy.deepcopy(doc)
    doc["apiVersion"] = "ember.dev/v1alpha1"
    spec = doc["spec"]
    for group in [spec["headGroupSpec"], *(spec.get("workerGroupSpecs") or [])]:
        pod = group["template"]["spec"]
        for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
            if str(container.get("image", "")).startswith("rayproject/ray"):
                container["image"] = EMBER_IMAGE
    return doc


def _samples() -> list[tuple[str, dict]]:
    found = []
    for name, text in _sample_texts().items():
        for index, doc in enumerate(yaml.safe_load_all(text)):
            if isinstance(doc, dict) and doc.get("kind") == "RayCluster":
                found.append((f"{name}#{index}", _ported(doc)))
    return found


SAMPLES = _samples()
needs_samples = pytest.mark.skipif(
    not SAMPLES, reason=f"no copy of KubeRay's repository at $KUBERAY_REPO ({DEFAULT_REPO} by default)")


@needs_samples
def test_there_are_as_many_samples_as_kuberay_ships():
    assert len(SAMPLES) >= 46, [name for name, _ in SAMPLES]


@needs_samples
@pytest.mark.parametrize(("name", "doc"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_sample_passes_strict_validation(name, doc):
    assert crdcheck.validate(doc) == []


@needs_samples
@pytest.mark.parametrize(("name", "doc"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_operator_accepts_sample(name, doc):
    from ember_operator.spec import parse_cluster, spec_problems

    schema = crdcheck.version_schema(crdcheck.load_crd())
    body = crdcheck.apply_defaults(doc, schema)  # the API server defaults before the operator reads
    body["metadata"].setdefault("namespace", "default")
    assert spec_problems(body["metadata"]["name"], body["spec"]) == []
    cluster = parse_cluster(body)
    assert all("(" in field for field in cluster.unsupported)  # each says why


def _kuberay_pod_count(spec: dict) -> int:
    """The pods KubeRay makes for a spec: a head, and per group replicas (default 0, clamped
    to minReplicas..maxReplicas) times numOfHosts (default 1)."""
    total = 1
    for group in spec.get("workerGroupSpecs") or []:
        low, high = group.get("minReplicas") or 0, group.get("maxReplicas", 2**31 - 1)
        replicas = min(max(group.get("replicas") or 0, low), high)
        total += replicas * max(group.get("numOfHosts") or 1, 1)
    return total


@needs_samples
@pytest.mark.parametrize(("name", "doc"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_sample_yields_kuberays_pod_count_and_valid_objects(name, doc):
    import kubernetes_validate
    from ember_operator import builders
    from ember_operator.spec import parse_cluster

    schema = crdcheck.version_schema(crdcheck.load_crd())
    body = crdcheck.apply_defaults(doc, schema)
    body["metadata"].update(namespace="default", uid="uid-1")
    cluster = parse_cluster(body)
    assert 1 + sum(group.desired_pods for group in cluster.workers) == _kuberay_pod_count(doc["spec"])
    version = kubernetes_validate.latest_version()
    objects = [builders.build_head_service(cluster), builders.build_head_pod(cluster, "aaaaa")]
    objects += [builders.build_worker_pod(cluster, group, "aaaaa") for group in cluster.workers]
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
