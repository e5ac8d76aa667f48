"""Generator tasks at the agent: values a running generator yields become objects its caller
holds, forwarded to the caller as they come (see ``ember.generators``).

A worker reports each yielded value (YIELDED, with the value inline or written to the store
as task results are); the agent records it as an object held by the task's caller, tells the
caller (ITEM), and counts how many values of the task it has taken. A retried generator runs
again from its start: the values already taken are dropped, so the caller sees each index once.
With backpressure, the caller says how many values it has consumed (CONSUMED); the agent
passes that on to the worker running the task (CREDIT), which pauses while too many are
unconsumed. Nothing here runs for tasks that do not yield.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember import _messages as M
from ember._ids import STREAM_ID_LEN, generator_mode, task_of

UNLIMITED = 1 << 62  # what a caller that dropped its generator has "consumed"


class Streams:
    """Handles YIELDED and CONSUMED; the counts live on the task records (``Task.streamed``,
    ``Task.consumed``, unset until a generator uses them)."""

    def __init__(self, tasks: dict[bytes, Any], table: Any, send: Callable[[Any, tuple], None],
                 note_copy: Callable[[Any, bytes], None]) -> None:
        self.tasks = tasks
        self.table = table
        self.send = send
        self.note_copy = note_copy

    def on_yielded(self, client: Any, msg: tuple) -> None:
        _, tid, index, oid, kind, payload, contained = msg
        task = self.tasks.get(tid)
        rec = client.worker
        owner = task.owner if task is not None else None
        taken = getattr(task, "streamed", 0) if task is not None else 0
        if (task is None or rec is None or task.worker is not rec or index < taken
                or owner.conn.closed or task.cancelled):
            # a value nobody will read: a late one from a worker given up on, a retry's
            # repeat of one the caller has already, or the caller is gone
            self._drop(client, oid, kind, payload)
            consumed = getattr(task, "consumed", 0) if task is not None else 0
            if task is not None and task.worker is rec and consumed:
                self.send(client, (M.CREDIT, tid, consumed))  # a retry starts paused: resume it
            return
        task.streamed = index + 1
        table = self.table
        table.pending(oid, owner.refs)  # the caller holds it, as it holds a task's returns
        table.complete(oid, kind, payload, contained, client.refs)
        if kind == M.STORE:
            self.note_copy(client, oid)
        obj = table.objs.get(oid)
        if obj is None:
            return
        value = obj.size if obj.kind == M.STORE else obj.payload
        self.send(owner, (M.ITEM, tid, index, oid, obj.kind, value))
        if index == 0 and getattr(task, "consumed", 0):  # abandoned before it ran
            self.send(client, (M.CREDIT, tid, task.consumed))

    def on_consumed(self, client: Any, msg: tuple) -> None:
        _, tid, count = msg
        task = self.tasks.get(tid)
        if task is None or task.owner is not client or count <= getattr(task, "consumed", 0):
            return
        task.consumed = count
        rec = task.worker
        if rec is not None and rec.client is not None:
            self.send(rec.client, (M.CREDIT, tid, count))

    def on_abandoned(self, oid: bytes) -> None:
        """Nobody holds a generator task's end any more (its caller dropped the generator, or
        is gone): a generator paused by backpressure runs on to its end, its values dropped."""
        if len(oid) != STREAM_ID_LEN or not generator_mode(oid)[1]:
            return
        task = self.tasks.get(task_of(oid))
        if task is None:
            return
        task.consumed = UNLIMITED
        rec = task.worker
        if rec is not None and rec.client is not None:
            self.send(rec.client, (M.CREDIT, task.tid, UNLIMITED))

    def _drop(self, client: Any, oid: bytes, kind: int, payload: Any) -> None:
        if kind == M.STORE:  # free only what this peer reserved for it
            span = client.refs.creating.pop(oid, None)
            if span is not None:
                self.table.arena.free(*span)
