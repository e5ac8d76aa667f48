"""Write ember's Grafana dashboards (JSON) from the compact descriptions below.

    python tools/grafana_dashboards.py           # rewrite charts/ember-operator/dashboards/*.json
    python tools/grafana_dashboards.py --check   # exit 1 when a checked-in file differs

The dashboards read only ember's own metrics (``ember_*`` and the agents' ``process_*``, see
docs/monitoring.md) from a Prometheus data source picked by the ``datasource`` variable, and
filter by the ``node_id`` label (``instance`` for ``process_*``, which carries no node_id).
The operator chart ships them as ConfigMaps for Grafana's dashboard sidecar
(``grafanaDashboards.enabled``); ``tests/metrics/test_dashboards.py`` checks that every metric
they name is one the agents export, and that the files match this script's output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "charts" / "ember-operator" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
NODE = 'node_id=~"$node_id"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: ``kind`` is a Grafana panel type (timeseries, stat, gauge)."""

    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    description: str = ""
    stack: bool = False
    thresholds: tuple[tuple[float, str], ...] = ()  # (from value, color) after green


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    slug: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[str, ...] = field(default=("node_id",))


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def stat(title: str, expr: str, unit: str = "short", description: str = "",
         thresholds: tuple[tuple[float, str], ...] = ()) -> Panel:
    return Panel(title, (q(expr),), unit=unit, kind="stat", width=4, height=4,
                 description=description, thresholds=thresholds)


CLUSTER = Dashboard(
    "cluster", "ember / Cluster",
    "The whole cluster at a glance: nodes, resources, task throughput, the object store.",
    (
        Row("Overview", (
            stat("Nodes alive", 'sum(ember_cluster_nodes{state="alive"})'),
            stat("Nodes dead", 'sum(ember_cluster_nodes{state="dead"})',
                 thresholds=((1, "red"),)),
            stat("CPU in use", f'1 - sum(ember_node_resource_available{{resource="CPU",{NODE}}}) '
                 f'/ clamp_min(sum(ember_node_resource_capacity{{resource="CPU",{NODE}}}), 1e-9)',
                 unit="percentunit", thresholds=((0.9, "orange"),)),
            stat("Tasks running", 'sum(ember_tasks{state="running"})'),
            stat("Tasks waiting", 'sum(ember_tasks{state=~"pending_args|pending_node"})'),
            stat("Actors alive", 'sum(ember_actors{state="ALIVE"})'),
        )),
        Row("Work", (
            Panel("Task throughput", (
                q(f"sum(rate(ember_tasks_finished_total[{RATE}]))", "finished/s"),
                q(f"sum(rate(ember_tasks_failed_total[{RATE}]))", "failed/s"),
                q(f"sum(rate(ember_tasks_submitted_total[{RATE}]))", "submitted/s"),
            ), unit="ops"),
            Panel("Resources used", (
                q(f'sum by (resource) (ember_node_resource_capacity{{resource=~"CPU|GPU",{NODE}}}) '
                  f'- sum by (resource) (ember_node_resource_available{{resource=~"CPU|GPU",{NODE}}})',
                  "{{resource}} used"),
                q(f'sum by (resource) (ember_node_resource_capacity{{resource=~"CPU|GPU",{NODE}}})',
                  "{{resource}} total"),
            )),
            Panel("Workers by state", (
                q(f"sum by (state) (ember_workers{{{NODE}}})", "{{state}}"),
            ), stack=True),
            Panel("Object store use", (
                q(f"sum(ember_object_store_used_bytes{{{NODE}}}) "
                  f"/ clamp_min(sum(ember_object_store_capacity_bytes{{{NODE}}}), 1)", "in use"),
            ), unit="percentunit", description="Above 0.9 while objects spill: the store is "
                                               "too small for the working set."),
        )),
    ),
)

