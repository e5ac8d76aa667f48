"""The operator's Prometheus metrics and the HTTP endpoint serving them with ``/healthz``.

Metrics (own :class:`~prometheus_client.CollectorRegistry` per operator, so several
operators in one process, as in tests, never share counters):

- ``ember_operator_reconciles_total{trigger}``: reconcile passes run;
- ``ember_operator_reconcile_errors_total{trigger}``: passes that failed;
- ``ember_operator_clusters{state}``: RayClusters known to this operator, by state;
- ``ember_operator_cluster_provision_seconds``: from a cluster's creation until all of
  its desired pods were first ready.

The server is an aiohttp app on kopf's own event loop: started by a startup handler,
stopped by a cleanup handler, so it lives and dies with the operator.
"""

import logging
import threading

import aiohttp.web
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ember_operator import constants as c

__all__ = ["OperatorMetrics", "MetricsServer", "PROVISION_BUCKETS"]

logger = logging.getLogger(__name__)

PROVISION_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600)


class OperatorMetrics:
    """The operator's metrics and the per-cluster state the ``clusters`` gauge is made of."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "ember_operator_reconciles", "Reconcile passes run.", ["trigger"], registry=self.registry
        )
        self.reconcile_errors = Counter(
            "ember_operator_reconcile_errors", "Reconcile passes that failed.", ["trigger"],
            registry=self.registry,
        )
        self.clusters = Gauge(
            "ember_operator_clusters", "RayClusters watched by this operator, by state.", ["state"],
            registry=self.registry,
        )
        self.provision_seconds = Histogram(
            "ember_operator_cluster_provision_seconds",
            "Seconds from a RayCluster's creation until all its desired pods were first ready.",
            buckets=PROVISION_BUCKETS, registry=self.registry,
        )
        self._states: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        for state in c.STATES:
            self.clusters.labels(state=state).set(0)

    def set_state(self, namespace: str, name: str, state: str) -> None:
        """Record a cluster's current state."""
        with self._lock:
            self._states[(namespace, name)] = state
            self._refresh()

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted cluster from the gauge."""
        with self._lock:
            self._states.pop((namespace, name), None)
            self._refresh()

    def _refresh(self) -> None:
        counts = dict.fromkeys(c.STATES, 0)
        for state in self._states.values():
            counts[state] = counts.get(state, 0) + 1
        for state, count in counts.items():
            self.clusters.labels(state=state).set(count)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return prometheus_client.generate_latest(self.registry)


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /healthz`` (200 "ok") over aiohttp."""

    def __init__(self, metrics: OperatorMetrics, *, host: str = "0.0.0.0", port: int = c.METRICS_PORT) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: aiohttp.web.AppRunner | None = None

    async def _metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = self.metrics.render()
        return aiohttp.web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def _healthz(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok\n")

    async def start(self) -> None:
        """Bind and serve; with port 0 the chosen port is stored in :attr:`port`."""
        app = aiohttp.web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get(c.HEALTH_PATH, self._healthz)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else ()  # type: ignore[union-attr]
        if sockets:
            self.port = sockets[0].getsockname()[1]
        logger.info("Serving /metrics and %s on %s:%d", c.HEALTH_PATH, self.host, self.port)

    async def stop(self) -> None:
        """Stop serving and release the port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
