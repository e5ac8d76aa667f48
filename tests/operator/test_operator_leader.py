"""Leader election: the pure decision, then two operators against one API emulator.

The two-operator tests run the real operator twice (two kopf instances in-process, each
in its own thread and loop) against kmock's Kubernetes API emulator, because no real API
server exists on these machines (see ``ember_kmock.py``); the tests play the kubelet.
"""

import contextlib
import itertools
import threading
from pathlib import Path

import pytest
from conftest import no_threads_left, running_operator
from ember_kmock import Cluster, EmberEmulator, cluster_spec, counts, declare_resources, eventually
from ember_operator.leader import LeaseConfig, Observation, decide
from ember_operator.reconciler import ReconcilerOptions
from ember_operator.runtime import Operator, OperatorConfig


def lease(holder: str | None, renewed: str = "t1", transitions: int = 0) -> dict:
    return {"metadata": {"resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "renewTime": renewed, "leaseTransitions": transitions,
                     "leaseDurationSeconds": 15}}


def test_no_lease_is_created_an_own_lease_renewed_a_free_one_taken() -> None:
    assert decide(None, "me", None, 0.0, 15) == ("create", None)
    assert decide(lease("me"), "me", None, 0.0, 15) == ("renew", None)
    assert decide(lease(""), "me", None, 0.0, 15) == ("take", None)
    assert decide(lease(None), "me", None, 0.0, 15) == ("take", None)


def test_anothers_lease_is_taken_only_after_it_stood_still_for_its_duration() -> None:
    action, seen = decide(lease("other"), "me", None, 100.0, 15)
    assert action == "wait" and seen == Observation(("other", "t1", 0), 100.0)
    assert decide(lease("other"), "me", seen, 114.9, 15) == ("wait", seen)
    assert decide(lease("other"), "me", seen, 115.0, 15) == ("take", seen)
    # renewed meanwhile: the clock starts again from when the new record was seen
    action, again = decide(lease("other", renewed="t2"), "me", seen, 114.0, 15)
    assert action == "wait" and again == Observation(("other", "t2", 0), 114.0)
    assert decide(lease("other", renewed="t2"), "me", again, 128.0, 15)[0] == "wait"


pytestmark = [pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")]


def config(identity: str) -> OperatorConfig:
    suffixes = (f"{identity[-1]}{n:04d}" for n in itertools.count(1))
    return OperatorConfig(
        metrics_host="127.0.0.1", metrics_port=0, resync_seconds=3600,
        reconciler=ReconcilerOptions(suffix=lambda: next(suffixes)),
        leader_election=LeaseConfig(namespace="default", identity=identity, lease_seconds=2,
                                    renew_deadline_seconds=1.5, retry_seconds=0.1),
    )


def _one_leader(operators: list) -> None:
    assert sum(op.leading for op in operators) == 1, [op.leading for op in operators]


class Operators:
    """Several operators started and stopped one by one (each its own kopf thread and loop)."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[contextlib.AbstractAsyncContextManager, Operator]] = {}

    async def start(self, identity: str) -> Operator:
        manager = running_operator(config(identity))
        self.running[identity] = (manager, await manager.__aenter__())
        return self.running[identity][1]

    async def stop(self, operator: Operator) -> None:
        for identity, (manager, running) in list(self.running.items()):
            if running is operator:
                del self.running[identity]
                await manager.__aexit__(None, None, None)

    async def stop_all(self) -> None:
        for _, operator in list(self.running.values()):
            await self.stop(operator)


@pytest.mark.kmock(cls=EmberEmulator)
@pytest.mark.parametrize("run", range(20))
async def test_two_operators_never_make_more_pods_than_asked(
    kmock: EmberEmulator, kubeconfig: Path, run: int
) -> None:
    """A 1+4 cluster under two operators: 5 pods made, never more; every fourth run the
    leader stops, the other takes over and replaces a deleted worker (6 made in all)."""
    declare_resources(kmock)
    before = set(threading.enumerate())
    group = Operators()
    try:
        operators = [await group.start("op-a"), await group.start("op-b")]
        if run % 2 == 0:  # half the runs: a leader is known before the cluster exists
            await eventually(lambda: _one_leader(operators))
        cluster = Cluster(kmock, "default", "demo")
        await cluster.create(cluster_spec(workers=4))
        await eventually(lambda: counts(cluster, 1, 4))
        await eventually(lambda: _one_leader(operators))
        assert kmock.created.get("pods") == 5, kmock.created

        if run % 4 == 0:
            leader = next(op for op in operators if op.leading)
            survivor = next(op for op in operators if op is not leader)
            await group.stop(leader)
            await eventually(lambda: _one_leader([survivor]), timeout=20)
            await cluster.delete_pod(cluster.pod_names("worker")[0])
            await eventually(lambda: counts(cluster, 1, 4))
            assert kmock.created.get("pods") == 6, kmock.created
        else:
            await cluster.patch_spec({"workerGroupSpecs": cluster_spec(workers=2)["workerGroupSpecs"]})
            await eventually(lambda: counts(cluster, 1, 2))
            assert kmock.created.get("pods") == 5, kmock.created
    finally:
        await group.stop_all()
    await no_threads_left(before)
