"""Task records kept by the agent, built from a SUBMIT message."""

from __future__ import annotations

from typing import Any

from ember._resources import shape_key

QUEUED = 0  # waiting for dependencies or a worker
RUNNING = 1
FINISHED = 2


class Task:
    """One submitted task (or actor call) and its progress."""

    __slots__ = ("tid", "fn_id", "name", "args", "deps", "rids", "resources", "shape", "max_retries",
                 "retry_exc", "contained", "extra", "owner", "missing", "worker", "attempt",
                 "cancelled", "state", "failed_dep", "namespace", "seq", "job", "pending_reason",
                 "started_at", "streamed", "consumed", "strategy")
    # streamed/consumed: a generator task's values taken by the agent and consumed by its
    # caller (ember_node.streams); left unset for other tasks

    def __init__(self, spec: tuple, owner: Any) -> None:
        (self.tid, self.fn_id, self.name, self.args, self.deps, self.rids, self.resources,
         self.max_retries, self.retry_exc, self.contained, self.extra, self.namespace) = spec[:12]
        # an optional 13th field: the scheduling strategy (ember._scheduling); tasks with one
        # queue apart from those without, so one waiting for its node holds up no other
        self.strategy = spec[12] if len(spec) > 12 else None
        self.shape = shape_key(self.resources)
        if self.strategy is not None:
            self.shape += (("strategy", self.strategy),)
        self.owner = owner
        self.missing = 0
        self.worker: Any = None
        self.attempt = 0
        self.cancelled = False
        self.state = QUEUED
        self.failed_dep: Any = None
        self.started_at = 0.0  # when it was last sent to a worker (monotonic clock)
        self.seq = 0  # its number on the worker it is queued on (0: sent to an idle worker)
        self.job = ""  # the job (driver) whose work this is: what it prints goes there (Agent._job_of)
        self.pending_reason: str | None = None  # why it waits, when no node could run it

    def queued_behind(self) -> bool:
        """Sent to a worker but waiting there behind its running task (pipelined)."""
        w = self.worker
        return self.seq > 0 and w is not None and bool(w.inflight) and w.inflight[0] is not self

    def retries_left(self) -> int:
        """-1 for unlimited; otherwise how many more attempts a failure may trigger."""
        if self.max_retries < 0:
            return -1
        return max(self.max_retries - self.attempt, 0)
