"""The core runtime shared by drivers and workers: one connection to the local node agent.

It submits tasks, puts and gets values, waits, and keeps the local side of reference
counting. The thread that needs a message reads the socket itself (leader/follower), so a
``get`` costs no extra thread hand-over; other threads wait on a condition meanwhile.

Reference counting: each process tells the agent when it starts (ADDREF) and stops (RELEASE)
holding refs to an object; the agent adds pins for pending tasks and for refs nested inside
live values. ``ObjectRef.__del__`` and mmap finalizers only append to a deque (they may run
anywhere, even inside this module's locks); the deque is drained before each send, addrefs
go out before the message and releases after it, so the agent never frees an object that a
message in flight still refers to.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ember import _call_site
from ember import _messages as M
from ember._ids import IdGenerator, return_ids, task_of
from ember._node_store import NodeStoreClient
from ember._serialization import Serialized, deserialize, serialize
from ember._wire import ConnectionClosed
from ember.exceptions import (
    GetTimeoutError,
    ObjectLostError,
    RaySystemError,
    RayTaskError,
)
from ember.object_ref import ObjectRef

_DEL = 0
_UNMAPPED = 1
HOLD_MAX_S = 0.002  # a held message (a batched result) goes out at the latest after this


class Dep:
    """Placeholder for a top-level ObjectRef argument, replaced by its value in the worker."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self):
        return (Dep, (self.index,))


class SessionInfo:
    """What a client needs to know about its node: socket, store, resources."""

    def __init__(self, info: dict) -> None:
        self.socket_path: str | None = info.get("socket")
        self.arena_path: str | None = info.get("arena")
        self.arena_size: int = info.get("arena_size", 0)
        self.node_id: str = info["node_id"]
        self.session_dir: str = info["session_dir"]
        self.socket_dir: str = info.get("socket_dir") or self.session_dir  # short: see _local_cluster
        self.raw = info


