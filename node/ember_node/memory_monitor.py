"""The memory monitor: before the kernel's OOM killer acts, kill one task's worker.

When this node's memory use (``ember_node.memory_usage``: the tightest of its memory
cgroup and the machine) reaches the threshold, the monitor kills the worker of one running
task, chosen as Ray chooses: a task that may be retried before one that may not, the newest
first, and actors only when no plain task is left. It then waits for that worker to be gone
before it kills another. The task is retried if it has retries left (``max_retries``), else
it fails with ``OutOfMemoryError`` naming the task, the node's usage and the setting.

Settings (environment of the node agent; Ray's names work too):

``EMBER_MEMORY_USAGE_THRESHOLD`` (``RAY_memory_usage_threshold``)
    fraction of the memory limit at which the monitor acts, default 0.95.
``EMBER_MEMORY_MONITOR_REFRESH_MS`` (``RAY_memory_monitor_refresh_ms``)
    how often it reads the usage, default 250; 0 turns the monitor off.

It watches every node of the cluster from the head: the head reads its own usage, and each
worker node reads its own the same way and sends it with its heartbeat (once a second), to
which the head answers with a kill of one of that node's workers.

The choice is a pure function (``decide``); ``MemoryMonitor`` applies it to each node's
view, on the agent's loop thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ember_node.memory_usage import MemoryUsage, UsageReader
from ember_node.store import fmt_bytes
from ember_node.workers import BUSY, NodeRec, WorkerRec

log = logging.getLogger("ember.memory")

THRESHOLD_VAR = "EMBER_MEMORY_USAGE_THRESHOLD"
REFRESH_VAR = "EMBER_MEMORY_MONITOR_REFRESH_MS"
RAY_THRESHOLD_VAR = "RAY_memory_usage_threshold"
RAY_REFRESH_VAR = "RAY_memory_monitor_refresh_ms"
DEFAULT_THRESHOLD = 0.95
DEFAULT_REFRESH_MS = 250
KILL_WAIT_S = 10.0  # a killed worker not gone after this long no longer holds up the next kill
REPORT_STALE_S = 5.0  # a worker node's reading older than this is not acted on
WARN_EVERY_S = 30.0  # how often to say that a node is over the threshold with nothing to kill


@dataclass(frozen=True)
class MonitorSettings:
    """``threshold``: fraction of the limit at which to act; ``refresh_s``: 0 when off."""

    threshold: float = DEFAULT_THRESHOLD
    refresh_s: float = DEFAULT_REFRESH_MS / 1000

    @property
    def enabled(self) -> bool:
        return self.refresh_s > 0


def settings_from_env(env: Mapping[str, str]) -> MonitorSettings:
    """The monitor's settings from an environment; a bad value raises ValueError naming it."""

    def value(name: str, ray_name: str, default: float) -> tuple[str, float]:
        for var in (name, ray_name):
            text = env.get(var)
            if text is not None and text.strip():
                try:
                    return var, float(text)
                except ValueError:
                    raise ValueError(f"{var}={text!r} is not a number") from None
        return name, default

    tvar, threshold = value(THRESHOLD_VAR, RAY_THRESHOLD_VAR, DEFAULT_THRESHOLD)
    if not 0 < threshold <= 1:
        raise ValueError(f"{tvar}={threshold:g} must be a fraction of the memory limit, "
                         f"more than 0 and at most 1 (default {DEFAULT_THRESHOLD})")
    rvar, refresh_ms = value(REFRESH_VAR, RAY_REFRESH_VAR, DEFAULT_REFRESH_MS)
    if refresh_ms < 0:
        raise ValueError(f"{rvar}={refresh_ms:g} must be 0 (monitor off) or a positive number "
                         f"of milliseconds (default {DEFAULT_REFRESH_MS})")
    return MonitorSettings(threshold, refresh_ms / 1000)


@dataclass(frozen=True)
class Candidate:
    """A running task the monitor may kill. ``started``: when (larger is newer)."""

    worker: Any  # the agent's record of the worker (opaque here)
    pid: int
    task_name: str
    retriable: bool
    actor: bool
    started: float


@dataclass(frozen=True)
class KillDecision:
    victim: Candidate
    usage: MemoryUsage
    message: str


def choose_victim(candidates: Iterable[Candidate]) -> Candidate | None:
    """Ray's order: plain tasks before actors, retriable before not, newest first."""
    return min(candidates, key=lambda c: (c.actor, not c.retriable, -c.started), default=None)


def oom_message(victim: Candidate, usage: MemoryUsage, threshold: float) -> str:
    """What the killed task's caller reads: the task, the node's usage, the setting."""
    kind = "actor task" if victim.actor else ("retriable task" if victim.retriable else "task")
    return (
        f"task {victim.task_name} (worker pid {victim.pid}) was killed by ember's memory monitor: "
        f"the node's memory usage, {fmt_bytes(usage.used)} of {fmt_bytes(usage.total)} "
        f"({usage.fraction:.0%}, from {usage.source}), was over the threshold of {threshold:.0%} "
        f"({THRESHOLD_VAR}={threshold:g}), and it was the newest {kind} running there. "
        f"Use less memory per task, run fewer at once (ask for more num_cpus or memory per "
        f"task), give the node more memory, or raise {THRESHOLD_VAR}; {REFRESH_VAR}=0 turns "
        f"the monitor off (the kernel's OOM killer may then kill any process)."
    )


