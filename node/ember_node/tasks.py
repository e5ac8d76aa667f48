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
                 "cancelled", "state", "failed_dep", "namespace", "job")

    def __init__(self, spec: tuple, owner: Any) -> None:
        (self.tid, self.fn_id, self.name, self.args, self.deps, self.rids, self.resources,
         self.max_retries, self.retry_exc, self.contained, self.extra, self.namespace, self.job) = spec
        self.shape = shape_key(self.resources)
        self.owner = owner
        self.missing = 0
        self.worker: Any = None
        self.attempt = 0
        self.cancelled = False
        self.state = QUEUED
        self.failed_dep: Any = None

    def retries_left(self) -> int:
        """-1 for unlimited; otherwise how many more attempts a failure may trigger."""
        if self.max_retries < 0:
            return -1
        return max(self.max_retries - self.attempt, 0)