TASKS = Dashboard(
    "tasks", "ember / Tasks",
    "Tasks by state and function: throughput, failures, retries and run time.",
    (
        Row("State", (
            Panel("Tasks by state", (
                q('sum by (state) (ember_tasks{state=~"pending_args|pending_node|running"})',
                  "{{state}}"),
            ), stack=True, description="pending_args: waiting for arguments; pending_node: "
                                       "waiting for a worker or resources."),
            Panel("Running by function", (
                q('sum by (name) (ember_tasks{state="running"})', "{{name}}"),
            ), stack=True),
            Panel("In flight by function", (
                q("sum by (name) (ember_tasks_submitted_total) - sum by (name) "
                  "(ember_tasks_finished_total) - sum by (name) (ember_tasks_failed_total)",
                  "{{name}}"),
            ), description="Submitted and not yet finished or failed."),
            Panel("Waiting for a worker or resources", (
                q('sum by (name) (ember_tasks{state="pending_node"})', "{{name}}"),
            ), stack=True),
        )),
        Row("Throughput and failures", (
            Panel("Finished per second by function", (
                q(f"sum by (name) (rate(ember_tasks_finished_total[{RATE}]))", "{{name}}"),
            ), unit="ops"),
            Panel("Failed per second by function", (
                q(f"sum by (name) (rate(ember_tasks_failed_total[{RATE}]))", "{{name}}"),
            ), unit="ops"),
            Panel("Failure ratio", (
                q("sum(rate(ember_tasks_failed_total[5m])) / clamp_min("
                  "sum(rate(ember_tasks_finished_total[5m])) "
                  "+ sum(rate(ember_tasks_failed_total[5m])), 1e-9)", "failed / ended"),
            ), unit="percentunit"),
            Panel("Retries per second", (
                q(f"sum by (name) (rate(ember_tasks_retried_total[{RATE}]))", "{{name}}"),
            ), unit="ops"),
        )),
        Row("Run time", (
            Panel("Task run time quantiles", (
                q(f"histogram_quantile(0.5, sum by (le) (rate(ember_task_run_seconds_bucket[{RATE}])))",
                  "p50"),
                q(f"histogram_quantile(0.95, sum by (le) (rate(ember_task_run_seconds_bucket[{RATE}])))",
                  "p95"),
                q(f"histogram_quantile(0.99, sum by (le) (rate(ember_task_run_seconds_bucket[{RATE}])))",
                  "p99"),
            ), unit="s"),
            Panel("Mean task run time", (
                q(f"sum(rate(ember_task_run_seconds_sum[{RATE}])) "
                  f"/ clamp_min(sum(rate(ember_task_run_seconds_count[{RATE}])), 1e-9)", "mean"),
            ), unit="s"),
        )),
    ),
    variables=(),
)

ACTORS = Dashboard(
    "actors", "ember / Actors",
    "Actors by state, restarts and the worker processes that host them.",
    (
        Row("Actors", (
            stat("Alive", 'sum(ember_actors{state="ALIVE"})'),
            stat("Pending creation", 'sum(ember_actors{state="PENDING_CREATION"})'),
            stat("Restarting", 'sum(ember_actors{state="RESTARTING"})',
                 thresholds=((1, "orange"),)),
            stat("Dead", 'sum(ember_actors{state="DEAD"})'),
            stat("Worker crashes (1h)", "sum(increase(ember_worker_crashes_total[1h]))",
                 thresholds=((1, "red"),)),
            stat("Memory monitor kills (1h)", "sum(increase(ember_memory_monitor_kills_total[1h]))",
                 thresholds=((1, "red"),)),
            Panel("Actors by state", (
                q("sum by (state) (ember_actors)", "{{state}}"),
            ), width=24),
        )),
        Row("Processes", (
            Panel("Worker starts and crashes per second", (
                q(f"sum(rate(ember_worker_starts_total[{RATE}]))", "started"),
                q(f"sum(rate(ember_worker_crashes_total[{RATE}]))", "crashed"),
                q(f"sum(rate(ember_memory_monitor_kills_total[{RATE}]))", "killed for memory"),
            ), unit="ops", description="An actor restarts after its worker crashes "
                                       "(max_restarts); each restart starts a worker."),
            Panel("Busy workers by node", (
                q(f'sum by (node_id) (ember_workers{{state="busy",{NODE}}})', "{{node_id}}"),
            ), stack=True, description="Each live actor holds one busy worker."),
        )),
    ),
)

