"""KubeRay's sample RayClusters under the real operator (kopf in-process) against kmock.

kmock emulates the Kubernetes API server over real HTTP because no real API server
exists on these machines (see ``ember_kmock.py``); nothing plays the kubelet here, the
test only counts the pods the operator makes. The samples are read at test time from a
copy of KubeRay's repository (see ``tests/charts/test_kuberay_samples.py``), each applied
in a namespace of its own with only apiVersion and the image changed; the test skips
when there is no copy. Samples of more than ``MAX_PODS`` pods (the 64-host TPU one) are
left to the pure count in ``test_kuberay_samples.py``: the emulator slows down with
every object it holds.
"""

import sys
from pathlib import Path

import pytest
from ember_kmock import Cluster, EmberEmulator, eventually
from ember_operator.runtime import Operator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "charts"))
import charts_crdcheck as crdcheck  # noqa: E402
from test_kuberay_samples import SAMPLES, _kuberay_pod_count, needs_samples  # noqa: E402

MAX_PODS = 20
CHUNK = 8  # samples per emulator: it slows down with every object it holds
SMALL = [(name, doc) for name, doc in SAMPLES if _kuberay_pod_count(doc["spec"]) <= MAX_PODS]
CHUNKS = [SMALL[i:i + CHUNK] for i in range(0, len(SMALL), CHUNK)]

pytestmark = [
    pytest.mark.kmock(cls=EmberEmulator),
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),
]


def test_the_kmock_chunks_cover_all_but_the_largest_sample() -> None:
    assert sum(len(chunk) for chunk in CHUNKS) >= len(SAMPLES) - 1


@needs_samples
@pytest.mark.parametrize("chunk", CHUNKS or [[]], ids=lambda chunk: chunk[0][0] if chunk else "none")
async def test_every_sample_gets_kuberays_pod_count(
    kmock: EmberEmulator, operator: Operator, chunk: list
) -> None:
    schema = crdcheck.version_schema(crdcheck.load_crd())
    expected: dict[str, tuple[Cluster, int]] = {}
    for index, (name, doc) in enumerate(chunk):
        body = crdcheck.apply_defaults(doc, schema)  # the API server defaults on create
        cluster = Cluster(kmock, f"sample-{index}", body["metadata"]["name"])
        await cluster._call("POST", f"/apis/ember.dev/v1alpha1/namespaces/{cluster.namespace}/rayclusters",
                            {**body, "metadata": {**body["metadata"], "namespace": cluster.namespace}})
        expected[name] = (cluster, _kuberay_pod_count(doc["spec"]))

    def all_counted() -> None:
        wrong = {name: (len(cluster.pods()), want) for name, (cluster, want) in expected.items()
                 if len(cluster.pods()) != want}
        assert not wrong, wrong

    await eventually(all_counted, timeout=60)
    failed = [name for name, (cluster, _) in expected.items() if cluster.status().get("state") == "failed"]
    assert not failed
