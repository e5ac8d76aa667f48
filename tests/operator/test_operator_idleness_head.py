"""The operator's idleness and demand probes against a real head and worker node (real
agents, real gRPC on loopback). Only the Kubernetes Secret read is a stand-in (a function returning the
object), since there is no API server on these machines."""

from __future__ import annotations

import base64
import time

import ember
import pytest
from ember_operator.autoscaler import PendingShape
from ember_operator.demand import HeadDemand
from ember_operator.idleness import HeadIdleness
from ember_realhead import head_with_worker

POD = "demo-workers-worker-abcde"
TOKEN = "idleness-test-token"


@pytest.fixture(scope="module")
def cluster():
    with head_with_worker(TOKEN, POD, "ember-idle-") as address:
        yield address


def _probe(address: str, token: str = TOKEN) -> HeadIdleness:
    secret = {"data": {"token": base64.b64encode(token.encode()).decode()}}
    return HeadIdleness(lambda ns, name: secret if name == "demo-token" else None,
                        address=lambda name, ns: address)


CLUSTER = {"metadata": {"name": "demo", "namespace": "default"}}


def _wait_for(fn, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    return fn()


def test_idle_worker_pod_reports_idle_seconds_and_busy_reports_zero(cluster):
    probe = _probe(cluster)
    def idle_long_enough():  # one answer, checked as a whole (a worker starting resets idleness)
        answer = probe(CLUSTER, "workers", [POD, "other-pod"]) or {}
        return answer if answer.get(POD, 0) > 0.2 else None

    idle = _wait_for(idle_long_enough)
    assert set(idle) == {POD}, idle  # only pods the head knows, and never the head itself
    assert idle[POD] > 0.2

    ember.init(cluster, token=TOKEN)
    try:
        @ember.remote(resources={"on_pod": 1})
        def busy():
            time.sleep(3)
            return "done"

        ref = busy.remote()
        assert _wait_for(lambda: probe(CLUSTER, "workers", [POD]) == {POD: 0.0}, timeout=60), \
            probe(CLUSTER, "workers", [POD])
        assert ember.get(ref, timeout=30) == "done"
    finally:
        ember.shutdown()


def test_wrong_token_or_missing_secret_means_unknown(cluster):
    assert _probe(cluster, token="wrong")(CLUSTER, "workers", [POD]) is None
    no_secret = HeadIdleness(lambda ns, name: None, address=lambda name, ns: cluster)
    assert no_secret(CLUSTER, "workers", [POD]) is None


def _demand_probe(address: str, token: str = TOKEN) -> HeadDemand:
    secret = {"data": {"token": base64.b64encode(token.encode()).decode()}}
    return HeadDemand(lambda ns, name: secret if name == "demo-token" else None, address=lambda name, ns: address)


def test_demand_probe_reports_joined_pods_and_work_no_node_fits(cluster):
    report = _demand_probe(cluster)(CLUSTER)
    assert report is not None and set(report.workers) == {POD}  # the head itself is not listed
    assert report.workers[POD]["on_pod"] == 1.0 and report.workers[POD]["CPU"] == 1.0
    assert report.demand == ()

    ember.init(cluster, token=TOKEN)
    try:
        @ember.remote(resources={"on_pod": 2})
        def too_big():
            return None

        refs = [too_big.remote() for _ in range(3)]
        expected = (PendingShape({"CPU": 1.0, "on_pod": 2.0}, 3),)
        assert _wait_for(lambda: (_demand_probe(cluster)(CLUSTER) or report).demand == expected, timeout=60), \
            _demand_probe(cluster)(CLUSTER)
        for ref in refs:
            ember.cancel(ref)
        assert _wait_for(lambda: (_demand_probe(cluster)(CLUSTER) or report).demand == (), timeout=60)
    finally:
        ember.shutdown()
    assert _demand_probe(cluster, token="wrong")(CLUSTER) is None


def test_demand_probe_reports_the_bundles_of_a_pending_placement_group(cluster):
    """A group no node can hold asks for its bundles (not for the renamed requests of the
    work waiting in it), so the autoscaler adds nodes for it; removing it ends the demand."""
    from ember.util import placement_group, remove_placement_group
    from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ember.init(cluster, token=TOKEN)
    try:
        pg = placement_group([{"on_pod": 2}, {"CPU": 1}], strategy="SPREAD")

        @ember.remote(num_cpus=0)
        def inside():
            return None

        ref = inside.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote()
        expected = (PendingShape({"on_pod": 2.0}, 1),)
        assert _wait_for(lambda: (_demand_probe(cluster)(CLUSTER)).demand == expected, timeout=60), \
            _demand_probe(cluster)(CLUSTER)
        remove_placement_group(pg)
        assert _wait_for(lambda: (_demand_probe(cluster)(CLUSTER)).demand == (), timeout=60)
        del ref
    finally:
        ember.shutdown()
