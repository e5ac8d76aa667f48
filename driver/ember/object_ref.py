"""``ObjectRef``: a reference to a value that exists, or will exist, somewhere in the cluster."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

from ember import _context
from ember._ids import task_of
from ember._serialization import note_contained_ref


class ObjectRef:
    """A handle on a remote value; pass it to tasks or call ``ember.get`` on it.

    Every live ``ObjectRef`` keeps its value alive; once the last one in the cluster is gone
    (and no pending task needs it), the value is freed everywhere.
    """

    __slots__ = ("_id", "_rt", "__weakref__")

    def __init__(self, object_id: bytes, runtime: Any = None, *, _counted: bool = False) -> None:
        self._id = object_id
        rt = runtime if runtime is not None else _context.current_runtime()
        self._rt = rt
        if rt is not None and not _counted:
            rt.add_local_ref(object_id)

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> bytes:
        return task_of(self._id)

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __reduce__(self):
        note_contained_ref(self._id)
        return (_rebuild_ref, (self._id,))

    def __del__(self) -> None:
        rt = self._rt
        if rt is not None:
            try:
                rt.drop_local_ref(self._id)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

    def future(self) -> Future:
        """A ``concurrent.futures.Future`` resolved with the value (or its error)."""
        fut: Future = Future()
        rt = self._rt or _context.current_runtime()
        rt.add_done_callback(self, fut)
        return fut

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()


def _rebuild_ref(object_id: bytes) -> ObjectRef:
    return ObjectRef(object_id)
