"""The ``ember-operator`` command line, and ``run`` watching chosen namespaces.

The run test uses kmock's emulator of the Kubernetes API server over real HTTP,
because no real API server exists on these machines (see ``ember_kmock.py``).
"""

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ember_kmock import Cluster, EmberEmulator, cluster_spec, counts, declare_resources, eventually
from ember_operator import main as cli
from ember_operator.reconciler import ReconcilerOptions
from ember_operator.runtime import OperatorConfig

pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")


def test_parse_args() -> None:
    args = cli.parse_args(["--namespace", "a", "-n", "b", "--metrics-port", "9090"])
    assert args.namespaces == ["a", "b"] and not args.all_namespaces and args.metrics_port == 9090
    args = cli.parse_args(["--all-namespaces"])
    assert args.all_namespaces and args.namespaces is None and args.metrics_port == 8080
    config = cli.config_from_args(cli.parse_args(["-A", "--resync-seconds", "5"]))
    assert config.resync_seconds == 5 and config.metrics_port == 8080


def test_leader_election_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "ops-ember-operator-abc")
    monkeypatch.setenv("POD_NAMESPACE", "ember-system")
    lease = cli.config_from_args(cli.parse_args(["-A"])).leader_election
    assert lease is not None
    assert (lease.namespace, lease.name, lease.identity) == (
        "ember-system", "ember-operator", "ops-ember-operator-abc")
    lease = cli.lease_config(cli.parse_args(["-A", "--leader-election-namespace", "x",
                                             "--leader-election-id", "mine"]))
    assert lease is not None and (lease.namespace, lease.name) == ("x", "mine")
    assert cli.config_from_args(cli.parse_args(["-A", "--no-leader-elect"])).leader_election is None


@pytest.mark.parametrize("argv", [[], ["-n", "a", "--all-namespaces"]])
def test_a_scope_is_required(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(argv)
    assert "namespace" in capsys.readouterr().err


def test_namespace_scanning_only_for_patterns() -> None:
    assert cli.kopf_settings(cli.parse_args(["-n", "a", "-n", "b"])).scanning.disabled
    assert not cli.kopf_settings(cli.parse_args(["-n", "team-*"])).scanning.disabled
    assert not cli.kopf_settings(cli.parse_args(["-A"])).scanning.disabled


@pytest.mark.kmock(cls=EmberEmulator)
async def test_run_watches_only_the_given_namespaces(
    kmock: EmberEmulator, kubeconfig: Path, names: Iterator[str]
) -> None:
    declare_resources(kmock)
    args = cli.parse_args(["--namespace", "team-a", "--namespace", "team-b"])
    config = OperatorConfig(metrics_host="127.0.0.1", metrics_port=0, resync_seconds=3600,
                            reconciler=ReconcilerOptions(suffix=lambda: next(names)))
    stop, ready = threading.Event(), threading.Event()
    before = set(threading.enumerate())
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(2, thread_name_prefix="operator-main") as pool:
        running = loop.run_in_executor(pool, lambda: cli.run(args, config=config, stop_flag=stop,
                                                              ready_flag=ready))
        try:
            await loop.run_in_executor(pool, ready.wait, 10)
            watched = [Cluster(kmock, ns, "demo") for ns in ("team-a", "team-b")]
            ignored = Cluster(kmock, "team-c", "demo")
            for cluster in [*watched, ignored]:
                await cluster.create(cluster_spec(1))
            for cluster in watched:
                await eventually(lambda cluster=cluster: counts(cluster, 1, 1))
            assert ignored.pods() == [] and ignored.status() == {}
        finally:
            stop.set()
            operator = await running
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]
    with pytest.raises(OSError):  # the metrics port is closed
        socket.create_connection(("127.0.0.1", operator.server.port), timeout=1).close()
