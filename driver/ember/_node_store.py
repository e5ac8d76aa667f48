"""A worker's end of its worker node's object store (see ``ember_node.node_store``).

A worker on a worker node asks the node's store for a large object; the store fetches it
once for all the node's workers (from another worker node that has a copy, or from the
head), and the worker maps the node's arena at the returned offset, read-only and
zero-copy. Objects the worker creates are written there too, and the node sends them on. Unmapping is reported later, in a batch: the
finalizer that notices it may run on any thread, at any point, so it only queues.
"""

from __future__ import annotations

import collections
import itertools
import mmap
import threading
from typing import Any

from ember._serialization import Serialized
from ember._wire import ClientConnection
from ember.exceptions import ObjectLostError


class NodeStoreClient:
    """One worker process's connection to its node's store (opened on first use)."""

    def __init__(self, socket_path: str, arena_fd: int) -> None:
        self.socket_path = socket_path
        self._fd = arena_fd  # the node's arena, inherited from the zygote (its name is gone)
        self._conn: ClientConnection | None = None
        self._lock = threading.Lock()
        self._released: collections.deque[bytes] = collections.deque()
        self._ids = itertools.count(1)

    def _request(self, msg: tuple) -> Any:
        """Send ``msg`` (its second field is filled with a request id); wait for the reply."""
        with self._lock:
            if self._conn is None:
                self._conn = ClientConnection.connect(self.socket_path)
            conn = self._conn
            if self._released:
                conn.send(("release", self._drain()))
            req_id = next(self._ids)
            conn.send((msg[0], req_id, *msg[1:]))
            while True:
                for reply in conn.recv(None):
                    if reply[0] == "reply" and reply[1] == req_id:
                        if reply[3] is not None:
                            raise ObjectLostError(reply[3])
                        return reply[2]

    def _drain(self) -> list[bytes]:
        out = []
        while self._released:
            out.append(self._released.popleft())
        return out

    def map(self, oid: bytes, head_offset: int, size: int, peers: tuple[str, ...] = ()) -> mmap.mmap | None:
        """A read-only mapping of the node's copy of ``oid`` (fetched, if the node has none yet,
        from one of ``peers`` -- other nodes holding a copy -- or from the head's store at
        ``head_offset``), or None if the node's store has no room."""
        offset = self._request(("get", oid, head_offset, size, tuple(peers)))
        if offset is None:
            return None
        try:
            return mmap.mmap(self._fd, size, offset=offset, access=mmap.ACCESS_READ)
        except BaseException:
            self.release(oid)
            raise

    def write(self, oid: bytes, head_offset: int, ser: Serialized) -> bool:
        """Write a new object into the node's store and have the node send it on to the head's
        store (at ``head_offset``), so this node's workers can read it without a transfer.
        False when the node's store has no room: the caller sends it to the head itself."""
        offset = self._request(("reserve", oid, ser.total))
        if offset is None:
            return False
        mm = mmap.mmap(self._fd, ser.total, offset=offset)
        try:
            with memoryview(mm) as view:
                ser.write_into(view)
        finally:
            mm.close()
        self._request(("publish", oid, head_offset))
        return True

    def release(self, oid: bytes) -> None:
        """This process no longer maps ``oid`` (safe from a finalizer: it only queues)."""
        self._released.append(oid)

    def flush(self) -> None:
        """Report queued unmappings now."""
        if self._released and self._conn is not None and self._lock.acquire(blocking=False):
            try:
                if self._released:
                    self._conn.send(("release", self._drain()))
            finally:
                self._lock.release()

    def stats(self) -> dict[str, Any]:
        """The node store's contents and counters."""
        return self._request(("stats",))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
