"""The endpoint's lifecycle and the NodeMetrics class on its own (with a stand-in agent)."""

from __future__ import annotations

import socket
import threading
import time
import types

import ember
import pytest
from ember_node.main import parse_args
from ember_node.metrics import NodeMetrics

from .helpers import Scrape, free_port, get


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_embedded_endpoint_goes_away_with_the_cluster():
    port = free_port()
    ember.init(num_cpus=1, metrics_port=port)
    try:
        assert get(port, "/healthz")[:3:2] == (200, "ok")
        Scrape(port)
    finally:
        ember.shutdown()
    deadline = time.monotonic() + 60
    while not _refused(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _refused(port)


def test_init_validates_metrics_port():
    with pytest.raises(ValueError, match="metrics_port"):
        ember.init(num_cpus=1, metrics_port=70000)
    with pytest.raises(ValueError, match="metrics_port"):
        ember.init(num_cpus=1, metrics_port="8080")
    assert not ember.is_initialized()


def test_agent_flags():
    args = parse_args(["--session-dir", "/tmp/x"])
    assert args.metrics_port is None and args.metrics_host is None  # None: bind like --host
    args = parse_args(["--session-dir", "/tmp/x", "--metrics-port", "8080", "--metrics-host", "0.0.0.0"])
    assert (args.metrics_port, args.metrics_host) == (8080, "0.0.0.0")


def _fake_agent() -> types.SimpleNamespace:
    arena = types.SimpleNamespace(used=0, capacity=1 << 20)
    table = types.SimpleNamespace(arena=arena, in_store={}, objs={}, spilled_bytes=0)
    return types.SimpleNamespace(
        node_id="n1", tasks={}, workers={}, actors=types.SimpleNamespace(actors={}), table=table,
        totals={"CPU": 2.0}, available={"CPU": 2.0}, stopping=False)


def test_function_names_are_capped():
    m = NodeMetrics(_fake_agent(), max_names=5)
    for i in range(20):
        m.task_submitted(f"fn{i}")
        m.task_finished(f"fn{i}", 0.01, failed=False)
    counts = m.task_counts()
    assert sorted(counts) == ["fn0", "fn1", "fn2", "fn3", "fn4", "other"]
    assert counts["other"] == [15, 15, 0, 0] and counts["fn3"] == [1, 1, 0, 0]
    port = m.serve(0)
    try:
        scrape = Scrape(port)
        assert scrape.label_values("ember_tasks_submitted_total", "name") == {
            "fn0", "fn1", "fn2", "fn3", "fn4", "other"}
        assert scrape.value("ember_tasks", state="finished", name="other") == 15
        assert scrape.value("ember_task_run_seconds_bucket", le="0.01") == 20
        assert scrape.value("ember_task_run_seconds_bucket", le="0.005") == 0
    finally:
        m.close()


def test_grpc_and_auth_counters():
    m = NodeMetrics(_fake_agent())
    m.grpc_request("/ember.Head/Heartbeat", "OK")
    m.grpc_request("/ember.Head/Heartbeat", "OK")
    m.grpc_request("/ember.Head/Heartbeat", "UNAVAILABLE")
    m.auth_failure()
    port = m.serve(0)
    try:
        scrape = Scrape(port)
        method = "/ember.Head/Heartbeat"
        assert scrape.value("ember_grpc_requests_total", method=method, code="OK") == 2
        assert scrape.value("ember_grpc_requests_total", method=method) == 3
        assert scrape.value("ember_grpc_errors_total", method=method) == 1
        assert scrape.value("ember_grpc_auth_failures_total") == 1
    finally:
        m.close()


def test_healthz_reports_a_stopped_or_stalled_loop():
    agent = _fake_agent()
    m = NodeMetrics(agent)
    port = m.serve(0)
    try:
        assert get(port, "/healthz")[0] == 200
        m.loop_alive_at -= 3600
        assert get(port, "/healthz")[0] == 503
        m.loop_alive_at = time.monotonic()
        agent.stopping = True
        assert get(port, "/healthz")[0] == 503
    finally:
        m.close()


def test_close_leaves_no_thread_or_socket():
    m = NodeMetrics(_fake_agent())
    before = set(threading.enumerate())
    port = m.serve(0)
    assert m._server.server_address[0] == "127.0.0.1"  # loopback unless told otherwise
    idle = socket.create_connection(("127.0.0.1", port))  # a client that never sends a request
    try:
        Scrape(port)
        m.close()
    finally:
        idle.close()
    assert m.port is None
    assert _refused(port)
    assert set(threading.enumerate()) <= before


def test_a_collection_error_is_retried_once():
    agent = _fake_agent()
    calls = [0]

    class Flaky(dict):
        def values(self):
            calls[0] += 1
            if calls[0] == 1:
                raise RuntimeError("dictionary changed size during iteration")
            return super().values()

    agent.tasks = Flaky()
    m = NodeMetrics(agent)
    port = m.serve(0)
    try:
        scrape = Scrape(port)
        assert calls[0] == 2
        assert "ember_workers" in scrape.families
    finally:
        m.close()
