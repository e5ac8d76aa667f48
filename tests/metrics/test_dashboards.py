"""The Grafana dashboards (tools/grafana_dashboards.py, charts/ember-operator/dashboards/) read
only metrics the agents really export, with labels those metrics carry.

The exported names come from real agents: a head (`ember start --head --metrics-port`) and a
worker node (`python -m ember_node.worker_node --metrics-port`) after a short workload from a
remote driver (tasks that finish and fail, a call with a wrong token), scraped over HTTP.
TMPDIR points at tmp_path, so the cluster's record and token stay private to the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .helpers import ember_cli, free_port, get, kill_started_under, wait_for

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import grafana_dashboards  # noqa: E402

DASHBOARD_DIR = REPO / "charts" / "ember-operator" / "dashboards"
# Labels Prometheus itself puts on every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
             "summary": ("_sum", "_count"), "info": ("_info",)}


def exported_series(text: str) -> dict[str, set[str] | None]:
    """Series name -> the label names its samples carry (None: the family has no sample yet)."""
    out: dict[str, set[str] | None] = {}
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            out.setdefault(family.name + suffix, None)
        for sample in family.samples:
            labels = out.get(sample.name) or set()
            out[sample.name] = labels | set(sample.labels)
    return out


def dashboard_models() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


# --- pure parts: no process ----------------------------------------------------------------


def test_checked_in_dashboards_are_the_generators_output():
    """`tools/grafana_dashboards.py --check` (also run by `make test`) agrees with the files."""
    assert {name: (DASHBOARD_DIR / name).read_text()
            for name in grafana_dashboards.files()} == grafana_dashboards.files()
    assert sorted(dashboard_models()) == sorted(grafana_dashboards.files())
    assert grafana_dashboards.main(["--check"]) == 0


def test_metric_uses_parses_selectors_groupings_and_functions():
    uses = grafana_dashboards.metric_uses(
        'sum by (resource) (ember_a{resource=~"CPU|GPU",node_id=~"$node_id"}) '
        '/ clamp_min(sum(rate(ember_b_total[$__rate_interval])), 1e-9) > bool up')
    assert [(u.metric, sorted(u.labels)) for u in uses] == [
        ("ember_a", ["node_id", "resource"]),
        ("ember_b_total", ["resource"]),
        ("up", ["resource"]),
    ]
    assert [u.metric for u in grafana_dashboards.metric_uses(
        'histogram_quantile(0.99, sum by (le) (rate(ember_h_bucket{a="}"}[5m])))')] == [
        "ember_h_bucket"]


def test_exported_series_names_counters_and_histograms():
    text = ("# TYPE ember_c counter\n# TYPE ember_h histogram\n"
            'ember_h_bucket{le="1.0",node_id="n"} 1\nember_h_bucket{le="+Inf",node_id="n"} 1\n'
            'ember_h_sum{node_id="n"} 0.5\nember_h_count{node_id="n"} 1\n'
            "# TYPE ember_g gauge\nember_g 3\n")
    assert exported_series(text) == {
        "ember_c_total": None, "ember_h_bucket": {"le", "node_id"}, "ember_h_sum": {"node_id"},
        "ember_h_count": {"node_id"}, "ember_g": set()}


# --- against real agents ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, set[str] | None]:
    """What a head and a worker node export after a small workload (names -> label names)."""
    import ember
    from ember._remote import ping

    tmp_path = tmp_path_factory.mktemp("dashboards")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("EMBER_ADDRESS", None)
    port, head_metrics, node_metrics = free_port(), free_port(), free_port()
    node = None
    try:
        started = ember_cli(env, "start", "--head", "--num-cpus", "1", "--port", str(port),
                         "--metrics-port", str(head_metrics),
                         "--object-store-memory", str(64 << 20))
        assert started.returncode == 0, started.stderr
        token_file = tmp_path / f"ember-{os.getuid()}" / "token"
        (tmp_path / "node").mkdir()
        node = subprocess.Popen(
            [sys.executable, "-m", "ember_node.worker_node", "--address", f"127.0.0.1:{port}",
             "--token-file", str(token_file), "--session-dir", str(tmp_path / "node"),
             "--num-cpus", "1", "--metrics-port", str(node_metrics),
             "--object-store-memory", str(48 << 20)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(head_metrics, lambda s: s.value("ember_cluster_nodes", state="alive") == 2)
        wait_for(node_metrics, lambda s: "ember_node_store_fetches" in s.families)

        ember.init(f"127.0.0.1:{port}", token=token_file.read_text().strip())
        try:
            @ember.remote(max_retries=0)
            def dashboard_probe(x):
                if x < 0:
                    raise ValueError("a failed task for the failure panels")
                return x

            assert ember.get([dashboard_probe.remote(i) for i in range(4)]) == list(range(4))
            with pytest.raises(ValueError):
                ember.get(dashboard_probe.remote(-1))
        finally:
            ember.shutdown()
        with pytest.raises(ConnectionError):
            ping(f"127.0.0.1:{port}", "not-the-token")

        series: dict[str, set[str] | None] = {}
        for metrics_port in (head_metrics, node_metrics):
            status, _, text = get(metrics_port, "/metrics")
            assert status == 200, text
            for name, labels in exported_series(text).items():
                if labels is None:
                    series.setdefault(name, None)
                else:
                    series[name] = (series.get(name) or set()) | labels
        return series
    finally:
        if node is not None:
            node.terminate()
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        ember_cli(env, "stop")
        kill_started_under(tmp_path)


def test_dashboards_read_only_exported_metrics(exported):
    unknown = sorted({f"{use.metric} ({use.where})"
                      for model in dashboard_models().values()
                      for use in grafana_dashboards.dashboard_metric_uses(model)
                      if use.metric not in exported})
    assert not unknown, "dashboards read metrics no agent exports:\n" + "\n".join(unknown)


def test_dashboards_select_labels_the_metrics_carry(exported):
    wrong, unchecked = [], set()
    for model in dashboard_models().values():
        for use in grafana_dashboards.dashboard_metric_uses(model):
            labels = exported.get(use.metric)
            if labels is None:
                unchecked.add(use.metric)
                continue
            missing = use.labels - labels - TARGET_LABELS
            if missing:
                wrong.append(f"{use.metric} has no {sorted(missing)} ({use.where})")
    assert not wrong, "\n".join(wrong)
    # every metric the dashboards read had samples, so each one's labels were checked
    assert not unchecked, f"no samples to check the labels of: {sorted(unchecked)}"
