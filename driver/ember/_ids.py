"""Identifiers made locally, without asking anyone.

A task id is 16 bytes: 8 random bytes per process, then an 8-byte counter. An object id is
the task id that produces it plus a 2-byte return index; ``put`` objects use a task id of
their own with index 0xFFFF.

Generator tasks (see ``ember.generators``) name their objects from the task id too:
- a streaming generator's own object (it completes when the generator ends, holding the number
  of items) is the task id, index ``STREAM_INDEX``, then a 4-byte backpressure threshold
  (0: none), 22 bytes: the worker reads how to run the task from its one return id;
- a ``num_returns="dynamic"`` task's one return is the task id with index ``DYNAMIC_INDEX``;
- the i-th yielded value of a streaming generator is the task id plus a 4-byte index, 20 bytes,
  so it never equals a return id (18 bytes) and a generator may yield any number of values.
"""

from __future__ import annotations

import itertools
import os
import struct

TASK_ID_LEN = 16
OBJECT_ID_LEN = 18
_IDX = struct.Struct("<H")
PUT_INDEX = 0xFFFF
STREAM_INDEX = 0xFFFE
DYNAMIC_INDEX = 0xFFFD
_ITEM = struct.Struct("<I")
_STREAM = struct.Struct("<HI")
STREAM_ID_LEN = TASK_ID_LEN + _STREAM.size


class IdGenerator:
    """Makes unique task and object ids for one process."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8)
        self._counter = itertools.count(1)

    def task_id(self) -> bytes:
        return self._prefix + next(self._counter).to_bytes(8, "little")

    def put_id(self) -> bytes:
        return self.task_id() + _IDX.pack(PUT_INDEX)


def return_ids(task_id: bytes, n: int) -> tuple[bytes, ...]:
    """The object ids of a task's ``n`` return values."""
    return tuple(task_id + _IDX.pack(i) for i in range(n))


def task_of(object_id: bytes) -> bytes:
    """The task that produces an object (a pseudo-task for ``put``)."""
    return object_id[:TASK_ID_LEN]


def stream_id(task_id: bytes, backpressure: int = 0) -> bytes:
    """The object that ends a streaming generator task (``backpressure``: 0 or the number of
    unconsumed items at which the generator pauses)."""
    return task_id + _STREAM.pack(STREAM_INDEX, backpressure)


def dynamic_id(task_id: bytes) -> bytes:
    """The one return of a ``num_returns="dynamic"`` task."""
    return task_id + _IDX.pack(DYNAMIC_INDEX)


def item_id(task_id: bytes, index: int) -> bytes:
    """The object holding the ``index``-th value a streaming generator task yielded."""
    return task_id + _ITEM.pack(index)


def generator_mode(return_id: bytes) -> tuple[str, int]:
    """How a task whose first return id is ``return_id`` runs a generator it returns:
    ("streaming", backpressure), ("dynamic", 0) or ("static", 0) (its yields are its returns)."""
    if len(return_id) == STREAM_ID_LEN:
        index, backpressure = _STREAM.unpack_from(return_id, TASK_ID_LEN)
        if index == STREAM_INDEX:
            return "streaming", backpressure
    elif len(return_id) == OBJECT_ID_LEN and _IDX.unpack_from(return_id, TASK_ID_LEN)[0] == DYNAMIC_INDEX:
        return "dynamic", 0
    return "static", 0
