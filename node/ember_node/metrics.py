"""Prometheus metrics for the node agent.

The agent's event loop calls the cheap event methods (``task_submitted``, ``task_finished``,
...): each is a dict or integer increment or a histogram bucket bump, nothing more, so the
task hot path pays well under a microsecond per event. Everything that describes current
state (tasks by state, workers, actors, the object store, resources) is computed only when
Prometheus scrapes, by a Collector that reads the agent's structures from the HTTP server's
thread. The loop keeps mutating those structures meanwhile, so the collector works on
``list(...)`` copies and retries once when a dict changes size under it.

Every family is named ``ember_*``, carries a ``node_id`` label (the node a sample describes:
the head reports every node's workers and resources, since it schedules them all), and uses
base units. Label values are bounded: no object or task ids, at most ``MAX_NAMES`` distinct
function names (later ones are folded into ``other``), gRPC methods outside ember's services
reported as ``unknown``. The agent process's own CPU and memory come from
``prometheus_client``'s ProcessCollector (``process_*``). A worker node serves a smaller set
(``WorkerNodeMetrics``). See docs/monitoring.md.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ember_node.user_metrics import UserMetrics

log = logging.getLogger("ember.agent")

MAX_NAMES = 200  # distinct function-name label values; the rest are reported as OTHER
OTHER = "other"
# upper bounds (seconds) of the task run-time histogram's buckets; +Inf is added
RUN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
               1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
TASK_STATES = ("pending_args", "pending_node", "running", "finished", "failed")
ACTOR_STATES = ("PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD")
WORKER_STATES = ("idle", "busy", "starting")
STALL_S = 30.0  # /healthz fails when the agent loop has not ticked for this long


def _is_create(task: Any) -> bool:
    extra = task.extra
    return extra is not None and extra[0] == "create"


class _Endpoint:
    """The HTTP side: ``/metrics`` from ``self.registry`` and ``/healthz`` from ``healthy()``."""

    registry: CollectorRegistry
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    def healthy(self) -> bool:
        raise NotImplementedError

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on (useful after ``serve(0)``), None when not serving."""
        return self._server.server_address[1] if self._server is not None else None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` and ``/healthz`` on ``host:port`` from a thread; returns the port."""
        if self._server is not None:
            raise RuntimeError("the metrics endpoint is already being served")
        try:
            server = _Server(host, port, self)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {host}:{port} ({exc}); pick another --metrics-port") from exc
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                  name="ember-metrics", daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return self.port

    def close(self) -> None:
        """Stop the endpoint: no listening socket or server thread survives this."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()  # also joins request threads still answering
        if thread is not None:
            thread.join()


class NodeMetrics(_Endpoint):
    """One agent's metrics: event counters, a scrape-time collector and the HTTP endpoint."""

    def __init__(self, agent: Any, max_names: int = MAX_NAMES) -> None:
        self.agent = agent
        self.node_id: str = agent.node_id
        self.max_names = max_names
        self.registry = CollectorRegistry()
        # function name -> [submitted, finished, failed, retried], for the first max_names
        # names; every later name counts in _other (reported as name="other")
        self._counts: dict[str, list[int]] = {}
        self._other = [0, 0, 0, 0]
        self.run_counts = [0] * (len(RUN_BUCKETS) + 1)  # per bucket, not cumulative; last is +Inf
        self.run_sum = 0.0
        self.worker_starts = 0
        self.worker_crashes = 0
        self.spills = 0
        self.spilled_bytes = 0
        self.restores = 0
        self.restored_bytes = 0
        # gRPC counters are bumped from the server's thread pool, so under a lock
        self._grpc_lock = threading.Lock()
        self.grpc_requests: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.auth_failures = 0
        self.heartbeats_missed = 0
        self.loop_alive_at = time.monotonic()  # the agent loop stamps this every iteration
        self.registry.register(_Collector(self))
        self.user = UserMetrics(self.node_id)  # what user code records with ember.util.metrics
        self.registry.register(self.user)
        ProcessCollector(registry=self.registry)
        table = getattr(agent, "table", None)
        if table is not None:
            table.on_spill = self.spilled
            table.on_restore = self.restored

    # ------------------------------------------------------------------ events (hot path)
    def _slot(self, name: str) -> list[int]:
        """The counters of a function not seen yet: its own, or OTHER's once the cap is hit."""
        if len(self._counts) >= self.max_names:
            return self._other
        slot = self._counts[name] = [0, 0, 0, 0]
        return slot

    def task_submitted(self, name: str) -> None:
        (self._counts.get(name) or self._slot(name))[0] += 1

    def task_finished(self, name: str, seconds: float | None, failed: bool) -> None:
        """A task ended for good (``seconds``: its last run's duration, None if it never ran)."""
        (self._counts.get(name) or self._slot(name))[2 if failed else 1] += 1
        if seconds is not None:
            self.run_counts[bisect_left(RUN_BUCKETS, seconds)] += 1
            self.run_sum += seconds

    def task_retried(self, name: str, seconds: float | None = None) -> None:
        """A task will run again (``seconds``: how long the failed attempt ran, if known)."""
        (self._counts.get(name) or self._slot(name))[3] += 1
        if seconds is not None:
            self.run_counts[bisect_left(RUN_BUCKETS, seconds)] += 1
            self.run_sum += seconds

    def task_counts(self) -> dict[str, list[int]]:
        """name label -> [submitted, finished, failed, retried] (a copy, safe from any thread)."""
        counts = {name: list(c) for name, c in list(self._counts.items())}
        if any(self._other):
            merged = counts.setdefault(OTHER, [0, 0, 0, 0])
            for i, n in enumerate(self._other):
                merged[i] += n
        return counts

    def worker_started(self) -> None:
        self.worker_starts += 1

    def worker_crashed(self) -> None:
        self.worker_crashes += 1

    def worker_lost(self, rec: Any) -> None:
        """A worker process is gone: count a crash unless it exited cleanly or the agent killed
        it on purpose (force-cancelling its task, ending its actor). Call before its record is
        cleared (``rec.inflight``, ``rec.actor``)."""
        if rec.exit_status == 0:
            return
        actor = rec.actor
        if actor is not None and (actor.no_restart or actor.state == "DEAD"):
            return
        for task in rec.inflight:
            if task.cancelled:
                return
        self.worker_crashes += 1

    def spilled(self, nbytes: int) -> None:
        self.spills += 1
        self.spilled_bytes += nbytes

    def restored(self, nbytes: int) -> None:
        self.restores += 1
        self.restored_bytes += nbytes

    def grpc_request(self, method: str, code: str) -> None:
        """One served gRPC call (``method``: the full method name; ``code``: e.g. 'OK')."""
        with self._grpc_lock:
            self.grpc_requests[(method, code)] += 1

    def grpc_interceptor(self) -> Any:
        """A grpc.ServerInterceptor that counts every call by method and final status code.

        Put it first (before the token check) so refused calls are counted too. Method names
        outside the ember services are reported as 'unknown' (a peer picks the name, so it
        must not become a label value as is).
        """
        return _grpc_interceptor(self)

    def auth_failure(self, method: str | None = None) -> None:
        """A call refused for its token (``method`` is accepted for the hook's sake, not a label)."""
        with self._grpc_lock:
            self.auth_failures += 1

    def heartbeat_missed(self) -> None:
        self.heartbeats_missed += 1

    # ------------------------------------------------------------------ health
    def healthy(self) -> bool:
        return not self.agent.stopping and time.monotonic() - self.loop_alive_at < STALL_S

class WorkerNodeMetrics(_Endpoint):
    """A worker node's endpoint (``ember start --address HEAD --metrics-port``).

    The head schedules the whole cluster and reports every node's workers and resources under
    that node's ``node_id``; a worker node adds what only it can see: its worker processes,
    its object store (the copies its workers read), its own CPU and memory (``process_*``),
    and answers ``/healthz`` for its probes.
    """

    def __init__(self, node: Any) -> None:
        self.node = node  # its node_id changes when it registers again: read it at scrape time
        self.registry = CollectorRegistry()
        self.registry.register(_WorkerNodeCollector(self))
        ProcessCollector(registry=self.registry)

    def healthy(self) -> bool:
        return not self.node.stopping


class _WorkerNodeCollector:
    def __init__(self, metrics: WorkerNodeMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("ember_node_worker_processes", "Worker processes alive on this "
                              "worker node.", labels=["node_id"])
        node = self.m.node
        nid = node.node_id
        g.add_metric([nid], len(node.pids))
        yield g
        store = node.store
        if store is None:  # between registrations
            return
        st = store.stats()
        for family, doc, value in (
                ("ember_object_store_used_bytes", "Bytes of the node's store in use.", st["bytes_used"]),
                ("ember_object_store_capacity_bytes", "The node's store capacity.", st["capacity"]),
                ("ember_object_store_objects", "Copies held in the node's store.", len(st["objects"]))):
            g = GaugeMetricFamily(family, doc, labels=["node_id"])
            g.add_metric([nid], value)
            yield g
        for family, doc, value in (
                ("ember_node_store_hits", "Reads served by a copy already on this node.", st["hits"]),
                ("ember_node_store_fetches", "Objects fetched from the head into this node's store.",
                 st["misses"]),
                ("ember_node_store_fetched_bytes", "Bytes fetched from the head into this node's store.",
                 st["fetched_bytes"]),
                ("ember_node_store_evictions", "Copies dropped because the head freed the object.",
                 st["evictions"]),
                ("ember_node_store_peer_fetches", "Of the fetches, those served by another worker "
                 "node's store instead of the head.", st["peer_fetches"]),
                ("ember_node_store_copies_served", "Copies this node's store streamed to other nodes.",
                 st["copies_served"])):
            c = CounterMetricFamily(family, doc, labels=["node_id"])
            c.add_metric([nid], value)
            yield c


# ---------------------------------------------------------------------- collector
class _Collector:
    """Builds every ember_ family when the registry is collected (at scrape time)."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        state = None
        for attempt in (1, 2):
            try:
                state = _read_state(m)
                break
            except RuntimeError as exc:  # a dict changed size while we copied it
                if attempt == 2:
                    log.warning("metrics: could not read the agent's state (%s); "
                                "reporting counters only", exc)
        yield from _counter_families(m)
        if state is not None:
            yield from _state_families(m, state)


def _read_state(m: NodeMetrics) -> dict[str, Any]:
    """Snapshot what the gauges need from the agent (runs in the HTTP server's thread)."""
    from ember_node.tasks import QUEUED, RUNNING
    from ember_node.workers import BUSY, IDLE, STARTING

    agent = m.agent
    known = m._counts
    pending_args: defaultdict[str, int] = defaultdict(int)
    pending_node: defaultdict[str, int] = defaultdict(int)
    running: defaultdict[str, int] = defaultdict(int)
    for task in list(agent.tasks.values()):
        if _is_create(task):  # actor creation is reported by ember_actors
            continue
        st = task.state
        if st == QUEUED or task.queued_behind():
            lab = task.name if task.name in known else OTHER
            if task.missing > 0:
                pending_args[lab] += 1
            else:
                pending_node[lab] += 1
        elif st == RUNNING:
            running[task.name if task.name in known else OTHER] += 1
    # per node: the head schedules every node, so it knows their workers and resources
    local = getattr(agent, "local", None)
    nodes = list(getattr(agent, "nodes", {}).values()) or [local]
    own = m.node_id
    workers = {(own, st): 0 for st in WORKER_STATES}
    names = {IDLE: "idle", BUSY: "busy", STARTING: "starting"}
    for rec in list(agent.workers.values()):
        name = names.get(rec.state)
        if name is not None:
            node = getattr(rec, "node", None)
            key = (node.node_id if node is not None else own, name)
            workers[key] = workers.get(key, 0) + 1
    resources = []  # (node_id, totals, available) for every live node
    alive = dead = 0
    for node in nodes:
        if node is None:
            resources.append((own, dict(agent.totals), dict(agent.available)))
            alive += 1
        elif node.alive:
            resources.append((node.node_id, dict(node.totals), dict(node.available)))
            alive += 1
        else:
            dead += 1
    actors = dict.fromkeys(ACTOR_STATES, 0)
    manager = getattr(agent, "actors", None)
    if manager is not None:
        for actor in list(manager.actors.values()):
            if actor.state in actors:
                actors[actor.state] += 1
    table = agent.table
    arena = table.arena
    monitor = getattr(agent, "memory", None)
    usage = monitor.last_usage if monitor is not None else None
    return {
        "inline_bytes": getattr(table, "inline_bytes", 0),
        "inline_limit": getattr(table, "inline_limit", 0),
        "memory": usage,  # this node's memory usage at the monitor's last check (None: off)
        "oom_kills": monitor.kills if monitor is not None else 0,
        "pending_args": pending_args,
        "pending_node": pending_node,
        "running": running,
        "workers": workers,
        "actors": actors,
        "store_used": arena.used,
        "store_capacity": arena.capacity,
        # an object counts from the moment its writer was given room (put returns right
        # after that, before the agent has read its SEAL): no put is ever missing here
        "store_objects": len(table.in_store) + _objects_being_written(agent),
        "objects": len(table.objs),
        "spilled_now": table.spilled_bytes,
        "resources": resources,
        "nodes": {"alive": alive, "dead": dead},
        "is_head": local is None or local.is_head,
    }


def _objects_being_written(agent: Any) -> int:
    """Store objects that clients were given room for and have not sealed yet."""
    return sum(len(c.refs.creating) for c in list(getattr(agent, "clients", {}).values())
               if getattr(c, "refs", None) is not None)


def _counter_families(m: NodeMetrics) -> Iterator[Metric]:
    nid = m.node_id
    counts = m.task_counts()
    names = sorted(counts)
    for i, family, doc in (
            (0, "ember_tasks_submitted", "Tasks (and actor method calls) submitted to this node."),
            (1, "ember_tasks_finished", "Tasks that ended successfully."),
            (2, "ember_tasks_failed", "Tasks that ended with an error (raised, crashed, cancelled, "
                                      "unschedulable, lost an argument or their actor)."),
            (3, "ember_tasks_retried", "Task attempts retried (each retry counts once).")):
        c = CounterMetricFamily(family, doc, labels=["node_id", "name"])
        for name in names:
            c.add_metric([nid, name], counts[name][i])
        yield c

    h = HistogramMetricFamily("ember_task_run_seconds", "Run time of each task execution, as "
                              "measured by the worker.", labels=["node_id"], unit="seconds")
    run_counts = list(m.run_counts)
    cumulative, buckets = 0, []
    for bound, n in zip(RUN_BUCKETS + (float("inf"),), run_counts, strict=True):
        cumulative += n
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    h.add_metric([nid], buckets, sum_value=m.run_sum)
    yield h

    def single(family: str, doc: str, value: float, unit: str = "") -> Metric:
        c = CounterMetricFamily(family, doc, labels=["node_id"], unit=unit)
        c.add_metric([nid], value)
        return c

    yield single("ember_worker_starts", "Worker processes started.", m.worker_starts)
    yield single("ember_worker_crashes", "Worker processes that died without the agent asking "
                 "them to (a crash, os._exit, the OOM killer, their node dying).", m.worker_crashes)
    yield single("ember_object_store_spills", "Objects evicted from the store to disk (spills).",
                 m.spills)
    yield single("ember_object_store_spilled_bytes", "Bytes spilled from the store to disk.",
                 m.spilled_bytes, "bytes")
    yield single("ember_object_store_restores", "Spilled objects read back into the store.",
                 m.restores)
    yield single("ember_object_store_restored_bytes", "Bytes restored from disk into the store.",
                 m.restored_bytes, "bytes")

    grpc = dict(m.grpc_requests)
    req = CounterMetricFamily("ember_grpc_requests", "gRPC calls served, by method and status code.",
                              labels=["node_id", "method", "code"])
    err = CounterMetricFamily("ember_grpc_errors", "gRPC calls served that ended with a status "
                              "other than OK.", labels=["node_id", "method", "code"])
    for (method, code), n in sorted(grpc.items()):
        req.add_metric([nid, method, code], n)
        if code != "OK":
            err.add_metric([nid, method, code], n)
    yield req
    yield err
    yield single("ember_grpc_auth_failures", "gRPC calls refused for a missing or wrong cluster "
                 "token.", m.auth_failures)


def _state_families(m: NodeMetrics, s: dict[str, Any]) -> Iterator[Metric]:
    nid = m.node_id
    tasks = GaugeMetricFamily(
        "ember_tasks", "Tasks on this node by state and function name: pending_args (waiting for "
        "arguments), pending_node (waiting for a worker or resources), running; finished and "
        "failed are cumulative counts.", labels=["node_id", "state", "name"])
    counts = m.task_counts()
    finished = {name: c[1] for name, c in counts.items()}
    failed = {name: c[2] for name, c in counts.items()}
    current = {"pending_args": s["pending_args"], "pending_node": s["pending_node"],
               "running": s["running"], "finished": finished, "failed": failed}
    names = set(counts)
    for counts in current.values():
        names.update(counts)
    for name in sorted(names):
        for state in TASK_STATES:
            tasks.add_metric([nid, state, name], current[state].get(name, 0))
    yield tasks

    def gauge_by(family: str, doc: str, label: str, values: dict[str, float], unit: str = "") -> Metric:
        g = GaugeMetricFamily(family, doc, labels=["node_id", label], unit=unit)
        for k, v in values.items():
            g.add_metric([nid, k], v)
        return g

    def gauge(family: str, doc: str, value: float, unit: str = "") -> Metric:
        g = GaugeMetricFamily(family, doc, labels=["node_id"], unit=unit)
        g.add_metric([nid], value)
        return g

    yield gauge_by("ember_actors", "Actors on this node by state.", "state", s["actors"])
    workers = GaugeMetricFamily("ember_workers", "Worker processes by state (the head reports "
                                "every node's, each under that node's node_id).",
                                labels=["node_id", "state"])
    for (node_id, state), n in s["workers"].items():
        workers.add_metric([node_id, state], n)
    yield workers
    yield gauge("ember_object_store_used_bytes", "Bytes of the shared-memory object store in use.",
                s["store_used"])
    yield gauge("ember_object_store_capacity_bytes", "Capacity of the shared-memory object store.",
                s["store_capacity"])
    yield gauge("ember_object_store_objects", "Objects held in the shared-memory store (not spilled; "
                "counting ones being written).",
                s["store_objects"])
    yield gauge("ember_objects", "Objects this node tracks (inline, in the store or spilled).",
                s["objects"])
    yield gauge("ember_object_store_spilled_current_bytes", "Bytes of objects currently spilled to "
                "disk.", s["spilled_now"])
    yield gauge("ember_object_inline_bytes", "Bytes of small values held in the agent's own memory "
                "(past the bound they go to the shared-memory store).", s["inline_bytes"])
    yield gauge("ember_object_inline_limit_bytes", "The bound on small values held in the agent's "
                "memory (EMBER_INLINE_OBJECTS_MAX_BYTES).", s["inline_limit"])
    usage = s["memory"]
    if usage is not None:
        yield gauge("ember_node_memory_used_bytes", "Memory in use on this node, as the memory monitor "
                    "reads it (its memory cgroup, or the machine, whichever is closer to full).", usage.used)
        yield gauge("ember_node_memory_limit_bytes", "The memory limit the monitor's threshold "
                    "applies to (the cgroup's limit, or the machine's memory).", usage.total)
    kills = CounterMetricFamily("ember_memory_monitor_kills", "Workers the memory monitor killed "
                                "because a node's memory usage was over the threshold.", labels=["node_id"])
    kills.add_metric([nid], s["oom_kills"])
    yield kills
    capacity = GaugeMetricFamily("ember_node_resource_capacity", "Resources a node offers (CPU, "
                                 "GPU, memory in bytes, custom); the head reports every live node.",
                                 labels=["node_id", "resource"])
    available = GaugeMetricFamily("ember_node_resource_available", "Resources of a node not held "
                                  "by running tasks and actors.", labels=["node_id", "resource"])
    for node_id, totals, avail in s["resources"]:
        for k, v in totals.items():
            capacity.add_metric([node_id, k], v)
            available.add_metric([node_id, k], max(avail.get(k, 0.0), 0.0))
    yield capacity
    yield available
    if s["is_head"]:
        yield gauge_by("ember_cluster_nodes", "Nodes known to the head, by state.", "state",
                       s["nodes"])
        c = CounterMetricFamily("ember_cluster_heartbeats_missed", "Node heartbeats the head "
                                "expected and did not get.", labels=["node_id"])
        c.add_metric([nid], m.heartbeats_missed)
        yield c


# ---------------------------------------------------------------------- gRPC
def _grpc_interceptor(metrics: NodeMetrics) -> Any:
    import grpc  # only agents that serve gRPC pay for the import
    from ember._proto import node_pb2

    known = {f"/{svc.full_name}/{m.name}" for svc in node_pb2.DESCRIPTOR.services_by_name.values()
             for m in svc.methods}
    record = metrics.grpc_request

    def code_of(context: Any, default: str) -> str:
        code = context.code()
        return code.name if code is not None else default

    def wrap(behavior: Callable, method: str, streaming: bool) -> Callable:
        if streaming:
            def wrapped_stream(request: Any, context: Any) -> Iterator[Any]:
                try:
                    yield from behavior(request, context)
                except GeneratorExit:
                    record(method, code_of(context, "CANCELLED"))
                    raise
                except BaseException:
                    record(method, code_of(context, "UNKNOWN"))
                    raise
                record(method, code_of(context, "OK"))
            return wrapped_stream

        def wrapped(request: Any, context: Any) -> Any:
            try:
                response = behavior(request, context)
            except BaseException:
                record(method, code_of(context, "UNKNOWN"))
                raise
            record(method, code_of(context, "OK"))
            return response
        return wrapped

    builders = (("unary_unary", False, grpc.unary_unary_rpc_method_handler),
                ("unary_stream", True, grpc.unary_stream_rpc_method_handler),
                ("stream_unary", False, grpc.stream_unary_rpc_method_handler),
                ("stream_stream", True, grpc.stream_stream_rpc_method_handler))

    class MetricsInterceptor(grpc.ServerInterceptor):
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = continuation(details)
            method = details.method if details.method in known else "unknown"
            if handler is None:
                record(method, "UNIMPLEMENTED")
                return None
            for kind, streaming, build in builders:
                behavior = getattr(handler, kind)
                if behavior is not None:
                    return build(wrap(behavior, method, streaming),
                                 request_deserializer=handler.request_deserializer,
                                 response_serializer=handler.response_serializer)
            return handler

    return MetricsInterceptor()


# ---------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # a client that connects and sends nothing does not pin a thread forever
    server_version = "ember-metrics"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        metrics = self.server.metrics
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            try:
                body = encoder(metrics.registry)
            except Exception as exc:  # noqa: BLE001 - report it rather than drop the connection
                log.exception("metrics: scrape failed")
                self._reply(500, f"scrape failed: {exc}\n".encode(), "text/plain; charset=utf-8")
                return
            self._reply(200, body, content_type)
        elif path == "/healthz":
            if metrics.healthy():
                self._reply(200, b"ok", "text/plain; charset=utf-8")
            else:
                self._reply(503, b"agent loop stopped or stalled", "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins request threads: nothing is left behind

    def __init__(self, host: str, port: int, metrics: _Endpoint) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.metrics = metrics
        self._active: set[socket.socket] = set()
        self._active_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            self._active.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._active_lock:
            self._active.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        # a client still connected (or one that never sends its request) must not hold us up
        with self._active_lock:
            active = list(self._active)
        for sock in active:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        super().server_close()
