"""The agent's object table: values, who holds them, and when they can be freed.

An object lives while any of these is true: a process holds an ObjectRef to it (``holders``),
a pending task needs it or a live value contains a ref to it (``pins``), or a process has it
mapped (``readers``; a freed object that is still mapped waits as a *zombie* until unmapped).
Small values are kept inline, in the agent's own memory, up to a bound (``inline_limit``,
``EMBER_INLINE_OBJECTS_MAX_BYTES``); past it, new small values are copied into the arena
like large ones, so a program that puts millions of small objects fills the store (which
spills to disk) instead of the agent's heap. Large values live in the arena and spill to
disk when the arena is full and they are not mapped by anyone.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ember import _messages as M
from ember._serialization import serialize
from ember.exceptions import ObjectLostError, ObjectStoreFullError, OutOfDiskError

from ember_node.store import Arena, fmt_bytes, memory_limit

INLINE_LIMIT_VAR = "EMBER_INLINE_OBJECTS_MAX_BYTES"


def default_inline_limit(env: dict[str, str] | None = None) -> int:
    """Bytes of small values the agent keeps in its own memory: ``EMBER_INLINE_OBJECTS_MAX_BYTES``,
    else 5% of the node's memory (its cgroup's limit when lower), between 16 MiB and 1 GiB."""
    text = (os.environ if env is None else env).get(INLINE_LIMIT_VAR, "").strip()
    if text:
        if not text.isdigit():
            raise ValueError(f"{INLINE_LIMIT_VAR}={text!r} must be a number of bytes")
        return int(text)
    return max(16 << 20, min(memory_limit() // 20, 1 << 30))

PENDING = 0
READY = 1


class Obj:
    """One object: its state, value (inline bytes or arena location), and its keep-alives."""

    __slots__ = ("oid", "state", "kind", "payload", "holders", "pins", "readers", "contained",
                 "subs", "dep_tasks", "spilled", "size", "site")

    def __init__(self, oid: bytes) -> None:
        self.oid = oid
        self.state = PENDING
        self.kind = M.INLINE
        self.payload: Any = None  # bytes, or (offset, size) for STORE
        self.holders = 0
        self.pins = 0
        self.readers = 0
        self.contained: list[bytes] = []
        self.subs: list[Any] = []  # client states to send the value to when ready
        self.dep_tasks: list[Any] = []  # tasks waiting for this object
        self.spilled: str | None = None
        self.size = 0
        self.site = ""  # where user code made it (file:line), from CALL_SITE


class ClientRefs:
    """What one connected process holds: refs and mapped objects."""

    __slots__ = ("holds", "reads", "creating")

    def __init__(self) -> None:
        self.holds: set[bytes] = set()
        self.reads: dict[bytes, int] = {}
        self.creating: dict[bytes, tuple[int, int]] = {}


class ObjectTable:
    """All objects on this node."""

    def __init__(self, arena: Arena, spill_dir: str, inline_limit: int | None = None) -> None:
        self.objs: dict[bytes, Obj] = {}
        self.inline_limit = default_inline_limit() if inline_limit is None else inline_limit
        self.inline_bytes = 0  # small values (and errors) held in this process's memory
        self.inline_moved_total = 0  # small values put in the arena because of the bound
        self.zombies: dict[bytes, Obj] = {}
        self.arena = arena
        self.spill_dir = spill_dir
        self.in_store: OrderedDict[bytes, Obj] = OrderedDict()  # LRU of unspilled arena objects
        self.on_ready: Callable[[Obj], None] = lambda obj: None
        self.on_free: Callable[[bytes], None] = lambda oid: None
        self.on_orphan: Callable[[bytes], None] = lambda oid: None
        self.on_spill: Callable[[int], None] = lambda nbytes: None  # metrics hooks
        self.on_restore: Callable[[int], None] = lambda nbytes: None
        self.spilled_bytes_total = 0
        self.restored_bytes_total = 0
        self.spilled_bytes = 0

    # -------------------------------------------------------------- creation
    def pending(self, oid: bytes, holder: ClientRefs | None) -> Obj:
        obj = self.objs.get(oid)
        if obj is None:
            obj = self.objs[oid] = Obj(oid)
        if holder is not None and oid not in holder.holds:
            holder.holds.add(oid)
            obj.holders += 1
        return obj

    def put_inline(self, oid: bytes, payload: bytes, contained: list[bytes], holder: ClientRefs) -> None:
        obj = self.pending(oid, holder)
        self._fill(obj, M.INLINE, payload, contained)

    def alloc(self, oid: bytes, size: int, client: ClientRefs) -> int:
        """Reserve ``size`` bytes for a value ``client`` is about to write."""
        offset = self._alloc(size)
        client.creating[oid] = (offset, size)
        return offset

    def seal(self, oid: bytes, offset: int, size: int, contained: list[bytes], holder: ClientRefs) -> None:
        holder.creating.pop(oid, None)
        obj = self.pending(oid, holder)
        self._fill(obj, M.STORE, (offset, size), contained)

    def complete(self, oid: bytes, kind: int, payload: Any, contained: list[bytes], writer: ClientRefs | None) -> None:
        """A task's return value arrived."""
        if kind == M.STORE and writer is not None:
            writer.creating.pop(oid, None)
        obj = self.objs.get(oid)
        if obj is None or obj.state == READY:
            # nobody wants it any more (or a duplicate from a retried task): drop it
            if kind == M.STORE:
                self.arena.free(*payload)
            return
        self._fill(obj, kind, payload, contained)

    def _fill(self, obj: Obj, kind: int, payload: Any, contained: list[bytes]) -> None:
        if kind == M.INLINE and self.inline_bytes + len(payload) > self.inline_limit:
            kind, payload = self._to_store(obj.oid, payload)
        obj.kind = kind
        obj.payload = payload
        obj.state = READY
        if kind == M.STORE:
            obj.size = payload[1]
            self.in_store[obj.oid] = obj
        else:
            obj.size = len(payload)
            self.inline_bytes += obj.size
        if contained:
            obj.contained = list(contained)
            for c in contained:
                self.pin(c)
        self.on_ready(obj)
        self.maybe_free(obj)

    # -------------------------------------------------------------- references
    def addref(self, oid: bytes, client: ClientRefs) -> None:
        if oid in client.holds:
            return
        obj = self.objs.get(oid)
        if obj is not None:
            client.holds.add(oid)
            obj.holders += 1

    def release(self, oid: bytes, client: ClientRefs) -> None:
        if oid not in client.holds:
            return
        client.holds.discard(oid)
        obj = self.objs.get(oid)
        if obj is not None:
            obj.holders -= 1
            self.maybe_free(obj)

    def pin(self, oid: bytes) -> bool:
        obj = self.objs.get(oid)
        if obj is None:
            return False
        obj.pins += 1
        return True

    def unpin(self, oid: bytes) -> None:
        obj = self.objs.get(oid)
        if obj is not None:
            obj.pins -= 1
            self.maybe_free(obj)

    def note_site(self, oids: Any, site: str) -> None:
        """Where user code made these objects (``file:line``; see ember._call_site)."""
        objs = self.objs
        for oid in oids:
            obj = objs.get(oid)
            if obj is not None:
                obj.site = site

    def maybe_free(self, obj: Obj) -> None:
        if obj.holders > 0 or obj.pins > 0:
            return
        if obj.state != READY:
            self.on_orphan(obj.oid)  # nobody wants it, though it is not computed yet
            return
        oid = obj.oid
        if self.objs.get(oid) is not obj:
            return
        del self.objs[oid]
        obj.subs = []
        if obj.kind != M.STORE:
            self.inline_bytes -= obj.size
        else:
            self.in_store.pop(oid, None)
            if obj.spilled:
                self._drop_spill(obj)
            elif obj.readers:
                self.zombies[oid] = obj
            else:
                self.arena.free(*obj.payload)
        for c in obj.contained:
            self.unpin(c)
        self.on_free(oid)

    # -------------------------------------------------------------- readers
    def read_pin(self, oid: bytes, client: ClientRefs) -> tuple[int, int]:
        """Pin a store object for ``client`` to map; restores it from disk if spilled."""
        obj = self.objs.get(oid)
        if obj is None or obj.state != READY or obj.kind != M.STORE:
            raise KeyError(oid)
        if obj.spilled:
            self._restore(obj)
        else:
            self.in_store.move_to_end(oid)
        obj.readers += 1
        client.reads[oid] = client.reads.get(oid, 0) + 1
        return obj.payload

    def read_unpin(self, oid: bytes, client: ClientRefs) -> None:
        n = client.reads.get(oid, 0)
        if n <= 0:
            return
        if n == 1:
            del client.reads[oid]
        else:
            client.reads[oid] = n - 1
        obj = self.objs.get(oid) or self.zombies.get(oid)
        if obj is None:
            return
        obj.readers -= 1
        if obj.readers == 0 and self.zombies.get(oid) is obj:
            del self.zombies[oid]
            self.arena.free(*obj.payload)

    def drop_client(self, client: ClientRefs) -> None:
        """A process went away: drop everything it held, mapped or was writing."""
        for oid, n in list(client.reads.items()):
            for _ in range(n):
                self.read_unpin(oid, client)
        for oid in list(client.holds):
            self.release(oid, client)
        for offset, size in client.creating.values():
            self.arena.free(offset, size)
        client.creating.clear()

    # -------------------------------------------------------------- space
    def _to_store(self, oid: bytes, payload: bytes) -> tuple[int, Any]:
        """A small value past the inline bound goes to the arena (an inline payload has the
        layout of a stored value); when even that has no room, the object holds the error."""
        size = len(payload)
        try:
            offset = self._alloc(size)
        except ObjectStoreFullError as exc:
            error = ObjectStoreFullError(
                f"object {oid.hex()} ({fmt_bytes(size)}) could not be kept: the node's small objects "
                f"reached their bound of {fmt_bytes(self.inline_limit)} ({INLINE_LIMIT_VAR}), and "
                f"the object store has no room for more either: {exc}")
            return M.ERROR, serialize(error).to_bytes()
        view = self.arena.view()
        try:
            view[offset : offset + size] = payload
        finally:
            view.release()
        self.inline_moved_total += 1
        return M.STORE, (offset, size)

    def _alloc(self, size: int) -> int:
        arena = self.arena
        if size > arena.capacity:
            raise ObjectStoreFullError(
                f"an object of {fmt_bytes(size)} cannot fit in the object store "
                f"(capacity {fmt_bytes(arena.capacity)}); give the node a larger store: "
                f"ember.init(object_store_memory=...) or `ember start --object-store-memory`"
            )
        offset = arena.alloc(size)
        while offset is None:
            victim = self._spill_candidate()
            if victim is None:
                mapped = sum(o.size for o in self.in_store.values() if o.readers) + sum(
                    o.size for o in self.zombies.values()
                )
                raise ObjectStoreFullError(
                    f"the object store is full: {fmt_bytes(size)} requested, "
                    f"{fmt_bytes(arena.used)} of {fmt_bytes(arena.capacity)} in use "
                    f"({fmt_bytes(mapped)} held by values in use or being written, which cannot be "
                    f"spilled). Drop references you no longer need (del the values returned by get) "
                    f"or raise object_store_memory."
                )
            self._spill(victim)
            offset = arena.alloc(size)
        return offset

    def _spill_candidate(self) -> Obj | None:
        for obj in self.in_store.values():
            if obj.readers == 0:
                return obj
        return None

    def _spill(self, obj: Obj) -> None:
        offset, size = obj.payload
        os.makedirs(self.spill_dir, mode=0o700, exist_ok=True)
        path = os.path.join(self.spill_dir, obj.oid.hex())
        view = self.arena.view()
        try:
            with open(path, "wb") as f:
                f.write(view[offset : offset + size])
        except OSError as exc:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise OutOfDiskError(f"cannot spill {fmt_bytes(size)} to {self.spill_dir}: {exc}") from exc
        finally:
            view.release()
        self.arena.free(offset, size)
        self.in_store.pop(obj.oid, None)
        obj.spilled = path
        obj.payload = None
        self.spilled_bytes_total += size
        self.spilled_bytes += size
        self.on_spill(size)

    def _restore(self, obj: Obj) -> None:
        size = obj.size
        offset = self._alloc(size)
        view = self.arena.view()
        try:
            with open(obj.spilled, "rb") as f:
                got = f.readinto(view[offset : offset + size])
            if got != size:
                raise OSError(f"the file holds {got} of its {size} bytes")
        except OSError as exc:
            self.arena.free(offset, size)
            raise ObjectLostError(
                f"object {obj.oid.hex()} is lost: it was spilled to {obj.spilled}, and that file is gone "
                f"or damaged ({exc}); keep the spill directory where the node agent can read it") from None
        finally:
            view.release()
        self._drop_spill(obj)
        obj.payload = (offset, size)
        self.in_store[obj.oid] = obj
        self.restored_bytes_total += size
        self.on_restore(size)

    def _drop_spill(self, obj: Obj) -> None:
        if obj.spilled:
            try:
                os.unlink(obj.spilled)
            except OSError:
                pass
            self.spilled_bytes -= obj.size
            obj.spilled = None

    def stats(self) -> dict[str, int]:
        return {
            "objects": len(self.objs),
            "inline_bytes": self.inline_bytes,
            "inline_limit": self.inline_limit,
            "store_bytes": self.arena.used,
            "store_capacity": self.arena.capacity,
            "spilled_bytes": self.spilled_bytes,
            "spilled_bytes_total": self.spilled_bytes_total,
            "restored_bytes_total": self.restored_bytes_total,
        }
