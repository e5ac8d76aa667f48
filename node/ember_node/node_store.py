"""A worker node's object store: the copies of cluster objects that its workers read.

The head's store holds every object of the cluster. When a worker on a worker node needs a
large object, it asks this store (over a Unix socket in the node's session directory): on a
hit it maps the node's arena at the returned offset, zero-copy and read-only, like a worker
on the head; on a miss the store streams the object in chunks, straight into its arena,
from another worker node that holds a copy when the head names one (``ReadCopy`` on that
node's peer port), else from the head; every worker of the node shares that one copy.
Concurrent readers of an object being fetched wait for the one transfer.

Copies go when the head says the object was freed (EVICT, sent to the node's uplink), or,
least recently used first, when space is needed for another; a copy stays while any worker
has it mapped. A worker's pins end with its connection, so a crashed worker leaks nothing.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from ember._proto import node_pb2 as pb
from ember._remote import channel, receive_chunks
from ember._wire import ClientConnection, ConnectionClosed

from ember_node.store import Arena, page_align

log = logging.getLogger("ember.node_store")

FETCHING, READY = 0, 1


class Entry:
    """One object's copy in the node's arena."""

    __slots__ = ("oid", "offset", "size", "pins", "state", "gone", "error")

    def __init__(self, oid: bytes, offset: int, size: int) -> None:
        self.oid = oid
        self.offset = offset
        self.size = size
        self.pins = 1  # the reader whose miss creates it
        self.state = FETCHING
        self.gone = False  # evicted while pinned: freed when the last pin goes
        self.error: str | None = None


class NodeStore:
    """The copies, their pins, and the socket the node's workers ask through.

    ``fetch(oid, head_offset, size, into)`` streams an object's bytes from the head's store
    into a writable view (the head keeps the object pinned for the asking worker meanwhile);
    ``upload(oid, head_offset, data)`` streams bytes into space the head allocated for it.
    """

    def __init__(self, arena: Arena, socket_path: str, fetch: Callable[[bytes, int, int, memoryview], None],
                 upload: Callable[[bytes, int, memoryview], None],
                 fetch_peer: Callable[[str, bytes, memoryview], None] | None = None) -> None:
        self.arena = arena
        self.socket_path = socket_path
        self._fetch = fetch
        self._upload = upload
        self._fetch_peer = fetch_peer
        self._cond = threading.Condition()
        self.entries: collections.OrderedDict[bytes, Entry] = collections.OrderedDict()  # LRU first
        self.hits = 0
        self.misses = 0
        self.fetched_bytes = 0
        self.peer_fetches = 0  # of the misses, those served by another worker node's store
        self.copies_served = 0  # copies streamed to other nodes' stores
        self.evictions = 0
        self.dropped: list[bytes] = []  # copies pushed out for room, not yet told to the head
        self._closed = False
        self._conns: set[ClientConnection] = set()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept, name="ember-node-store", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the store
    def acquire(self, oid: bytes, head_offset: int, size: int, peers: tuple[str, ...] | list[str] = ()
                ) -> Entry | None:
        """``oid``'s copy, pinned for the caller. On a miss it is fetched from one of ``peers``
        (other worker nodes the head says hold a copy), else from the head. None when no room
        can be made (every copy is pinned, or the object is larger than the node's store):
        the caller then streams a private copy."""
        with self._cond:
            entry = self.entries.get(oid)
            while entry is not None and entry.state == FETCHING:
                entry.pins += 1  # keep it while waiting: a pinned entry is never reused
                self._cond.wait()
                entry.pins -= 1
                if entry.error is not None:
                    self._drop_if_unused(entry)
                    entry = self.entries.get(oid)
            if entry is not None:  # (evicted meanwhile, it still serves this reader)
                entry.pins += 1
                if self.entries.get(oid) is entry:
                    self.entries.move_to_end(oid)
                self.hits += 1
                return entry
            offset = self._make_room(size)
            if offset is None:
                return None
            entry = Entry(oid, offset, size)
            self.entries[oid] = entry
            self.misses += 1
        from_peer = self._complete(entry, lambda into: self._fill(oid, head_offset, into, peers))
        with self._cond:
            self.fetched_bytes += size
            self.peer_fetches += from_peer
        return entry

    def _complete(self, entry: Entry, move: Callable[[memoryview], Any]) -> Any:
        """Run ``move`` over the entry's bytes in the arena (a fetch into it, an upload out of
        it); then the copy is whole and serves readers, or, if ``move`` fails, it is dropped."""
        try:
            view = self.arena.view()
            try:
                result = move(view[entry.offset : entry.offset + entry.size])
            finally:
                view.release()
        except BaseException as exc:
            self.abandon(entry, str(exc) or type(exc).__name__)
            raise
        with self._cond:
            entry.state = READY
            self._cond.notify_all()
        return result

    def _fill(self, oid: bytes, head_offset: int, into: memoryview, peers: tuple[str, ...] | list[str]) -> bool:
        """Stream ``oid`` into ``into``: from a peer if one answers (True), else from the head."""
        if self._fetch_peer is not None:
            for peer in peers:
                try:
                    self._fetch_peer(peer, oid, into)
                    return True
                except Exception as exc:  # noqa: BLE001 - the head has every object
                    log.info("fetching %s from the node at %s failed (%s); trying elsewhere",
                             oid.hex()[:12], peer, exc)
        self._fetch(oid, head_offset, len(into), into)
        return False

    def open_copy(self, oid: bytes) -> Entry | None:
        """This node's whole copy of ``oid``, pinned for streaming to another node (then
        ``release``), or None."""
        with self._cond:
            entry = self.entries.get(oid)
            if entry is None or entry.state != READY:
                return None
            entry.pins += 1
            self.copies_served += 1
            return entry

    def reserve(self, oid: bytes, size: int) -> Entry | None:
        """Room for a copy of an object a worker of this node creates (it writes the bytes,
        then ``publish`` sends them to the head); None when there is no room."""
        with self._cond:
            if oid in self.entries:
                return None
            offset = self._make_room(size)
            if offset is None:
                return None
            entry = self.entries[oid] = Entry(oid, offset, size)
            return entry

    def publish(self, entry: Entry, head_offset: int) -> None:
        """Upload a reserved copy's bytes to the head's store; the copy then serves readers."""
        self._complete(entry, lambda data: self._upload(entry.oid, head_offset, data))

    def abandon(self, entry: Entry, why: str) -> None:
        """A copy that never became whole (its fetch or upload failed, or its writer died)."""
        with self._cond:
            if entry.state == READY or entry.error is not None:
                return
            entry.error = why
            entry.pins -= 1
            if self.entries.get(entry.oid) is entry:
                del self.entries[entry.oid]
            self._drop_if_unused(entry)
            self._cond.notify_all()

    def release(self, oid: bytes, entry: Entry | None = None) -> None:
        """A reader unmapped its copy of ``oid``."""
        with self._cond:
            entry = entry or self.entries.get(oid)
            if entry is None or entry.pins <= 0:
                return
            entry.pins -= 1
            self._drop_if_unused(entry)

    def evict(self, oids: list[bytes]) -> None:
        """The head freed these objects: drop their copies (once no worker maps them)."""
        with self._cond:
            for oid in oids:
                entry = self.entries.pop(oid, None)
                if entry is not None:
                    entry.gone = True
                    self.evictions += 1
                    self._drop_if_unused(entry)

    def _drop_if_unused(self, entry: Entry) -> None:
        if entry.pins == 0 and (entry.gone or entry.error is not None) and entry.size >= 0:
            self.arena.free(entry.offset, entry.size)
            entry.size = -1  # freed: never twice

    def _make_room(self, size: int) -> int | None:
        """An arena offset for ``size`` bytes, dropping unpinned copies, oldest first."""
        if page_align(max(size, 1)) > self.arena.capacity:
            return None
        offset = self.arena.alloc(size)
        if offset is not None:
            return offset
        for oid in [o for o, e in self.entries.items() if e.pins == 0 and e.state == READY]:
            entry = self.entries.pop(oid)
            self.dropped.append(oid)
            entry.gone = True
            self._drop_if_unused(entry)
            offset = self.arena.alloc(size)
            if offset is not None:
                return offset
        return None

    def take_dropped(self) -> list[bytes]:
        """The copies pushed out for room since the last call (the heartbeat tells the head)."""
        with self._cond:
            dropped, self.dropped = self.dropped, []
            return [oid for oid in dropped if oid not in self.entries]  # (unless fetched again)

    def stats(self) -> dict[str, Any]:
        """What the store holds and has done (for tests, `ember status` and metrics)."""
        with self._cond:
            return {"objects": [oid.hex() for oid, e in self.entries.items() if e.state == READY],
                    "bytes_used": self.arena.used, "capacity": self.arena.capacity,
                    "hits": self.hits, "misses": self.misses,
                    "fetched_bytes": self.fetched_bytes, "evictions": self.evictions,
                    "peer_fetches": self.peer_fetches, "copies_served": self.copies_served,
                    "pinned": sum(1 for e in self.entries.values() if e.pins > 0)}

    # ------------------------------------------------------------------ the socket
    def _accept(self) -> None:
        backoff = 0.05
        while not self._closed:
            try:
                sock, _ = self._listener.accept()
            except OSError as exc:
                if self._closed or exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                # out of descriptors: the worker waits in the backlog until some are free
                log.warning("node store cannot accept a worker's connection: %s; retrying in %.2f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            conn = ClientConnection(sock)
            with self._cond:
                if self._closed:
                    conn.close()
                    return
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="ember-node-store-client",
                             daemon=True).start()

    def _serve(self, conn: ClientConnection) -> None:
        """One worker's requests: ("get", req_id, oid, head_offset, size), ("release", [oids]),
        ("reserve", req_id, oid, size), ("publish", req_id, oid, head_offset), ("stats",
        req_id). Its pins, and copies it reserved but never published, go when it disconnects."""
        held: dict[bytes, list[Entry]] = {}
        reserved: dict[bytes, Entry] = {}
        try:
            while True:
                for msg in conn.recv(None):
                    kind = msg[0]
                    if kind == "release":
                        for oid in msg[1]:
                            entries = held.get(oid)
                            if entries:
                                self.release(oid, entries.pop())
                                if not entries:
                                    del held[oid]
                    elif kind == "get":
                        _, req_id, oid, head_offset, size, *more = msg
                        try:
                            entry = self.acquire(oid, head_offset, size, more[0] if more else ())
                        except Exception as exc:  # noqa: BLE001 - the worker gets the reason
                            conn.send(("reply", req_id, None, f"fetching from the head failed: {exc}"))
                            continue
                        if entry is not None:
                            held.setdefault(oid, []).append(entry)
                        conn.send(("reply", req_id, None if entry is None else entry.offset, None))
                    elif kind == "reserve":
                        _, req_id, oid, size = msg
                        entry = self.reserve(oid, size)
                        if entry is not None:
                            reserved[oid] = entry
                        conn.send(("reply", req_id, None if entry is None else entry.offset, None))
                    elif kind == "publish":
                        _, req_id, oid, head_offset = msg
                        entry = reserved.pop(oid)
                        try:
                            self.publish(entry, head_offset)
                        except Exception as exc:  # noqa: BLE001 - the worker gets the reason
                            conn.send(("reply", req_id, None, f"sending the object to the head failed: {exc}"))
                            continue
                        self.release(oid, entry)  # the writer does not map it: readers will
                        conn.send(("reply", req_id, True, None))
                    elif kind == "stats":
                        conn.send(("reply", msg[1], self.stats(), None))
        except (ConnectionClosed, OSError):
            pass
        finally:
            for entry in reserved.values():
                self.abandon(entry, "its writer went away")
            for oid, entries in held.items():
                for entry in entries:
                    self.release(oid, entry)
            with self._cond:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        """Stop serving and free the arena (the node's workers are gone by now)."""
        with self._cond:
            self._closed = True
            conns = list(self._conns)
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for conn in conns:
            conn.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self.arena.close()


class PeerFetcher:
    """Fetches copies from other worker nodes' stores (``ReadCopy``), one channel per peer.

    Every call has a deadline, so a peer that cannot be reached (an address that only works
    inside its own host, a firewall) costs at most that long before the head serves the
    object; such a peer is then skipped for a minute.
    """

    BAD_FOR_S = 60.0

    def __init__(self, token: str) -> None:
        self._meta = [("authorization", f"Bearer {token}")]
        self._lock = threading.Lock()
        self._calls: dict[str, tuple[Any, Any]] = {}
        self._bad: dict[str, float] = {}

    def fetch(self, address: str, oid: bytes, into: memoryview) -> None:
        """Stream ``address``'s copy of ``oid`` into ``into`` (exactly its size), or raise."""
        with self._lock:
            if self._bad.get(address, 0.0) > time.monotonic():
                raise ConnectionError("it failed recently")
            call = self._calls.get(address)
            if call is None:
                chan = channel(address)
                call = self._calls[address] = (chan, chan.unary_stream(
                    "/ember.v1.Node/ReadCopy", request_serializer=pb.CopyRequest.SerializeToString))
        timeout = 10.0 + len(into) / 50e6  # generous: at least 50 MB/s once connected
        try:
            got = receive_chunks(call[1](pb.CopyRequest(object_id=oid), metadata=self._meta, timeout=timeout), into)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # the peer itself is the problem
                with self._lock:
                    self._bad[address] = time.monotonic() + self.BAD_FOR_S
            raise ConnectionError(f"{exc.code().name}: {exc.details()}") from None
        if got != len(into):
            raise ConnectionError(f"the peer sent {got} of the object's {len(into)} bytes")

    def close(self) -> None:
        with self._lock:
            for chan, _ in self._calls.values():
                chan.close()
            self._calls.clear()