OBJECTS = Dashboard(
    "objects", "ember / Objects",
    "The object store: use, spilling to disk, small values, and copies between nodes.",
    (
        Row("Store", (
            Panel("Store used and capacity", (
                q(f"sum by (node_id) (ember_object_store_used_bytes{{{NODE}}})", "{{node_id}} used"),
                q(f"sum by (node_id) (ember_object_store_capacity_bytes{{{NODE}}})",
                  "{{node_id}} capacity"),
            ), unit="bytes"),
            Panel("Objects", (
                q(f"sum by (node_id) (ember_objects{{{NODE}}})", "{{node_id}} tracked"),
                q(f"sum by (node_id) (ember_object_store_objects{{{NODE}}})",
                  "{{node_id}} in the store"),
            )),
            Panel("Small values held by the agent", (
                q(f"sum by (node_id) (ember_object_inline_bytes{{{NODE}}})", "{{node_id}} held"),
                q(f"sum by (node_id) (ember_object_inline_limit_bytes{{{NODE}}})", "{{node_id}} bound"),
            ), unit="bytes"),
            Panel("Spilled to disk now", (
                q(f"sum by (node_id) (ember_object_store_spilled_current_bytes{{{NODE}}})",
                  "{{node_id}}"),
            ), unit="bytes"),
        )),
        Row("Spilling", (
            Panel("Spill and restore throughput", (
                q(f"sum(rate(ember_object_store_spilled_bytes_total{{{NODE}}}[{RATE}]))", "spilled"),
                q(f"sum(rate(ember_object_store_restored_bytes_total{{{NODE}}}[{RATE}]))", "restored"),
            ), unit="Bps"),
            Panel("Spills and restores per second", (
                q(f"sum(rate(ember_object_store_spills_total{{{NODE}}}[{RATE}]))", "spills"),
                q(f"sum(rate(ember_object_store_restores_total{{{NODE}}}[{RATE}]))", "restores"),
            ), unit="ops"),
        )),
        Row("Worker nodes' stores", (
            Panel("Fetches, hits and evictions per second", (
                q(f"sum by (node_id) (rate(ember_node_store_fetches_total{{{NODE}}}[{RATE}]))",
                  "{{node_id}} fetched"),
                q(f"sum by (node_id) (rate(ember_node_store_peer_fetches_total{{{NODE}}}[{RATE}]))",
                  "{{node_id}} from a peer"),
                q(f"sum by (node_id) (rate(ember_node_store_hits_total{{{NODE}}}[{RATE}]))",
                  "{{node_id}} hits"),
                q(f"sum by (node_id) (rate(ember_node_store_evictions_total{{{NODE}}}[{RATE}]))",
                  "{{node_id}} evicted"),
            ), unit="ops"),
            Panel("Bytes fetched and copies served", (
                q(f"sum by (node_id) (rate(ember_node_store_fetched_bytes_total{{{NODE}}}[{RATE}]))",
                  "{{node_id}} fetched B/s"),
                q(f"sum by (node_id) (rate(ember_node_store_copies_served_total{{{NODE}}}[{RATE}]))",
                  "{{node_id}} copies served/s"),
            )),
        )),
    ),
)

NODES = Dashboard(
    "nodes", "ember / Nodes",
    "Each node: resources, memory, workers, the agent process and its gRPC port.",
    (
        Row("Resources", (
            Panel("CPU available and capacity", (
                q(f'ember_node_resource_available{{resource="CPU",{NODE}}}', "{{node_id}} available"),
                q(f'ember_node_resource_capacity{{resource="CPU",{NODE}}}', "{{node_id}} capacity"),
            )),
            Panel("Memory in use", (
                q(f"ember_node_memory_used_bytes{{{NODE}}} "
                  f"/ ember_node_memory_limit_bytes{{{NODE}}}", "{{node_id}}"),
            ), unit="percentunit", description="As the memory monitor reads it; absent when the "
                                               "monitor is off."),
            Panel("Workers by node and state", (
                q(f"sum by (node_id, state) (ember_workers{{{NODE}}})", "{{node_id}} {{state}}"),
            ), stack=True),
            Panel("Worker processes on worker nodes", (
                q(f"ember_node_worker_processes{{{NODE}}}", "{{node_id}}"),
            )),
        )),
        Row("Agent processes", (
            Panel("Agent CPU", (
                q(f'rate(process_cpu_seconds_total{{instance=~"$instance"}}[{RATE}])',
                  "{{instance}}"),
            ), unit="percentunit"),
            Panel("Agent memory (RSS)", (
                q('process_resident_memory_bytes{instance=~"$instance"}', "{{instance}}"),
            ), unit="bytes"),
            Panel("Agent open file descriptors", (
                q('process_open_fds{instance=~"$instance"}', "{{instance}}"),
            )),
            Panel("Heartbeats missed (nodes declared dead)", (
                q("sum(increase(ember_cluster_heartbeats_missed_total[1h]))", "last hour"),
            )),
        )),
        Row("gRPC", (
            Panel("Calls per second by method", (
                q(f"sum by (method) (rate(ember_grpc_requests_total{{{NODE}}}[{RATE}]))", "{{method}}"),
            ), unit="reqps"),
            Panel("Errors and refused tokens per second", (
                q(f"sum by (method, code) (rate(ember_grpc_errors_total{{{NODE}}}[{RATE}]))",
                  "{{method}} {{code}}"),
                q(f"sum(rate(ember_grpc_auth_failures_total{{{NODE}}}[{RATE}]))", "bad token"),
            ), unit="reqps"),
        )),
    ),
    variables=("node_id", "instance"),
)

