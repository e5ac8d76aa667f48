"""`ember start --head --metrics-port`: the head's endpoint, and auth failures of its gRPC port.

TMPDIR points at tmp_path, so the started cluster's record and token stay private to the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .helpers import Scrape, free_port, get, wait_for
from .helpers import ember_cli as _ember
from .helpers import kill_started_under as _kill_started_under


@pytest.fixture
def head(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("EMBER_ADDRESS", None)
    port, metrics_port = free_port(), free_port()
    started = _ember(env, "start", "--head", "--num-cpus", "1", "--port", str(port),
                     "--metrics-port", str(metrics_port), "--object-store-memory", str(64 << 20))
    try:
        assert started.returncode == 0, started.stderr
        token = (tmp_path / f"ember-{os.getuid()}" / "token").read_text().strip()
        yield port, metrics_port, token
    finally:
        _ember(env, "stop")
        _kill_started_under(tmp_path)


def test_head_serves_metrics_and_counts_auth_failures(head):
    from ember._remote import ping

    port, metrics_port, token = head
    assert get(metrics_port, "/healthz")[:3:2] == (200, "ok")
    scrape = Scrape(metrics_port)
    assert scrape.value("ember_cluster_nodes", state="alive") == 1
    assert scrape.value("ember_grpc_auth_failures_total") == 0
    for _ in range(2):
        with pytest.raises(ConnectionError, match="refused the token"):
            ping(f"127.0.0.1:{port}", "not-the-token")
    scrape = Scrape(metrics_port)
    assert scrape.value("ember_grpc_auth_failures_total") == 2
    method = "/ember.v1.Node/Ping"
    assert scrape.value("ember_grpc_requests_total", method=method, code="UNAUTHENTICATED") == 2
    assert scrape.value("ember_grpc_errors_total", method=method, code="UNAUTHENTICATED") == 2
    ping(f"127.0.0.1:{port}", token)
    assert Scrape(metrics_port).value("ember_grpc_requests_total", method=method, code="OK") == 1


def test_remote_driver_session_is_counted(head):
    import ember

    port, metrics_port, token = head
    ember.init(f"127.0.0.1:{port}", token=token)
    try:
        @ember.remote
        def remote_square(x):
            return x * x

        assert ember.get([remote_square.remote(i) for i in range(10)]) == [i * i for i in range(10)]
        scrape = Scrape(metrics_port)
        name = scrape.name_label("remote_square")
        assert scrape.value("ember_tasks_finished_total", name=name) == 10
    finally:
        ember.shutdown()
    # two sessions: the driver's own, and the one that brings it what its tasks print
    scrape = wait_for(metrics_port, lambda s: s.value("ember_grpc_requests_total",
                                                      method="/ember.v1.Node/Session") == 2)
    assert scrape.value("ember_grpc_errors_total", method="/ember.v1.Node/Session") == 0


def test_endpoint_closes_with_the_head(tmp_path):
    import socket

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    metrics_port = free_port()
    started = _ember(env, "start", "--head", "--num-cpus", "1", "--port", str(free_port()),
                     "--metrics-port", str(metrics_port), "--object-store-memory", str(64 << 20))
    try:
        assert started.returncode == 0, started.stderr
        assert get(metrics_port, "/healthz")[0] == 200
        assert _ember(env, "stop").returncode == 0
    finally:
        _kill_started_under(tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", metrics_port)) != 0:
                return
        time.sleep(0.1)
    pytest.fail("the metrics port still accepts connections after `ember stop`")


def test_worker_node_endpoint_and_head_node_counts(tmp_path):
    """A worker node joins: the head reports 2 alive nodes and the node's resources; a node
    that stops heartbeating (SIGSTOP) counts as a missed heartbeat and a dead node."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "EMBER_HEARTBEAT_TIMEOUT_S": "2"}
    port, head_metrics, node_metrics = free_port(), free_port(), free_port()
    started = _ember(env, "start", "--head", "--num-cpus", "1", "--port", str(port),
                     "--metrics-port", str(head_metrics), "--object-store-memory", str(64 << 20))
    node = None
    try:
        assert started.returncode == 0, started.stderr
        token_file = tmp_path / f"ember-{os.getuid()}" / "token"
        (tmp_path / "node").mkdir()
        node = subprocess.Popen(
            [sys.executable, "-m", "ember_node.worker_node", "--address", f"127.0.0.1:{port}",
             "--token-file", str(token_file), "--session-dir", str(tmp_path / "node"),
             "--num-cpus", "3", "--metrics-port", str(node_metrics),
             "--object-store-memory", str(48 << 20)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scrape = wait_for(head_metrics, lambda s: s.value("ember_cluster_nodes", state="alive") == 2)
        cpus = {s.labels["node_id"]: s.value for s in scrape.samples
                if s.name == "ember_node_resource_capacity" and s.labels["resource"] == "CPU"}
        assert sorted(cpus.values()) == [1, 3]
        node_scrape = wait_for(node_metrics, lambda s: s.value("ember_node_worker_processes") >= 1)
        node_id = node_scrape.label_values("ember_node_worker_processes", "node_id").pop()
        assert cpus[node_id] == 3
        assert node_scrape.value("process_resident_memory_bytes") > 0
        assert node_scrape.value("ember_object_store_capacity_bytes", node_id=node_id) == 48 << 20
        assert node_scrape.value("ember_node_store_fetches_total", node_id=node_id) == 0
        assert node_scrape.value("ember_node_store_peer_fetches_total", node_id=node_id) == 0
        assert get(node_metrics, "/healthz")[:3:2] == (200, "ok")
        wait_for(head_metrics, lambda s: s.value("ember_workers", node_id=node_id) >= 1)

        node.send_signal(signal.SIGSTOP)
        scrape = wait_for(head_metrics, lambda s: s.value("ember_cluster_nodes", state="dead") == 1)
        assert scrape.value("ember_cluster_heartbeats_missed_total") == 1
        assert scrape.value("ember_node_resource_capacity", node_id=node_id) == 0  # dead: not listed
    finally:
        if node is not None:
            node.send_signal(signal.SIGCONT)
            node.terminate()
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        _ember(env, "stop")
        _kill_started_under(tmp_path)
