"""Identifiers made locally, without asking anyone.

A task id is 16 bytes: 8 random bytes per process, then an 8-byte counter. An object id is
the task id that produces it plus a 2-byte return index; ``put`` objects use a task id of
their own with index 0xFFFF.
"""

from __future__ import annotations

import itertools
import os
import struct

TASK_ID_LEN = 16
OBJECT_ID_LEN = 18
_IDX = struct.Struct("<H")
PUT_INDEX = 0xFFFF


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