def decide(usage: MemoryUsage | None, threshold: float, candidates: Iterable[Candidate],
           kill_pending: bool) -> KillDecision | None:
    """Whom to kill now, if anyone: nobody below the threshold, or while an earlier kill is
    still on its way (its memory is not freed yet)."""
    if usage is None or kill_pending or usage.fraction < threshold:
        return None
    victim = choose_victim(candidates)
    if victim is None:
        return None
    return KillDecision(victim, usage, oom_message(victim, usage, threshold))


@dataclass(frozen=True)
class NodeView:
    """One node as the monitor checks it: its usage now (None: unknown) and what runs there."""

    node: Any
    usage: MemoryUsage | None
    candidates: list[Candidate]


class MemoryMonitor:
    """Checks every ``refresh_s`` and kills through ``kill(worker)`` on nodes over the threshold.

    The agent's own node is read through ``reader``; a worker node reports its reading with
    each heartbeat (``note_report``), and a report older than ``REPORT_STALE_S`` is not used."""

    def __init__(self, settings: MonitorSettings, reader: UsageReader,
                 kill: Callable[[Any], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.reader = reader
        self._kill = kill
        self._clock = clock
        self._next = 0.0
        self._pending: dict[Any, tuple[Any, float]] = {}  # node -> (victim on its way out, since)
        self._reports: dict[Any, tuple[MemoryUsage, float]] = {}  # worker node -> (reading, when)
        self._causes: dict[Any, str] = {}  # worker -> why it was killed
        self._warned: dict[Any, float] = {}  # node -> when we last said nothing could be killed
        self.kills = 0
        self.last_usage: MemoryUsage | None = None  # this node's, at the last check

    def due(self, now: float) -> bool:
        return self.settings.enabled and now >= self._next

    def note_report(self, node: Any, usage: MemoryUsage) -> None:
        """A worker node's own reading (it reads its cgroup the same way)."""
        self._reports[node] = (usage, self._clock())

    def read_local(self) -> MemoryUsage | None:
        self.last_usage = self.reader.read()
        return self.last_usage

    def reported(self, node: Any) -> MemoryUsage | None:
        """A worker node's last reading, if recent enough to act on."""
        report = self._reports.get(node)
        if report is None or self._clock() - report[1] > REPORT_STALE_S:
            return None
        return report[0]

    def forget(self, node: Any) -> None:
        """A node is gone."""
        self._reports.pop(node, None)
        self._pending.pop(node, None)
        self._warned.pop(node, None)

    def tick(self, views: Iterable[NodeView]) -> list[KillDecision]:
        """One check (call when ``due``): on each node over the threshold, kill one candidate."""
        now = self._clock()
        self._next = now + self.settings.refresh_s
        decisions = []
        for view in views:
            pending = self._pending.get(view.node)
            if pending is not None:
                victim, since = pending
                if all(c.worker is not victim for c in view.candidates) or now - since > KILL_WAIT_S:
                    del self._pending[view.node]
            decision = decide(view.usage, self.settings.threshold, view.candidates,
                              view.node in self._pending)
            if decision is None:
                self._maybe_warn_idle(view, now)
                continue
            victim = decision.victim.worker
            log.warning("%s", decision.message)
            self._causes[victim] = decision.message
            self._pending[view.node] = (victim, now)
            self.kills += 1
            self._kill(victim)
            decisions.append(decision)
        return decisions

    def _maybe_warn_idle(self, view: NodeView, now: float) -> None:
        """Over the threshold with no task to kill: say so, at most every WARN_EVERY_S."""
        usage = view.usage
        if (usage is None or view.candidates or usage.fraction < self.settings.threshold
                or now - self._warned.get(view.node, -WARN_EVERY_S) < WARN_EVERY_S):
            return
        self._warned[view.node] = now
        log.warning("memory usage %s of %s (%.0f%%, from %s) is over the threshold of %.0f%% (%s), "
                    "but no task or actor runs there to kill: the memory is held by other processes "
                    "(drivers, the agent's objects)", fmt_bytes(usage.used), fmt_bytes(usage.total),
                    usage.fraction * 100, usage.source, self.settings.threshold * 100, THRESHOLD_VAR)

    def kill_cause(self, worker: Any) -> str | None:
        """Why the monitor killed ``worker`` (None if it did not); asked once, when it is gone."""
        return self._causes.pop(worker, None)


def node_views(monitor: MemoryMonitor, local: NodeRec, nodes: Iterable[NodeRec],
               workers: Iterable[WorkerRec]) -> list[NodeView]:
    """What the monitor checks: every live node, its usage, and its workers it may kill."""
    by_node: dict[NodeRec, list[Candidate]] = {}
    for cand in running(workers):
        by_node.setdefault(cand.worker.node, []).append(cand)
    views = []
    for node in nodes:
        if not node.alive:
            monitor.forget(node)
            continue
        usage = monitor.read_local() if node is local else monitor.reported(node)
        views.append(NodeView(node, usage, by_node.get(node, [])))
    return views


def running(workers: Iterable[WorkerRec]) -> list[Candidate]:
    """The workers the monitor may kill: those running a task, and actors (an actor holds
    its memory between calls too)."""
    out = []
    for rec in workers:
        if not rec.pid or rec.state != BUSY:
            continue
        actor = rec.actor
        if rec.inflight:
            task = rec.inflight[0]
            name, started, retriable = task.name, task.started_at, task.retries_left() != 0
        elif actor is not None:
            name, started, retriable = f"{actor.class_name} (an idle actor)", rec.idle_since, False
        else:
            continue
        if actor is not None:
            most = actor.spec.get("max_restarts", 0)
            retriable = most < 0 or actor.restarts < most
        out.append(Candidate(rec, rec.pid, name, retriable, actor is not None, started))
    return out
