"""The head's bounded history of finished and failed tasks and of dead actors.

Recording is on the task path, so it costs one append of a small typed tuple to a bounded
deque (the oldest entry drops out); turning records into rows (wall-clock times, the error
text read from the error value without unpickling it) happens only when someone asks.
The bounds default to 10,000 each and come from ``EMBER_TASK_HISTORY`` and
``EMBER_ACTOR_HISTORY`` (0 keeps none).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

from ember._serialization import pickle_strings

DEFAULT_HISTORY = 10_000
ERROR_KEEP = 16 * 1024  # bytes of an error value kept to describe it later
TASK_TYPES = {None: "NORMAL_TASK", "create": "ACTOR_CREATION_TASK", "call": "ACTOR_TASK"}


class TaskRecord(NamedTuple):
    """A task that ended: times are ``time.monotonic()`` readings (start 0.0: never ran)."""
    task_id: bytes
    name: str
    failed: bool
    kind: str | None  # None, "create" or "call" (Task.extra[0])
    start: float
    end: float
    node_id: str | None
    worker_pid: int | None
    attempt: int
    error: bytes | None  # the start of the serialized error value, for a failed task


class ActorRecord(NamedTuple):
    """An actor that died."""
    actor_id: bytes
    class_name: str
    name: str
    node_id: str | None
    pid: int | None
    restarts: int
    death_cause: str
    end: float  # time.monotonic()


def limits_from_env(env: Mapping[str, str]) -> tuple[int, int]:
    """(task bound, actor bound) from EMBER_TASK_HISTORY / EMBER_ACTOR_HISTORY."""
    def bound(var: str) -> int:
        raw = env.get(var, "").strip()
        if not raw:
            return DEFAULT_HISTORY
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not a whole number: set it to how many "
                             f"entries the head keeps (default {DEFAULT_HISTORY})") from None
        if value < 0:
            raise ValueError(f"{var}={raw!r} is negative: set it to 0 or more")
        return value
    return bound("EMBER_TASK_HISTORY"), bound("EMBER_ACTOR_HISTORY")


def error_message(blob: bytes | None) -> str:
    """The text of a serialized error (a remote traceback, or the agent's own message):
    the longest string in it, read without unpickling."""
    if not blob:
        return ""
    strings = pickle_strings(blob)
    return max(strings, key=len, default="").strip()


def short_error(message: str) -> str:
    """One line for a table: the last non-empty line of a traceback (``ValueError: boom``)."""
    lines = [ln for ln in message.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


class History:
    """Bounded history; ``clock`` and ``wall`` are injectable for tests."""

    def __init__(self, max_tasks: int = DEFAULT_HISTORY, max_actors: int = DEFAULT_HISTORY,
                 clock: Any = time.monotonic, wall: Any = time.time) -> None:
        self.tasks: deque[TaskRecord] = deque(maxlen=max_tasks)
        self.actors: deque[ActorRecord] = deque(maxlen=max_actors)
        self.clock = clock
        self._wall_offset = wall() - clock()  # monotonic reading + offset = Unix time

    def task_ended(self, task: Any, blob: bytes | None = None, failed: bool = False) -> None:
        """Record ``task`` (an ``ember_node.tasks.Task``) as ended; ``blob`` is its error value."""
        w = task.worker
        extra = task.extra
        self.tasks.append(TaskRecord(
            task.tid, task.name, failed or blob is not None, extra[0] if extra else None,
            task.started_at, self.clock(), w.node.node_id if w is not None else None,
            w.pid if w is not None else None, task.attempt,
            bytes(blob[:ERROR_KEEP]) if blob is not None else None))

    def actor_died(self, actor: Any) -> None:
        """Record ``actor`` (an ``ember_node.actors.Actor``) as dead."""
        w = actor.worker
        self.actors.append(ActorRecord(
            actor.aid, actor.class_name, actor.key[1] if actor.key else "",
            w.node.node_id if w is not None else None, w.pid if w is not None else None,
            actor.restarts, str(actor.death_cause or ""), self.clock()))

    def _ms(self, reading: float) -> float:
        return (reading + self._wall_offset) * 1000.0

    def task_rows(self) -> list[dict[str, Any]]:
        """Ended tasks as state rows (Ray's field names where they exist), oldest first."""
        rows = []
        for r in list(self.tasks):
            message = error_message(r.error) if r.failed else ""
            ran = r.start > 0.0
            rows.append({
                "task_id": r.task_id.hex(), "name": r.name,
                "state": "FAILED" if r.failed else "FINISHED",
                "type": TASK_TYPES.get(r.kind, "NORMAL_TASK"),
                "node_id": r.node_id, "worker_pid": r.worker_pid, "attempt": r.attempt,
                "start_time_ms": self._ms(r.start) if ran else None,
                "end_time_ms": self._ms(r.end),
                "duration_s": round(r.end - r.start, 6) if ran else None,
                "error": short_error(message), "error_message": message,
                "pending_reason": "",
            })
        return rows

    def actor_rows(self) -> list[dict[str, Any]]:
        """Dead actors as state rows, oldest first."""
        return [{"actor_id": r.actor_id.hex(), "class_name": r.class_name, "state": "DEAD",
                 "name": r.name, "node_id": r.node_id, "pid": r.pid, "restarts": r.restarts,
                 "death_cause": r.death_cause, "end_time_ms": self._ms(r.end)}
                for r in list(self.actors)]