DASHBOARDS = (CLUSTER, TASKS, ACTORS, OBJECTS, NODES)


def _variable(name: str) -> dict:
    source = {"node_id": "label_values(ember_node_resource_capacity, node_id)",
              "instance": "label_values(process_start_time_seconds, instance)"}[name]
    return {
        "name": name, "label": name, "type": "query", "datasource": DS,
        "query": {"query": source, "refId": f"{name}-values"}, "definition": source,
        "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "sort": 1, "hide": 0,
    }


def _panel(p: Panel, pid: int, x: int, y: int) -> dict:
    defaults: dict = {"unit": p.unit}
    steps = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in p.thresholds]
    defaults["thresholds"] = {"mode": "absolute", "steps": steps}
    if p.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                              "showPoints": "never",
                              "stacking": {"mode": "normal" if p.stack else "none", "group": "A"}}
        defaults["color"] = {"mode": "palette-classic"}
        options: dict = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                         "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description,
        "datasource": DS, "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options,
        "targets": [{"refId": chr(ord("A") + i), "datasource": DS, "expr": t.expr,
                     "legendFormat": t.legend or "__auto", "range": True}
                    for i, t in enumerate(p.queries)],
    }


def render(d: Dashboard) -> dict:
    """The Grafana dashboard model (schema version 39) of ``d``."""
    panels, pid, y = [], 1, 0
    for row in d.rows:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x, line = pid + 1, y + 1, 0, 0
        for p in row.panels:
            if x + p.width > 24:
                x, y, line = 0, y + line, 0
            panels.append(_panel(p, pid, x, y))
            pid, x, line = pid + 1, x + p.width, max(line, p.height)
        y += line
    ds_var = {"name": "datasource", "label": "Data source", "type": "datasource",
              "query": "prometheus", "refresh": 1, "hide": 0, "options": [], "current": {}}
    return {
        "uid": f"ember-{d.slug}", "title": d.title, "description": d.description,
        "tags": ["ember"], "editable": True, "graphTooltip": 1, "schemaVersion": 39,
        "version": 1, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "timezone": "", "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["ember"], "asDropdown": True,
                   "title": "ember dashboards", "includeVars": True, "keepTime": True}],
        "templating": {"list": [ds_var, *(_variable(v) for v in d.variables)]},
        "panels": panels,
    }


@dataclass(frozen=True)
class MetricUse:
    """A metric a dashboard reads, with the label names it selects or groups by."""

    metric: str
    labels: frozenset[str]
    where: str  # dashboard and panel (or variable) title, for messages


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")
_LABEL_KEY = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
# PromQL words that are neither functions (those are followed by "(") nor metrics.
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                       "offset", "and", "or", "unless", "inf", "nan"})


def metric_uses(expr: str, where: str = "") -> list[MetricUse]:
    """The metrics a PromQL expression reads, each with the label names of its selector and of
    the ``by``/``without`` groupings around it (a pure parse, good enough for our dashboards:
    no nested selectors, no subqueries)."""
    grouping: set[str] = set()
    for m in _GROUPING.finditer(expr):
        grouping |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    bare = _GROUPING.sub(" ", expr)
    uses: list[MetricUse] = []
    # Selectors first: each belongs to the identifier right before it.
    pos, parts = 0, []
    for m in _SELECTOR.finditer(bare):
        parts.append((bare[pos:m.start()], m.group(1)))
        pos = m.end()
    parts.append((bare[pos:], None))
    for text, selector in parts:
        text = _RANGE.sub(" ", _STRING.sub(" ", text))
        names = [m.group(1) for m in _IDENT.finditer(text)
                 if not m.group(2) and m.group(1).lower() not in _KEYWORDS]
        for i, name in enumerate(names):
            keys: set[str] = set()
            if selector is not None and i == len(names) - 1 and text.rstrip().endswith(name):
                keys = set(_LABEL_KEY.findall(_STRING.sub('""', selector)))
            uses.append(MetricUse(name, frozenset(keys | grouping), where))
    return uses


def dashboard_metric_uses(model: dict) -> list[MetricUse]:
    """Every metric a rendered dashboard model reads: its panels' queries and its variables'."""
    title = model.get("title", "")
    uses: list[MetricUse] = []
    for panel in model.get("panels", []):
        for target in panel.get("targets", []):
            uses += metric_uses(target["expr"], f"{title} / {panel['title']}")
    for var in model.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query["query"].strip())
            if found:
                uses.append(MetricUse(found.group(1), frozenset({found.group(2)}),
                                      f"{title} / variable {var['name']}"))
    return uses


def files() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"ember-{d.slug}.json": json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in files().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run `python tools/grafana_dashboards.py`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