class CoreRuntime:
    """One process's connection to its node agent, and everything that rides on it."""

    def __init__(self, conn: Any, session: SessionInfo | None, mode: str, remote: bool = False) -> None:
        self.conn = conn
        self.session = session
        self.mode = mode  # "driver" | "worker"
        self.record_sites = _call_site.enabled(os.environ)  # put()/.remote() sites for `ember memory`
        self.remote = remote  # reaches the cluster over gRPC, so cannot map the node's store
        self.namespace: str | None = None  # init(namespace=...): where named actors live
        # the job (driver) work belongs to: a driver's own, in a worker the running task's
        self.job_id: bytes = os.urandom(4)
        self.env_vars: dict[str, str] = {}  # runtime_env env_vars tasks submitted from here get
        self.worker_id: bytes = os.urandom(28)  # this process, as runtime contexts name it
        self.actor: Any = None  # in an actor's worker: its ActorInfo (ember.runtime_context)
        self.gpu_ids: list[int] = []  # in a worker: the GPUs of the running task or actor
        self.ids = IdGenerator()
        self.closed = False
        self._lock = threading.Lock()
        self._order = threading.RLock()  # held from collecting ref operations to sending them
        self._counts: dict[bytes, int] = {}
        self._deferred: collections.deque = collections.deque()
        self._pending_addrefs: list[bytes] = []
        self._pending_release: set[bytes] = set()
        self._pending_unpin: list[bytes] = []
        self._held_msgs: list[tuple] = []  # sent with the next send or flush (see hold)
        self._held_event = threading.Event()
        self.objects: dict[bytes, tuple[int, Any]] = {}
        self._owned_pending: set[bytes] = set()
        self._requested: set[bytes] = set()
        self._registered_fns: set[bytes] = set()
        self._replies: dict[int, Any] = {}
        self._req_ids = itertools.count(1)
        self._cond = threading.Condition()
        self._reading = False
        self._maps: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._arena_fd: int | None = None
        self._arena_view: memoryview | None = None
        self._arena_mm: mmap.mmap | None = None
        # worker side (see ember.worker)
        self.task_queue: collections.deque = collections.deque()
        self.current_task_id: bytes | None = None
        self.cancel_current = False
        self.cancelled_tasks: set[bytes] = set()  # cancels that came for tasks not running in the main thread
        self.exit_requested = False
        self.blocked = False
        self.no_block = False
        self.sending = 0  # > 0 while a thread is writing to the agent
        self.signal_pending = False  # a cancel signal came while sending (see ember.worker)
        self.on_deferred_signal: Callable[[], None] = lambda: None
        self.message_hook: Callable[[tuple], bool] | None = None
        self.inbox: Any = None  # a driver's DirectInbox, when it has one
        # streaming generator tasks submitted from here: task id -> {index: ref} of the values
        # that came and were not taken yet (ember.generators)
        self.streams: dict[bytes, dict[int, ObjectRef]] = {}
        # A worker on a worker node reads large objects through its node's store, which
        # fetches each from the head once for all of the node's workers (ember._node_store).
        self._node_store: NodeStoreClient | None = None
        if remote and mode == "worker" and session is not None and session.raw.get("node_store"):
            self._node_store = NodeStoreClient(session.raw["node_store"], session.raw["node_arena_fd"])
        self._flusher = threading.Thread(target=self._flush_loop, name="ember-ref-flusher", daemon=True)
        self._flusher.start()

    # ------------------------------------------------------------------ sending
    def _collect(self) -> tuple[list, list]:
        """Drain deferred ref operations into (messages before, messages after)."""
        deferred = self._deferred
        with self._lock:
            counts = self._counts
            while deferred:
                op, oid = deferred.popleft()
                if op == _DEL:
                    c = counts.get(oid, 0) - 1
                    if c > 0:
                        counts[oid] = c
                        continue
                    counts.pop(oid, None)
                    self._pending_release.add(oid)
                    entry = self.objects.pop(oid, None)
                    self._requested.discard(oid)
                    self._owned_pending.discard(oid)
                    del entry
                else:  # a read-only mapping of a store object was finalized
                    self._pending_unpin.append(oid)
            pre: list = []
            post: list = []
            if self._pending_addrefs:
                pre.append((M.ADDREF, self._pending_addrefs))
                self._pending_addrefs = []
            if self._pending_release:
                post.append((M.RELEASE, list(self._pending_release)))
                self._pending_release = set()
            if self._pending_unpin:
                post.append((M.UNPIN, self._pending_unpin))
                self._pending_unpin = []
        return pre, post

    def send(self, *msgs: tuple, releases_first: bool = False) -> None:
        """Send messages (with any pending ref operations around them).

        Releases normally follow the messages, which may refer to what they release;
        ``releases_first`` sends them before, for requests that need the space they free.
        """
        if self.closed:
            raise RaySystemError("ember is shut down; call ember.init() first")
        # collect and send as one step: two threads must not reorder an addref and a release
        with self._order:
            pre, post = self._collect()
            if self._held_msgs:
                held, self._held_msgs = self._held_msgs, []
                pre += held
            if not pre and not post and len(msgs) == 1:
                self._send_raw(msgs[0])
            elif releases_first:
                self._send_raw_many(pre + post + list(msgs))
            else:
                self._send_raw_many(pre + list(msgs) + post)

    def hold(self, msg: tuple) -> int:
        """Queue a message to go out with the next send or flush, at the latest within
        HOLD_MAX_S (batches a worker's results); returns how many are held."""
        with self._order:
            self._held_msgs.append(msg)
            n = len(self._held_msgs)
        if n == 1:
            self._held_event.set()
        return n

    def _send_raw(self, msg: tuple) -> None:
        self._send_raw_many([msg])

    def _send_raw_many(self, msgs: list) -> None:
        if not msgs:
            return
        self.sending += 1  # a cancel signal must not interrupt a frame half-sent
        try:
            if len(msgs) == 1:
                self.conn.send(msgs[0])
            else:
                self.conn.send_many(msgs)
        except ConnectionClosed as exc:
            raise RaySystemError(f"lost the connection to the node agent ({exc}); the cluster is gone") from exc
        finally:
            self.sending -= 1
        if self.signal_pending and not self.sending and threading.current_thread() is threading.main_thread():
            self.signal_pending = False
            self.on_deferred_signal()

    def flush(self) -> None:
        """Send held messages and pending ref operations now."""
        if (self._held_msgs or self._deferred or self._pending_addrefs or self._pending_release
                or self._pending_unpin):
            with self._order:
                pre, post = self._collect()
                if self._held_msgs:
                    held, self._held_msgs = self._held_msgs, []
                    pre += held
                if pre or post:
                    self._send_raw_many(pre + post)

    def _flush_loop(self) -> None:
        held = self._held_event
        while not self.closed:
            if held.wait(0.05):
                held.clear()
                time.sleep(HOLD_MAX_S)
            if (self._deferred or self._held_msgs) and not self.closed:
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - the main path reports connection loss
                    return
            if self._node_store is not None:
                try:
                    self._node_store.flush()
                except Exception:  # noqa: BLE001 - the node is going away with its store
                    pass

    # ------------------------------------------------------------------ ref counting
    def add_local_ref(self, oid: bytes) -> None:
        """A new ObjectRef for ``oid`` now lives in this process."""
        with self._lock:
            c = self._counts.get(oid, 0)
            self._counts[oid] = c + 1
            if c == 0:
                if oid in self._pending_release:
                    self._pending_release.discard(oid)
                else:
                    self._pending_addrefs.append(oid)

    def _owned_ref(self, oid: bytes) -> ObjectRef:
        """A ref to an object this process created (the agent already counts us as a holder)."""
        with self._lock:
            self._counts[oid] = self._counts.get(oid, 0) + 1
        return ObjectRef(oid, self, _counted=True)

    def drop_local_ref(self, oid: bytes) -> None:
        self._deferred.append((_DEL, oid))

    # ------------------------------------------------------------------ receiving
    def _handle(self, msg: tuple) -> None:
        t = msg[0]
        if t == M.OBJ:
            oid = msg[1]
            if oid in self._counts:
                self.objects[oid] = (msg[2], msg[3])
                self._owned_pending.discard(oid)
        elif t == M.REPLY:
            self._replies[msg[1]] = msg[2]
        elif t == M.WARN:
            logging.getLogger("ember").warning("%s", msg[1])
        elif t == M.ITEM:
            self._on_item(msg)
        elif self.message_hook is not None and self.message_hook(msg):
            pass
        elif t == M.GOODBYE:
            self.closed = True
            raise RaySystemError(f"the node agent closed the connection: {msg[1]}")
        else:
            raise RaySystemError(f"unexpected message from the node agent: {msg[0]!r}")

    def _on_item(self, msg: tuple) -> None:
        """A generator task yielded a value: the agent counts this process as holding it."""
        _, tid, index, oid, kind, payload = msg
        ref = self._owned_ref(oid)
        self.objects[oid] = (kind, payload)
        stream = self.streams.get(tid)
        if stream is not None:
            stream[index] = ref
        # else its generator was dropped: the ref goes now, and with it the value

    def local_error_ref(self, oid: bytes, blob: bytes) -> ObjectRef:
        """A ref that only this process knows, whose ``get`` raises the pickled error ``blob``
        (a generator's end error, given as its next ref)."""
        ref = self._owned_ref(oid)
        self.objects[oid] = (M.ERROR, blob)
        return ref

    def wait_for(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Read messages until ``ready()`` (True) or ``timeout`` seconds pass (False); a worker
        gives its CPU back meanwhile, as in ``get``."""
        if ready():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        blocked = self._blocking()
        try:
            return self.wait_until(ready, deadline)
        finally:
            if blocked:
                self._unblocking()

    def _pump(self, timeout: float | None) -> None:
        inbox = self.inbox
        if inbox is None:
            for msg in self.conn.recv(timeout):
                self._handle(msg)
            return
        events = self._poller.poll(None if timeout is None else max(timeout, 0.0) * 1000)
        for fd, _ in events:
            msgs = self.conn.recv_ready() if fd == self._conn_fd else inbox.ready(fd, self._poller)
            for msg in msgs:
                self._handle(msg)

    def open_inbox(self, directory: str) -> str | None:
        """Listen for results sent straight from workers (see ember._direct); its path, or
        None when it cannot be made (results then all come through the agent)."""
        import select

        from ember._direct import DirectInbox

        path = os.path.join(directory, f"d-{os.getpid()}-{os.urandom(3).hex()}.sock")
        try:
            inbox = DirectInbox(path)
        except OSError:
            return None
        self._poller = select.poll()
        self._conn_fd = self.conn.sock.fileno()
        self._poller.register(self._conn_fd, select.POLLIN)
        inbox.register(self._poller)
        self.inbox = inbox
        return path

    def wait_until(self, ready: Callable[[], bool], deadline: float | None) -> bool:
        """Read messages until ``ready()`` or the deadline; True when ready."""
        cond = self._cond
        while True:
            if ready():
                return True
            if self.cancel_current and self.current_task_id is not None and self.blocked:
                from ember.exceptions import TaskCancelledError

                self.cancel_current = False
                raise TaskCancelledError("the task was cancelled while it waited in get/wait")
            if deadline is None:
                remaining = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return ready()
                remaining = min(remaining, 1.0)
            with cond:
                if self._reading:
                    cond.wait(remaining if remaining is not None else 1.0)
                    continue
                self._reading = True
            try:
                self.flush()
                self._pump(remaining)
            except ConnectionClosed as exc:
                self.closed = True
                raise RaySystemError(f"lost the connection to the node agent ({exc}); the cluster is gone") from exc
            finally:
                with cond:
                    self._reading = False
                    cond.notify_all()
            if self.signal_pending and threading.current_thread() is threading.main_thread():
                self.signal_pending = False
                self.on_deferred_signal()

    def request(self, kind: int, *args: Any, timeout: float | None = None) -> Any:
        """A request/reply exchange with the agent."""
        req_id = next(self._req_ids)
        self.send((kind, req_id, *args), releases_first=kind == M.REQUEST and args[0] in ("alloc", "pin"))
        replies = self._replies
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.wait_until(lambda: req_id in replies, deadline):
            raise GetTimeoutError(f"the node agent did not answer within {timeout}s")
        return replies.pop(req_id)

    # ------------------------------------------------------------------ store
    def _arena(self) -> memoryview:
        if self._arena_view is None:
            fd = self._arena_fd_get()
            self._arena_mm = mmap.mmap(fd, self.session.arena_size)
            self._arena_view = memoryview(self._arena_mm)
        return self._arena_view

    def _arena_fd_get(self) -> int:
        if self._arena_fd is None:
            self._arena_fd = os.open(self.session.arena_path, os.O_RDWR)
        return self._arena_fd

    def write_to_store(self, oid: bytes, ser: Serialized) -> tuple[int, int]:
        """Reserve space for ``ser`` in the node's store and copy it in (streamed, if remote)."""
        reply = self.request(M.REQUEST, "alloc", (oid, ser.total))
        if isinstance(reply, BaseException):
            raise reply
        offset = reply
        if self.remote:
            if self._node_store is None or not self._node_store.write(oid, offset, ser):
                self.conn.write_object(oid, offset, ser.parts())
        else:
            ser.write_into(self._arena()[offset : offset + ser.total])
        return offset, ser.total

    def map_object(self, oid: bytes, granted: tuple[Any, ...] | None = None) -> memoryview:
        """A read-only view of a store object, pinned while any view of it lives.

        A remote process (one that reaches the store over gRPC) maps its node's copy instead
        (a worker on a worker node), or gets a private copy (a remote driver).
        """
        mm = self._maps.get(oid)
        if mm is not None:
            if granted is not None:  # the agent pinned it for us again: give that pin back
                self._deferred.append((_UNMAPPED, oid))
            return memoryview(mm)
        if granted is None:
            granted = self.request(M.REQUEST, "pin", oid)
            if isinstance(granted, BaseException):
                raise granted
        if self.remote:
            return self._remote_view(oid, granted)
        offset, size = granted
        mm = mmap.mmap(self._arena_fd_get(), size, offset=offset, access=mmap.ACCESS_READ)
        self._maps[oid] = mm
        weakref.finalize(mm, self._deferred.append, (_UNMAPPED, oid))
        return memoryview(mm)

    def _remote_view(self, oid: bytes, granted: tuple[Any, ...]) -> memoryview:
        """A store object the head pinned for us (``granted``: its offset and size in the
        head's store, and for a worker on a worker node the peer addresses of other nodes
        holding a copy): a mapping of the node's copy, else a private copy over gRPC."""
        store = self._node_store
        try:  # the head keeps the object pinned while it is being read
            mm = store.map(oid, *granted) if store is not None else None
            if mm is None:
                return memoryview(self.conn.read_object(oid, granted[0], granted[1]))
        finally:
            self._deferred.append((_UNMAPPED, oid))
        self._maps[oid] = mm
        weakref.finalize(mm, store.release, oid)
        return memoryview(mm)

    # ------------------------------------------------------------------ objects
    def put(self, value: Any) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError("put() of an ObjectRef is not allowed; pass the ObjectRef itself instead")
        ser = serialize(value)
        return self.put_serialized(ser, _call_site.call_site() if self.record_sites else None)

    def put_serialized(self, ser: Serialized, site: str | None = None) -> ObjectRef:
        """Store ``ser`` as a new object; ``site``: where user code made it (ember._call_site)."""
        oid = self.ids.put_id()
        ref = self._owned_ref(oid)
        if ser.total <= M.INLINE_LIMIT:
            payload = ser.to_bytes()
            self.objects[oid] = (M.INLINE, payload)
            msg: tuple = (M.PUT, oid, payload, ser.contained)
        else:
            offset, size = self.write_to_store(oid, ser)
            self.objects[oid] = (M.STORE, size)
            msg = (M.SEAL, oid, offset, size, ser.contained)
        self.send(msg if site is None else (*msg, site))
        return ref

    def _fetch(self, oids: Iterable[bytes]) -> None:
        want = [o for o in oids if o not in self._requested and o not in self._owned_pending]
        if want:
            self._requested.update(want)
            self.send((M.FETCH, want))

    def _blocking(self) -> bool:
        """A worker about to wait gives its CPU back (see ember.worker)."""
        if self.mode != "worker" or self.current_task_id is None or self.blocked or self.no_block:
            return False
        self.blocked = True
        queued = list(self.task_queue)
        self.task_queue.clear()
        msgs: list[tuple] = [(M.BLOCKED,)]
        if queued:
            msgs.append((M.BOUNCE, [m[1] for m in queued]))
        self.send(*msgs)
        return True

    def _unblocking(self) -> None:
        self.blocked = False
        self.send((M.UNBLOCKED,))

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list[Any]:
        objects = self.objects
        ids = [r._id for r in refs]
        missing = [oid for oid in ids if oid not in objects]
        if missing:
            self._fetch(missing)
            deadline = None if timeout is None else time.monotonic() + timeout
            pos = [0]

            def ready() -> bool:
                i = pos[0]
                n = len(missing)
                while i < n and missing[i] in objects:
                    i += 1
                pos[0] = i
                return i == n

            if not ready():
                blocked = self._blocking()
                try:
                    ok = self.wait_until(ready, deadline)
                finally:
                    if blocked:
                        self._unblocking()
                if not ok:
                    left = sum(1 for oid in ids if oid not in objects)
                    raise GetTimeoutError(
                        f"get() timed out after {timeout} s: {left} of {len(ids)} objects are not ready yet"
                    )
        return [self.value_of(oid) for oid in ids]

    def value_of(self, oid: bytes) -> Any:
        """Deserialize a local object (raising its error if it holds one)."""
        entry = self.objects.get(oid)
        if entry is None:
            raise ObjectLostError(f"object {oid.hex()} is no longer available")
        kind, payload = entry
        if kind == M.INLINE:
            return deserialize(payload)
        if kind == M.STORE:
            return deserialize(self.map_object(oid))
        err = deserialize(payload)
        if isinstance(err, RayTaskError):
            raise err.as_instanceof_cause()
        raise err

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None,
             ids: list[bytes] | None = None) -> tuple[list, list]:
        """(ready, not ready) as ``ember.wait`` returns them; ``ids``: the refs' ids, if known.

        Written with C-level iteration (map, filterfalse): programs call it in loops over
        thousands of refs."""
        objects = self.objects
        if ids is None:
            ids = [r._id for r in refs]
        have = objects.__contains__
        flags = list(map(have, ids))
        if all(flags):
            if num_returns >= len(refs):
                return list(refs), []
        else:
            self._fetch(list(itertools.filterfalse(have, ids)))

        def ready() -> bool:
            return sum(map(have, ids)) >= num_returns

        if sum(flags) < num_returns and timeout != 0:
            deadline = None if timeout is None else time.monotonic() + timeout
            blocked = self._blocking()
            try:
                self.wait_until(ready, deadline)
            finally:
                if blocked:
                    self._unblocking()
        elif timeout == 0:
            # one non-blocking look at what has arrived
            with self._cond:
                if not self._reading:
                    self._reading = True
                    try:
                        self._pump(0.0)
                    finally:
                        self._reading = False
        # Like Ray: the ready list keeps the input order (of the first num_returns ready refs).
        flags = list(map(have, ids))
        if num_returns >= len(refs) and all(flags):
            return list(refs), []
        done, rest = [], []
        for r, ok in zip(refs, flags, strict=True):
            if ok and len(done) < num_returns:
                done.append(r)
            else:
                rest.append(r)
        return done, rest

    # ------------------------------------------------------------------ tasks
    def register_function(self, blob: bytes, contained: list[bytes]) -> bytes:
        fn_id = hashlib.sha1(blob).digest()[:16]
        if fn_id not in self._registered_fns:
            self.send((M.REGISTER_FN, fn_id, blob, contained))
            self._registered_fns.add(fn_id)
        return fn_id

    def pack_args(self, args: tuple, kwargs: dict) -> tuple[bytes, list[bytes], list[bytes], list]:
        """Serialize call arguments; top-level refs become dependencies resolved by the agent.

        Returns (blob, deps, contained refs, refs to keep alive until the submit is sent).
        """
        deps: list[bytes] = []
        keep: list = []
        if not args and not kwargs:
            return _EMPTY_ARGS, deps, [], keep

        def sub(x: Any) -> Any:
            if type(x) is ObjectRef:
                deps.append(x._id)
                keep.append(x)
                return Dep(len(deps) - 1)
            return x

        a = tuple(sub(x) for x in args)
        k = {key: sub(v) for key, v in kwargs.items()} if kwargs else {}
        ser = self._serialize_args(a, k)
        if ser.total > M.INLINE_LIMIT:
            # big arguments travel through the store, as dependencies
            def promote(x: Any) -> Any:
                if isinstance(x, Dep):
                    return x
                s = self._serialize_args(x, None)
                if s.total <= M.INLINE_LIMIT // 4:
                    return x
                ref = self.put_serialized(s)
                keep.append(ref)
                deps.append(ref._id)
                return Dep(len(deps) - 1)

            a = tuple(promote(x) for x in a)
            k = {key: promote(v) for key, v in k.items()}
            ser = self._serialize_args(a, k)
        return ser.to_bytes(), deps, ser.contained, keep

    @staticmethod
    def _serialize_args(a: Any, k: dict | None) -> Serialized:
        try:
            return serialize((a, k) if k is not None else a)
        except TypeError:
            # name the argument that cannot be pickled
            items = list(a) if k is not None else [a]
            if k:
                items += list(k.values())
            for item in items:
                serialize(item)
            raise

    def submit(
        self,
        fn_id: bytes,
        name: str,
        args: tuple,
        kwargs: dict,
        num_returns: int,
        resources: dict[str, float],
        max_retries: int,
        retry_exceptions: Any,
        extra: Any = None,
        ids: Callable[[bytes, int], tuple[bytes, ...]] = return_ids,
        strategy: tuple | None = None,
    ) -> list[ObjectRef]:
        """Submit a task; ``ids`` names its returns from its task id (a generator's differ);
        ``strategy``: its scheduling strategy as ``ember._scheduling.wire_strategy`` gives it."""
        blob, deps, contained, keep = self.pack_args(args, kwargs)
        task_id = self.ids.task_id()
        rids = ids(task_id, num_returns)
        refs = [self._owned_ref(r) for r in rids]
        self._owned_pending.update(rids)
        spec = (task_id, fn_id, name, blob, deps, rids, resources, max_retries, retry_exceptions, contained, extra,
                self.namespace)
        msg = (M.SUBMIT, spec if strategy is None else (*spec, strategy))
        self.send((*msg, _call_site.call_site()) if self.record_sites else msg)
        del keep
        return refs

    def cancel(self, ref: ObjectRef, force: bool, recursive: bool) -> None:
        self.send((M.CANCEL, task_of(ref._id), force, recursive))

    # ------------------------------------------------------------------ futures
    def add_done_callback(self, ref: ObjectRef, fut: Any) -> None:
        def run() -> None:
            try:
                fut.set_result(self.get([ref], None)[0])
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                fut.set_exception(exc)

        threading.Thread(target=run, name="ember-future", daemon=True).start()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        except Exception:  # noqa: BLE001
            pass
        self.closed = True
        self.conn.close()
        if self._node_store is not None:
            self._node_store.close()
        if self.inbox is not None:
            self.inbox.close()
        self.objects.clear()
        self._arena_view = None
        if self._arena_mm is not None:
            try:
                self._arena_mm.close()
            except BufferError:
                pass
            self._arena_mm = None
        if self._arena_fd is not None:
            os.close(self._arena_fd)
            self._arena_fd = None


_EMPTY_ARGS = serialize(((), {})).to_bytes()
