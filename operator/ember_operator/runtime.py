"""The operator's runtime: its configuration and the objects that live as long as it runs.

:class:`Operator` is created before kopf starts, opened by kopf's startup handler
(API client, handler threads, reconciler, metrics server, periodic resync) and
closed by the cleanup handler, so nothing it made (threads, connections, the
listening port) outlives ``kopf.run``.

The periodic resync is the operator's own loop rather than a kopf timer: kopf puts a
finalizer on every object with a timer, and a RayCluster should stay deletable (its
objects are garbage-collected through ownerReferences) even when the operator is down.
"""

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import kubernetes

from ember_operator import constants as c
from ember_operator.idleness import HeadIdleness
from ember_operator.kube import KubeClient, load_configuration
from ember_operator.metrics import MetricsServer, OperatorMetrics
from ember_operator.reconciler import Reconciler, ReconcilerOptions, no_idleness

__all__ = ["OperatorConfig", "Operator"]

logger = logging.getLogger(__name__)


@dataclass
class OperatorConfig:
    """How the operator runs. The defaults are the production ones."""

    metrics_host: str = "0.0.0.0"
    metrics_port: int = c.METRICS_PORT  # 0: any free port (tests)
    resync_seconds: float = 30.0  # period of the full reconcile of every known cluster
    workers: int = 8  # threads running the (blocking) handlers and resyncs
    kube_configuration: Callable[[], kubernetes.client.Configuration] = load_configuration
    reconciler: ReconcilerOptions = field(default_factory=ReconcilerOptions)
    #: ask each cluster's head which workers are idlest before scaling down (needs the head
    #: reachable from the operator; tests without a head leave it off)
    head_idleness: bool = False


class Operator:
    """Everything one running operator owns. Open and close it on kopf's event loop."""

    def __init__(self, config: OperatorConfig | None = None) -> None:
        self.config = config or OperatorConfig()
        self.metrics = OperatorMetrics()
        self.server = MetricsServer(self.metrics, host=self.config.metrics_host, port=self.config.metrics_port)
        self.clusters: set[tuple[str, str]] = set()  # (namespace, name) of every RayCluster seen
        self._kube: KubeClient | None = None
        self._reconciler: Reconciler | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._resync: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Between :meth:`open` and :meth:`close`."""
        return self._reconciler is not None

    @property
    def reconciler(self) -> Reconciler:
        """The reconciler (available while running)."""
        if self._reconciler is None:
            raise RuntimeError("the operator is not running")
        return self._reconciler

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The threads kopf runs the synchronous handlers in (available while running)."""
        if self._executor is None:
            raise RuntimeError("the operator is not running")
        return self._executor

    def track(self, namespace: str, name: str) -> None:
        """A RayCluster exists: include it in the periodic resync."""
        self.clusters.add((namespace, name))

    def untrack(self, namespace: str, name: str) -> None:
        """A RayCluster is gone: drop it from the resync, the reconciler and the metrics."""
        self.clusters.discard((namespace, name))
        if self._reconciler is not None:
            self._reconciler.forget(namespace, name)

    async def open(self) -> None:
        """Connect to the API server, start the handler threads, serve metrics, resync."""
        self._executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="ember-operator")
        self._kube = KubeClient(self.config.kube_configuration())
        options = self.config.reconciler
        if self.config.head_idleness and options.idleness is no_idleness:
            kube = self._kube
            options = dataclasses.replace(
                options, idleness=HeadIdleness(lambda ns, name: kube.get(ns, "secrets", name)))
        self._reconciler = Reconciler(self._kube, self.metrics, options=options)
        await self.server.start()
        self._resync = asyncio.create_task(self._resync_forever(), name="ember-operator resync")

    async def close(self) -> None:
        """Stop the resync and the metrics server, join the threads, drop the connections."""
        if self._resync is not None:
            self._resync.cancel()
            await asyncio.gather(self._resync, return_exceptions=True)
        await self.server.stop()
        if self._executor is not None:
            # Handlers never wait on the loop, so joining here is safe; it takes at most
            # the API calls already in flight.
            self._executor.shutdown(wait=True)
        if self._kube is not None:
            self._kube.close()
        self._resync = None
        self._executor = None
        self._kube = None
        self._reconciler = None

    async def _resync_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            for namespace, name in sorted(self.clusters):
                call = functools.partial(self.reconciler.reconcile, namespace, name,
                                         trigger="timer", coalesce=True)
                try:
                    await loop.run_in_executor(self.executor, call)
                except Exception as exc:  # keep resyncing the others
                    logger.warning("Periodic reconcile of %s/%s failed: %s", namespace, name, exc)
