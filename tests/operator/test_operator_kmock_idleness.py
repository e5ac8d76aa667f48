"""Scale-down picks the idlest workers when the head reports idleness (kmock emulator).

kmock emulates the Kubernetes API server over real HTTP because no real API server
exists on these machines (see ``ember_kmock.py``). The head's idleness report does
not exist yet, so the test injects the probe the operator would call.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from ember_kmock import EmberEmulator, counts, eventually, started, worker_group
from ember_operator.reconciler import ReconcilerOptions
from ember_operator.runtime import Operator, OperatorConfig

pytestmark = [
    pytest.mark.kmock(cls=EmberEmulator),
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),
]


@pytest.fixture
def operator_config(names: Iterator[str]) -> OperatorConfig:
    """The test configuration with a head that reports idle seconds per worker."""

    def idleness(body: Mapping[str, Any], group: str, pods: Sequence[str]) -> Mapping[str, float]:
        return {"demo-cpu-worker-00003": 120.0, "demo-cpu-worker-00002": 5.0}

    return OperatorConfig(metrics_host="127.0.0.1", metrics_port=0, resync_seconds=3600,
                          reconciler=ReconcilerOptions(suffix=lambda: next(names), idleness=idleness))


async def test_scale_down_without_names_deletes_the_idlest(kmock: EmberEmulator, operator: Operator) -> None:
    cluster = await started(kmock, workers=3)
    assert cluster.pod_names("worker") == [
        "demo-cpu-worker-00002", "demo-cpu-worker-00003", "demo-cpu-worker-00004"]
    await cluster.patch_spec({"workerGroupSpecs": [worker_group(1)]})
    # 00003 (idle 120 s) goes first, then 00002 (5 s); 00004 (unknown) stays.
    await eventually(lambda: counts(cluster, 1, 1))
    assert cluster.pod_names("worker") == ["demo-cpu-worker-00004"]
