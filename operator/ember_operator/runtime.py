"""The operator's runtime: its configuration and the objects that live as long as it runs.

:class:`Operator` is created before kopf starts, opened by kopf's startup handler
(API client, handler threads, reconciler, metrics server, periodic resync) and
closed by the cleanup handler, so nothing it made (threads, connections, the
listening port) outlives ``kopf.run``.

With ``leader_election`` set, an elector (its own thread) keeps a Lease; the reconciler
acts only while it holds it, and a new leader catches up with every known cluster.

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
from ember_operator.demand import HeadDemand
from ember_operator.idleness import HeadIdleness
from ember_operator.kube import KubeClient, load_configuration
from ember_operator.leader import LeaderElector, LeaseConfig
from ember_operator.metrics import MetricsServer, OperatorMetrics
from ember_operator.reconciler import Reconciler, ReconcilerOptions, no_demand, no_idleness

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
    #: ask each cluster's head which workers are idlest before scaling down, and (with
    #: in-tree autoscaling) what work is pending (needs the head reachable from the
    #: operator; tests without a head leave it off)
    head_idleness: bool = False
    #: leader election on this Lease (None: act alone, as a single replica must)
    leader_election: LeaseConfig | None = None


def _always() -> bool:
    return True


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
        self._elector: LeaderElector | None = None
        self._election: asyncio.Task[None] | None = None
        self._catchup: asyncio.Task[None] | None = None
        #: the elector's own thread: renewals must not queue behind busy reconciles
        self._election_thread: ThreadPoolExecutor | None = None

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
        if self.config.head_idleness:
            kube = self._kube

            def read_secret(namespace: str, name: str) -> dict | None:
                return kube.get(namespace, "secrets", name)

            if options.idleness is no_idleness:
                options = dataclasses.replace(options, idleness=HeadIdleness(read_secret))
            if options.demand is no_demand:
                options = dataclasses.replace(options, demand=HeadDemand(read_secret))
        may_act: Callable[[], bool] = _always
        if self.config.leader_election is not None:
            self._elector = LeaderElector(self._kube, self.config.leader_election)
            self._election_thread = ThreadPoolExecutor(1, thread_name_prefix="ember-operator-election")
            may_act = self._elector.is_leader
        self._reconciler = Reconciler(self._kube, self.metrics, options=options, may_act=may_act)
        await self.server.start()
        self._resync = asyncio.create_task(self._resync_forever(), name="ember-operator resync")
        if self._elector is not None:
            self._election = asyncio.create_task(self._elect_forever(self._elector), name="ember-operator election")

    @property
    def leading(self) -> bool:
        """Whether this operator may act now (always, without leader election)."""
        return self._elector is None or self._elector.is_leader()

    async def close(self) -> None:
        """Stop the resync and the metrics server, join the threads, drop the connections."""
        for task in (self._election, self._catchup, self._resync):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.server.stop()
        if self._elector is not None and self._election_thread is not None:
            # let a standby take over at once instead of after the lease duration
            await asyncio.get_running_loop().run_in_executor(self._election_thread, self._elector.release)
            self._election_thread.shutdown(wait=True)
        self._election_thread = None
        if self._executor is not None:
            # Handlers never wait on the loop, so joining here is safe; it takes at most
            # the API calls already in flight.
            self._executor.shutdown(wait=True)
        if self._kube is not None:
            self._kube.close()
        self._resync = None
        self._election = None
        self._catchup = None
        self._elector = None
        self._executor = None
        self._kube = None
        self._reconciler = None

    async def _elect_forever(self, elector: LeaderElector) -> None:
        loop = asyncio.get_running_loop()
        leading = False
        while True:
            try:
                now_leading = await loop.run_in_executor(self._election_thread, elector.attempt)
            except Exception as exc:  # keep trying: a standby must stay a candidate
                logger.warning("Leader election round failed: %s", exc)
                now_leading = elector.is_leader()
            if now_leading and not leading:
                # events seen while standing by were not acted on: catch up with every cluster
                # (in its own task, so renewals go on meanwhile)
                self._catchup = asyncio.create_task(self._resync_all(loop), name="ember-operator catch-up")
            leading = now_leading
            await asyncio.sleep(elector.config.retry_seconds)

    async def _resync_all(self, loop: asyncio.AbstractEventLoop) -> None:
        for namespace, name in sorted(self.clusters):
            call = functools.partial(self.reconciler.reconcile, namespace, name,
                                     trigger="timer", coalesce=True)
            try:
                await loop.run_in_executor(self.executor, call)
            except Exception as exc:  # keep resyncing the others
                logger.warning("Periodic reconcile of %s/%s failed: %s", namespace, name, exc)

    async def _resync_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            await self._resync_all(loop)
