"""The node agent: one event loop that owns this node's tasks, workers and objects.

Drivers and workers talk to it over framed Unix sockets (``ember._wire``). The loop reads
everything that is ready, handles each message, dispatches queued tasks to workers, then
flushes every connection's output buffer without blocking.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import random
import selectors
import shutil
import signal
import socket
import time
import uuid
from collections import deque
from typing import Any

from ember import _messages as M
from ember._claims import ClaimSlot, claim_path
from ember._local_cluster import socket_dir
from ember._resources import acquire, describe_unmet, release
from ember._serialization import serialize
from ember._wire import RECV_CHUNK, ServerConnection
from ember.exceptions import (
    ActorUnschedulableError,
    ObjectLostError,
    ObjectStoreFullError,
    RayError,
    RaySystemError,
    TaskCancelledError,
    TaskUnschedulableError,
)

from ember_node.actors import ActorManager
from ember_node.head_state import HeadState, NodeRecord
from ember_node.history import History, limits_from_env
from ember_node.membership import Membership
from ember_node.memory_monitor import MemoryMonitor, node_views, settings_from_env
from ember_node.memory_usage import UsageReader
from ember_node.metrics import NodeMetrics
from ember_node.objects import PENDING, ClientRefs, Obj, ObjectTable
from ember_node.placement_groups import PlacementGroups, in_placement_group
from ember_node.protocol import check as check_message
from ember_node.protocol import name_of
from ember_node.requests import Requests
from ember_node.scheduler import Kind, Limits, Request, place, steal_candidate, strategy_of
from ember_node.store import Arena
from ember_node.streams import Streams
from ember_node.tasks import FINISHED, QUEUED, RUNNING, Task
from ember_node.worker_output import OutputBatch, WorkerOutput
from ember_node.workers import BUSY, DEAD, IDLE, RETIRING, NodeRec, WorkerRec, Zygote

log = logging.getLogger("ember.agent")

LOST_WORKER_GRACE_S = 1.0  # wait this long for a dead worker's exit status
IDLE_RETIRE_S = float(os.environ.get("EMBER_IDLE_WORKER_RETIRE_S", "30"))
HEARTBEAT_TIMEOUT_S = float(os.environ.get("EMBER_HEARTBEAT_TIMEOUT_S", "10"))
# A connection that has not said HELLO within this long is closed; at most this many may
# wait for theirs at once (the oldest goes to make room), so idle connections cannot use
# up the agent's file descriptors.
HELLO_TIMEOUT_S = float(os.environ.get("EMBER_HELLO_TIMEOUT_S", "10"))
MAX_UNGREETED = int(os.environ.get("EMBER_MAX_UNGREETED", "256"))
ACCEPT_BACKOFF_S = (0.05, 1.0)  # pause accepting this long (doubling) when out of descriptors
LOG_EVERY_S = 10.0  # a repeated problem (out of descriptors, a failing phase) is logged this often
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Client:
    """One connected process (driver or worker)."""

    __slots__ = ("conn", "kind", "pid", "refs", "worker", "node", "direct", "warned_shapes", "since", "job")

    def __init__(self, conn: ServerConnection, since: float = 0.0) -> None:
        self.conn = conn
        self.since = since  # when it connected (it must say HELLO within HELLO_TIMEOUT_S)
        self.kind = ""  # set by HELLO
        self.pid = 0
        self.refs = ClientRefs()
        self.worker: WorkerRec | None = None
        self.node: NodeRec | None = None  # set for a worker node's uplink
        self.direct: str | None = None  # a local driver's inbox for results (ember._direct)
        self.warned_shapes: set[tuple] = set()  # resource shapes it was told fit no node
        self.job = ""  # a driver's (or its output connection's) job id


def _is_cpu(name: str) -> bool:
    """The CPU, or a placement group's reserved CPU (``CPU_group_...``)."""
    return name == "CPU" or name.startswith("CPU_group_")


def _without_cpu(resources: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in resources.items() if not _is_cpu(k)}


def _cpu_of(resources: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in resources.items() if _is_cpu(k)}


def cancel_file(session_dir: str, pid: int) -> str:
    """Where the agent names the task it cancels for the worker with ``pid``."""
    return os.path.join(session_dir, f"cancel-{pid}")


def max_workers_per_node(totals: dict[str, float]) -> int:
    """Task and actor workers one node may run, blocked ones included
    (``EMBER_MAX_WORKERS_PER_NODE``; by default 8 per CPU, at least 256)."""
    env = os.environ.get("EMBER_MAX_WORKERS_PER_NODE")
    if env:
        return max(int(env), 1)
    return max(256, 8 * int(totals.get("CPU", 1)))


def error_blob(exc: BaseException) -> bytes:
    return serialize(exc).to_bytes()


class Agent(Membership, Requests):
    """A node agent for one machine (the embedded cluster's only node)."""

    def __init__(self, session_dir: str, totals: dict[str, float], capacity: int, embedded: bool) -> None:
        self.session_dir = session_dir
        self.node_id = uuid.uuid4().hex
        self.embedded = embedded
        self.address = ""
        self.heartbeat_timeout = HEARTBEAT_TIMEOUT_S
        self.totals = dict(totals)
        self.local = NodeRec(self.node_id, "", socket.gethostname(), totals, is_head=True)
        self.nodes: dict[str, NodeRec] = {self.node_id: self.local}
        self.available = self.local.available
        self._nodes_changed()  # self._largest and self._holders (see Membership)
        self._wids = itertools.count(1)
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        self.socket_dir = socket_dir(session_dir)  # short, whatever TMPDIR is
        self.socket_path = os.path.join(self.socket_dir, "agent.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.socket_path)
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, self._accept)
        name = os.path.basename(session_dir.rstrip("/"))
        self.arena = Arena(f"/dev/shm/ember-{name.removeprefix('ember-')}-{self.node_id[:8]}", capacity)
        self.table = ObjectTable(self.arena, os.path.join(session_dir, "spill"))
        self.table.on_ready = self._on_ready
        self.metrics = NodeMetrics(self)  # also hooks the table's spills and restores
        self.actors = ActorManager(self)
        self.history = History(*limits_from_env(os.environ))  # ended tasks, dead actors
        self.pgs = PlacementGroups(self.nodes, self._resources_changed, self._end_placement_group_work)
        actor_table = self.actors.actors
        self.table.on_free = self._on_freed
        # worker nodes holding a copy (or that held one: see NodeRec.dropped), told when freed
        self.remote_readers: dict[bytes, set[NodeRec]] = {}
        # an actor whose every handle is dropped before it was created never starts
        self.table.on_orphan = lambda oid: (self.actors.on_freed(oid) if oid in actor_table
                                            else self.streams.on_abandoned(oid))
        self.functions: dict[bytes, bytes] = {}
        # with --state-dir: the directory kept on disk (ember_node.head_state), rare events only
        self.head_state: HeadState | None = None
        self.tasks: dict[bytes, Task] = {}
        self.streams = Streams(self.tasks, self.table, self._send, self._note_copy)
        self.queues: dict[tuple, deque[Task]] = {}
        self.workers: dict[int, WorkerRec] = {}
        self.by_pid: dict[tuple[str, int], WorkerRec] = {}
        self.clients: dict[int, Client] = {}
        self.dirty: set[Client] = set()
        self.owner: Client | None = None
        self._view = memoryview(bytearray(RECV_CHUNK))
        self._last_timer = 0.0
        self.limits = Limits(max_workers_per_node(self.totals))
        self.backlogged: set[WorkerRec] = set()  # local workers with tasks queued behind the running one
        self.ungreeted: dict[Client, None] = {}  # connections yet to say HELLO, oldest first
        self._accept_paused_until = 0.0  # out of descriptors: accept again after this
        self._accept_backoff = ACCEPT_BACKOFF_S[0]
        self._logged_at: dict[str, float] = {}  # problem -> when it was last logged
        self.session = {
            "socket": self.socket_path,
            "socket_dir": self.socket_dir,  # where drivers put their inbox sockets
            "arena": self.arena.path,
            "arena_size": self.arena.capacity,
            "node_id": self.node_id,
            "session_dir": session_dir,
            "resources": self.totals,
        }
        self.memory = MemoryMonitor(settings_from_env(os.environ), UsageReader(), self._kill_worker)
        self.output = WorkerOutput(os.path.join(session_dir, "logs"))  # what workers print
        self.output_subs: dict[str, list[Client]] = {}  # job -> its drivers' output connections
        self.zygote = Zygote(self.socket_path, self.session, os.path.join(session_dir, "logs", "workers.log"))
        self.sel.register(self.zygote.fileno(), selectors.EVENT_READ, self._on_zygote)
        self._handlers = {
            M.HELLO: self._on_hello,
            M.REGISTER_FN: self._on_register_fn,
            M.SUBMIT: self._on_submit,
            M.PUT: self._on_put,
            M.SEAL: self._on_seal,
            M.FETCH: self._on_fetch,
            M.ADDREF: self._on_addref,
            M.RELEASE: self._on_release,
            M.UNPIN: self._on_unpin,
            M.BLOCKED: self._on_blocked,
            M.UNBLOCKED: self._on_unblocked,
            M.DONE: self._on_done,
            M.BOUNCE: self._on_bounce,
            M.CANCEL: self._on_cancel,
            M.REQUEST: self._on_request,
            M.SHUTDOWN: self._on_shutdown,
            M.HEARTBEAT: self._on_heartbeat,
            M.NODE_EVENT: self._on_node_event,
            M.NODE_OUTPUT: self._on_node_output,
            M.YIELDED: self.streams.on_yielded,
            M.CONSUMED: self.streams.on_consumed,
        }
        for _ in range(int(self.totals.get("CPU", 1)) or 1):
            self._start_worker(self.local)

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        """Serve until stopped. Nothing a peer sends, and no exception in one step, ends the
        loop: a failing step is logged (with its traceback) and the loop goes on."""
        sel = self.sel
        while not self.stopping:
            for key, mask in sel.select(0.2):
                try:
                    key.data(key, mask)
                except Exception:  # noqa: BLE001 - logged; the node stays up
                    self._log_often("event", "error handling an event on %r", key.fileobj, exc_info=True)
                if self.stopping:
                    break
            for step in (self._schedule, self._flush, self._timers):
                try:
                    step()
                except Exception:  # noqa: BLE001 - logged; the node stays up
                    self._log_often(step.__name__, "error in the agent's %s step", step.__name__, exc_info=True)

    def _log_often(self, what: str, fmt: str, *args: Any, exc_info: bool = False) -> None:
        """Log a problem that may repeat at most once per LOG_EVERY_S (per ``what``)."""
        now = time.monotonic()
        if now - self._logged_at.get(what, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged_at[what] = now
            log.error(fmt, *args, exc_info=exc_info)

    def _accept(self, key: Any, mask: int) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                self._accept_backoff = ACCEPT_BACKOFF_S[0]
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_FDS:
                    raise
                self._pause_accepting(exc)
                return
            now = time.monotonic()
            conn = ServerConnection(sock)
            client = Client(conn, now)
            self.clients[conn.fd] = client
            self.ungreeted[client] = None
            self.sel.register(sock, selectors.EVENT_READ, lambda k, m, c=client: self._on_readable(c, m))
            if len(self.ungreeted) > MAX_UNGREETED:
                oldest = next(iter(self.ungreeted))
                self._refuse(oldest, f"more than {MAX_UNGREETED} connections are waiting to say HELLO; "
                                     f"the oldest is closed")

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of file descriptors: stop watching the listener for a while (doubling up to
        a second) so the loop does not spin; pending connections wait in the backlog."""
        self._log_often("accept", "cannot accept connections on %s: %s; pausing %.2f s (raise the "
                        "open-file limit, `ulimit -n`, if this persists)", self.socket_path, exc,
                        self._accept_backoff)
        self._accept_paused_until = time.monotonic() + self._accept_backoff
        self._accept_backoff = min(self._accept_backoff * 2, ACCEPT_BACKOFF_S[1])
        try:
            self.sel.unregister(self.listener)
        except (KeyError, ValueError):
            pass

    def _resume_accepting(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self.sel.register(self.listener, selectors.EVENT_READ, self._accept)

    def _expire_ungreeted(self, now: float) -> None:
        for client in list(self.ungreeted):
            if now - client.since < HELLO_TIMEOUT_S:
                break
            self._refuse(client, f"it sent no HELLO within {HELLO_TIMEOUT_S:g} s")

    def _refuse(self, client: Client, reason: str) -> None:
        """Close ``client``'s connection for what it sent (or did not): logged, and told to
        the peer in a last GOODBYE message."""
        log.warning("closing the connection of %s %s: %s", client.kind or "an unidentified peer",
                    client.pid or "", reason)
        conn = client.conn
        if not conn.closed:
            try:
                conn.queue((M.GOODBYE, reason))
                conn.flush()
            except Exception:  # noqa: BLE001 - the peer may be gone already
                pass
        self._on_disconnect(client)

    def _fail_request(self, client: Client, msg: tuple, exc: Exception) -> None:
        """A handler raised on a well-formed message: an internal error. The traceback is
        logged; what the message asked for fails with a RaySystemError saying so."""
        name = name_of(msg)
        log.error("internal error handling %s from %s %s", name, client.kind, client.pid, exc_info=exc)
        err = RaySystemError(f"internal error in the node agent while handling {name}: "
                             f"{type(exc).__name__}: {exc} (the traceback is in the agent's log, "
                             f"{os.path.join(self.session_dir, 'logs')})")
        try:
            t = msg[0]
            if t == M.SUBMIT or t == M.DONE:
                tid = msg[1][0] if t == M.SUBMIT else msg[1]
                task = self.tasks.get(tid)
                if task is not None:
                    self._fail(task, err)
                elif t == M.SUBMIT:
                    blob = error_blob(err)
                    for rid in msg[1][5]:
                        self.table.complete(rid, M.ERROR, blob, [], None)
            elif t == M.FETCH:
                blob = error_blob(err)
                for oid in msg[1]:
                    self._send(client, (M.OBJ, oid, M.ERROR, blob))
        except Exception:  # noqa: BLE001 - failing the request failed too: logged, go on
            log.exception("could not fail the request %s after an internal error", name)

    def _on_readable(self, client: Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            if client.conn.flush():
                self.sel.modify(client.conn.sock, selectors.EVENT_READ,
                                lambda k, m, c=client: self._on_readable(c, m))
        if not mask & selectors.EVENT_READ:
            return
        conn = client.conn
        msgs = conn.read(self._view)
        if msgs:
            handlers = self._handlers
            for msg in msgs:
                problem = check_message(msg, bool(client.kind))
                if problem is not None:
                    self._refuse(client, problem)
                    return
                try:
                    handlers[msg[0]](client, msg)
                except Exception as exc:  # noqa: BLE001 - one failing request must not kill the node
                    self._fail_request(client, msg, exc)
                if conn.closed:  # a handler closed it (a refused HELLO)
                    return
        if conn.error:
            self._refuse(client, conn.error)
        elif msgs is None:
            if conn.reader.partial:
                log.warning("%s %s disconnected in the middle of a frame (%d bytes of it read)",
                            client.kind or "an unidentified peer", client.pid or "", conn.reader.partial)
            self._on_disconnect(client)

    def _send(self, client: Client, msg: tuple) -> None:
        if not client.conn.closed:
            client.conn.queue(msg)
            self.dirty.add(client)

    def _flush(self) -> None:
        if not self.dirty:
            return
        for client in self.dirty:
            conn = client.conn
            if conn.closed:
                continue
            if not conn.flush():
                self.sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                                lambda k, m, c=client: self._on_readable(c, m))
        self.dirty.clear()

    def _timers(self) -> None:
        now = time.monotonic()
        self.metrics.loop_alive_at = now  # /healthz: the loop is turning
        if self.memory.due(now):
            self.memory.tick(node_views(self.memory, self.local, self.nodes.values(), self.workers.values()))
        if now - self._last_timer < 0.1:
            return
        self._last_timer = now
        if self.pgs.pending:
            self.pgs.retry()
        self._resume_accepting(now)
        self._expire_ungreeted(now)
        self._forward_output(self.output.poll())
        for rec in list(self.workers.values()):
            if rec.state == DEAD and rec.lost_at is not None and now - rec.lost_at > LOST_WORKER_GRACE_S:
                self._finalize_worker(rec)
        for node in list(self.nodes.values()):
            if node.client is not None and node.alive and now - node.last_heartbeat > self.heartbeat_timeout:
                self.metrics.heartbeat_missed()
                self._node_dead(node, f"it sent no heartbeat for {self.heartbeat_timeout:g} s")
            self._retire_idle(node, now)

    def _forward_output(self, batches: list[OutputBatch]) -> None:
        """Send what workers printed to the output connections of the jobs it belongs to
        (lines not attributed to any job, e.g. a worker's start-up, go to every driver)."""
        if not batches or not self.output_subs:
            return
        every = [c for subs in self.output_subs.values() for c in subs]
        per_client: dict[Client, list] = {}
        for b in batches:
            for c in self.output_subs.get(b.job, ()) if b.job else every:
                per_client.setdefault(c, []).append((b.pid, b.is_stderr, b.name, b.lines))
        for c, items in per_client.items():
            self._send(c, (M.OUTPUT, items))

    def _on_node_output(self, client: Client, msg: tuple) -> None:
        """A worker node passes on what its workers printed (see ember_node.worker_node)."""
        if client.node is not None:
            self._forward_output([OutputBatch(job, pid, bool(is_err), name, list(lines))
                                  for job, pid, is_err, name, lines in msg[1]])

    def _job_of(self, client: Client) -> str:
        """The job of work ``client`` submits: a driver's own, a worker's current task's."""
        rec = client.worker
        if rec is None:
            return client.job
        if rec.actor is None and rec.inflight:
            return rec.inflight[0].job
        return rec.job

    def _retire_idle(self, node: NodeRec, now: float) -> None:
        """Workers started beyond a node's CPUs (for tasks blocked in get, or CPU-less
        tasks) exit after idling IDLE_RETIRE_S, so a burst does not leave them around."""
        keep = max(int(node.totals.get("CPU", 1)), 1)
        if len(node.idle) <= keep:
            return
        for rec in sorted(node.idle, key=lambda r: r.idle_since)[: len(node.idle) - keep]:
            if now - rec.idle_since < IDLE_RETIRE_S:
                break
            node.idle.remove(rec)
            rec.state = RETIRING
            self._send(rec.client, (M.EXIT,))

    # ------------------------------------------------------------------ connections
    def _on_hello(self, client: Client, msg: tuple) -> None:
        _, kind, pid, wid, _info = msg
        self.ungreeted.pop(client, None)
        client.kind = kind
        client.pid = pid
        if kind == "worker":
            rec = self.workers.get(wid)
            if rec is None or rec.client is not None:
                self._send(client, (M.EXIT,))
                return
            rec.node.starting -= 1
            rec.client = client
            rec.pid = pid
            self.by_pid[(rec.node.node_id, pid)] = rec
            client.worker = rec
            rec.state = IDLE
            rec.idle_since = time.monotonic()
            if rec.node.client is None:  # a local worker: tasks may be queued on it (pipelining)
                rec.claim = ClaimSlot(claim_path(self.session_dir, wid), create=True)
            rec.node.idle.append(rec)
        elif kind == "node":
            info = _info
            node = NodeRec(info["node_id"], info.get("address", ""), info.get("hostname", ""),
                           info["resources"], client=client)
            node.peer = info.get("peer") or ""
            self.nodes[node.node_id] = node
            self._nodes_changed()
            client.node = node
            if self.head_state is not None:
                self.head_state.save_node(NodeRecord(node.node_id, node.address, node.hostname, node.totals))
            log.info("%s joined with %s", node.describe(), node.totals)
            for _ in range(int(node.totals.get("CPU", 1)) or 1):
                self._start_worker(node)
        elif kind == "output":  # a driver's connection for what its tasks print
            client.job = (_info or {}).get("job") or ""
            self.output_subs.setdefault(client.job, []).append(client)
        else:
            client.direct = (_info or {}).get("direct")
            client.job = (_info or {}).get("job") or ""
            if self.embedded and self.owner is None:
                self.owner = client

    def _on_disconnect(self, client: Client) -> None:
        conn = client.conn
        self.ungreeted.pop(client, None)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.close()
        self.clients.pop(conn.fd, None)
        self.dirty.discard(client)
        rec = client.worker
        if rec is not None:
            rec.state = DEAD
            rec.lost_at = time.monotonic()
            if rec in rec.node.idle:
                rec.node.idle.remove(rec)
            if rec.exit_status is not None or not rec.node.alive:
                self._finalize_worker(rec)
            return
        if client.node is not None:
            self._node_dead(client.node, "its agent disconnected")
            return
        if client.kind == "output":
            subs = self.output_subs.get(client.job)
            if subs is not None and client in subs:
                subs.remove(client)
                if not subs:
                    del self.output_subs[client.job]
            return
        self._end_work_of(client)
        self.actors.on_client_gone(client)
        self.table.drop_client(client.refs)
        if client is self.owner:
            log.info("the driver that owns this embedded cluster disconnected; stopping")
            self.stopping = True

    # ------------------------------------------------------------------ functions and tasks
    def _on_register_fn(self, client: Client, msg: tuple) -> None:
        _, fn_id, blob, contained = msg
        if fn_id not in self.functions:
            self.functions[fn_id] = blob
            if self.head_state is not None:
                self.head_state.save_function(fn_id, blob)
            for c in contained:  # refs captured by a function live as long as the cluster
                self.table.pin(c)

    def _on_submit(self, client: Client, msg: tuple) -> None:
        task = Task(msg[1], client)
        task.job = self._job_of(client)
        table = self.table
        for rid in task.rids:
            table.pending(rid, client.refs).subs.append(client)
        if len(msg) > 2:
            table.note_site(task.rids, msg[2])
        kind = task.extra[0] if task.extra else None
        if kind != "create":  # actor creation is counted by ember_actors, not as a task
            self.metrics.task_submitted(task.name)
        if kind == "call":
            if not self.actors.on_call(task, client):
                return
        elif task.fn_id not in self.functions:
            self._fail(task, RayError(f"task {task.name}: its function was never registered"), pinned=False)
            return
        if kind == "create" and not self.actors.on_create(task, client):
            return
        objs = table.objs
        for d in task.deps:
            if d not in objs:
                self._fail(task, ObjectLostError(
                    f"argument {d.hex()} of task {task.name} is no longer available: every "
                    f"reference to it was dropped before the task was submitted"), pinned=False)
                return
        for c in task.contained:
            table.pin(c)
        failed = None
        for d in task.deps:
            obj = objs[d]
            obj.pins += 1
            if obj.state == PENDING:
                task.missing += 1
                obj.dep_tasks.append(task)
            elif obj.kind == M.ERROR and failed is None:
                failed = obj
        self.tasks[task.tid] = task
        if failed is not None:
            self._fail_with_blob(task, failed.payload)
        elif task.missing == 0:
            self._requeue(task)

    def _end_work_of(self, driver: Client) -> None:
        """A driver is gone: its queued tasks are dropped, its running ones cancelled (their
        workers killed), so its CPUs come back (its actors and objects go elsewhere)."""
        job = driver.job
        if not job or any(c is not driver and c.kind == "driver" and c.job == job for c in self.clients.values()):
            return  # not a driver with work of its own (a tool), or its job has another driver
        self.pgs.remove_job(job)  # its placement groups that are not detached
        mine = [t for t in self.tasks.values()
                if t.job == job and t.state != FINISHED and not (t.extra and t.extra[0] == "call")]
        if not mine:
            return
        for t in mine:
            t.cancelled = True
        for rec in list(self.backlogged):  # unstarted ones queued on workers come back first
            if any(t.job == job for t in rec.inflight):
                self._take_back_unstarted(rec)
        killed = 0
        for t in mine:
            rec = t.worker
            if t.state == QUEUED and rec is None:
                self._fail(t, TaskCancelledError(f"task {t.name} was dropped: its driver exited"))
            elif rec is not None and rec.inflight and rec.inflight[0] is t:
                killed += 1
                self._kill_worker(rec)
            elif rec is not None:  # queued behind another driver's task: the worker skips it
                self._send(rec.client, (M.CANCEL, t.tid))
        log.info("driver pid %s exited: dropped %d of its tasks, killed %d workers running them",
                 driver.pid, len(mine) - killed, killed)

    def _requeue(self, task: Task, front: bool = False) -> None:
        task.state = QUEUED
        if task.extra and task.extra[0] == "call":
            actor = self.actors.actors.get(task.extra[1])
            if actor is not None:
                self.actors.dispatch(actor, task.owner)
            return
        q = self.queues.get(task.shape)
        if q is None:
            q = self.queues[task.shape] = deque()
        if front:
            q.appendleft(task)
        else:
            q.append(task)

    def _schedule(self) -> None:
        if self.queues:
            self._place_queued()
        if self.backlogged and self.local.idle:
            self._steal()

    def _request(self, task: Task) -> Request:
        """What the scheduler needs of ``task`` (built once per placement attempt)."""
        create = task.extra is not None and task.extra[0] == "create"
        objs = self.table.objs
        # a task reading a store object is never queued behind another: the pin it takes
        # for the worker would hold the object while the task waits
        store_args = any((o := objs.get(d)) is not None and o.kind == M.STORE for d in task.deps)
        return Request(task.resources, task.shape, task.deps if self.remote_readers else (),
                       may_pipeline=not create and not store_args,
                       needs_cpu_node=create and bool(task.extra[1].get("cpu_node")),
                       strategy=strategy_of(task.strategy))

    def _place_queued(self) -> None:
        nodes = self.nodes.values()
        workers = self.workers.values()
        for shape, q in list(self.queues.items()):
            started = 0
            while q:
                task = q[0]
                if task.state != QUEUED or task.cancelled:
                    q.popleft()
                    continue
                d = place(self._request(task), nodes, workers, self._largest, self.remote_readers, self.limits,
                          self._holders)
                kind = d.kind
                if kind is Kind.RUN:
                    q.popleft()
                    d.node.idle.remove(d.worker)
                    self._run_on(d.worker, task)
                elif kind is Kind.PIPELINE:
                    q.popleft()
                    self._pipeline(d.worker, task)
                elif kind is Kind.START and started < len(q):
                    started += 1
                    self._start_worker(d.node)
                elif kind is Kind.INFEASIBLE:
                    for t in q:  # the whole queue has this shape
                        self._note_infeasible(t)
                    break
                elif kind is Kind.STUCK:
                    q.popleft()
                    self._fail(task, TaskUnschedulableError(
                        f"task {task.name} cannot start: {d.node.describe()} already runs "
                        f"{d.node.nworkers} workers (the limit, EMBER_MAX_WORKERS_PER_NODE="
                        f"{self.limits.max_workers_per_node}) and every one of them waits on other "
                        f"work (nested tasks blocked in get). Raise EMBER_MAX_WORKERS_PER_NODE when "
                        f"starting the node, or nest fewer levels of tasks that wait on each other."))
                elif kind is Kind.UNSCHEDULABLE:
                    q.popleft()
                    self._fail_unschedulable(task, d.node)
                else:  # WAIT (or enough workers already starting for this queue)
                    break
            if not q:
                del self.queues[shape]

    def _fail_unschedulable(self, task: Task, node: NodeRec | None) -> None:
        """``task``'s hard node affinity names a node that is gone or too small for it."""
        create = task.extra is not None and task.extra[0] == "create"
        what = f"{'actor' if create else 'task'} {task.name}"
        node_id = task.strategy[1]
        why = (f"node {node_id} is not in the cluster (or has died)" if node is None or not node.alive
               else f"{node.describe()} could never fit it ({describe_unmet(what, task.resources, node.totals)})")
        exc_type = ActorUnschedulableError if create else TaskUnschedulableError
        exc = exc_type(f"{what} cannot be scheduled: its NodeAffinitySchedulingStrategy(soft=False) requires "
                       f"a node where {why}. Pass soft=True to let it run elsewhere, or name a live node "
                       f"from ember.nodes().")
        self._fail(task, exc)  # an actor's creation: the actor dies with this cause

    def _resources_changed(self) -> None:
        """Placement groups reserved or gave back resources: views and queued work follow."""
        self._nodes_changed()
        for q in self.queues.values():
            for t in q:
                t.pending_reason = None
        self._schedule()

    def _end_placement_group_work(self, pg_hex: str) -> None:
        """A placement group was removed: its actors die and its tasks fail (queued) or are
        cancelled (running, their workers killed), as Ray does."""
        suffix = "_" + pg_hex
        def in_group(resources: dict) -> bool:
            return any(k.endswith(suffix) for k in resources)
        for actor in list(self.actors.actors.values()):
            if in_group(actor.spec.get("held", {})):
                self.actors.kill(actor.aid, no_restart=True, reason="died: its placement group was removed")
        for t in list(self.tasks.values()):
            if t.state == FINISHED or t.extra is not None or not in_group(t.resources):
                continue
            rec = t.worker
            if rec is None:
                self._fail(t, TaskCancelledError(f"task {t.name} was cancelled: its placement group was removed"))
            else:
                t.cancelled = True
                if rec.inflight and rec.inflight[0] is t:
                    self._kill_worker(rec)
                else:
                    self._send(rec.client, (M.CANCEL, t.tid))

    def _note_infeasible(self, task: Task) -> None:
        """``task`` fits no node of the cluster: it stays pending (a node that fits may join),
        with its reason for ``ember status``/``ember list tasks``; its driver is warned once
        per resource shape."""
        if task.pending_reason is not None:
            return
        what = f"{'actor' if task.extra and task.extra[0] == 'create' else 'task'} {task.name}"
        if in_placement_group(task.resources):  # no warning, as in Ray
            task.pending_reason = self.pgs.why_waiting(what, task.resources)
            return
        problem = describe_unmet(what, task.resources, self._largest) or f"{what} fits no node"
        task.pending_reason = problem
        driver = self._driver_of(task)
        if driver is not None and task.shape not in driver.warned_shapes:
            driver.warned_shapes.add(task.shape)
            text = (f"{what} cannot be scheduled right now: {problem.split(' needs ', 1)[-1]} "
                    f"It stays pending and will run when a node that fits joins the cluster "
                    f"(ember.cancel ends it).")
            log.warning("%s", text)
            self._send(driver, (M.WARN, text))

    def _driver_of(self, task: Task) -> Client | None:
        """The connection of the driver whose job ``task`` is (for messages to its user)."""
        owner = task.owner
        if owner.worker is None and owner.node is None:
            return owner
        for c in self.clients.values():
            if c.kind == "driver" and c.job and c.job == task.job:
                return c
        return None

    def _run_on(self, rec: WorkerRec, task: Task) -> None:
        """Start ``task`` (or an actor's creation) on the idle worker ``rec``."""
        task.pending_reason = None
        task.seq = 0  # given to an idle worker: it starts at once and is never taken back
        if task.extra is not None and task.extra[0] == "create":
            actor = self.actors.actors.get(task.rids[0])
            if actor is None or actor.state == "DEAD":
                self._worker_idle(rec)
                return
            self._hold(rec, actor.spec["held"])
            self.actors.start(actor, rec)
            return
        self._hold(rec, task.resources)
        rec.shape = task.shape
        rec.state = BUSY
        self._assign(rec, task)

    def _pipeline(self, rec: WorkerRec, task: Task) -> None:
        """Queue ``task`` behind ``rec``'s running one, numbered so it can be taken back."""
        rec.seq += 1
        task.seq = rec.seq
        self.backlogged.add(rec)
        self._assign(rec, task)

    def _steal(self) -> None:
        """Idle local workers take the unstarted tasks queued behind busy ones."""
        backlogged = self.backlogged
        for idle in list(self.local.idle):
            victim = steal_candidate(idle, backlogged)
            if victim is None:
                break
            if not self._take_back_unstarted(victim):
                backlogged.discard(victim)  # busy with its slot right now: next time
                break
        for rec in [r for r in backlogged if len(r.inflight) <= 1]:
            backlogged.discard(rec)
        if self.queues:
            self._place_queued()

    def _take_back_unstarted(self, rec: WorkerRec) -> bool:
        """Take back the tasks queued on ``rec`` that it has not started (cancelled ones
        fail, the rest go back to the front of their queues); False if it cannot be done now."""
        if rec.claim is None:
            return False
        started = rec.claim.revoke(rec.seq)
        if started is None:
            return False
        back = [t for t in rec.inflight if t.seq > started]
        if not back:
            return True
        for t in back:
            rec.inflight.remove(t)
        for t in reversed(back):
            t.worker = None
            if t.cancelled:
                self._fail(t, TaskCancelledError(f"task {t.name} was cancelled before it ran"))
            else:
                self._requeue(t, front=True)
        if not rec.inflight and rec.state == BUSY and rec.actor is None:
            self._worker_idle(rec)
        return True

    def _peers_for(self, oid: bytes, reader: NodeRec) -> tuple[str, ...]:
        """Where ``reader`` can fetch ``oid`` other than here: the peer ports of other live
        worker nodes holding a copy (a loopback address only for a node on the same host)."""
        peers = []
        for node in self.remote_readers.get(oid, ()):
            if node is reader or not node.alive or not node.peer or oid in node.dropped:
                continue
            host = node.peer.rsplit(":", 1)[0].strip("[]")
            if (host.startswith("127.") or host in ("localhost", "::1")) and node.hostname != reader.hostname:
                continue
            peers.append(node.peer)
        random.shuffle(peers)  # spread the readers of one object over its holders
        return tuple(peers)

    def _dep_values(self, rec: WorkerRec, task: Task) -> list:
        """The values of a task's dependencies as the worker receives them.

        Store objects are pinned for the worker, which maps them (or, on another node,
        streams their bytes over gRPC) and then unpins them.
        """
        deps: list = []
        table = self.table
        try:
            for d in task.deps:
                obj = table.objs[d]
                if obj.kind != M.STORE:
                    deps.append((d, M.INLINE, obj.payload))
                elif rec.node.client is None:
                    deps.append((d, M.STORE, table.read_pin(d, rec.client.refs)))
                else:  # its node fetches a copy (from a peer that has one, else from here)
                    deps.append((d, M.STORE, (*table.read_pin(d, rec.client.refs), self._peers_for(d, rec.node))))
                    self._note_reader(rec.node, d)
        except BaseException:
            for d, kind, _ in deps:
                if kind == M.STORE:
                    table.read_unpin(d, rec.client.refs)
            raise
        return deps

    def _assign(self, rec: WorkerRec, task: Task) -> None:
        try:
            deps = self._dep_values(rec, task)
        except Exception as exc:  # noqa: BLE001 - the task fails, the node stays up
            if not isinstance(exc, ObjectStoreFullError | ObjectLostError | KeyError):
                log.error("internal error giving task %s its arguments", task.name, exc_info=exc)
                exc = RaySystemError(f"internal error in the node agent while giving task {task.name} "
                                     f"its arguments: {type(exc).__name__}: {exc}")
            self._fail(task, exc if isinstance(exc, RayError) else ObjectLostError(str(exc)))
            if not rec.inflight:
                self._worker_idle(rec)
            return
        self._send_exec(rec, task, None, deps)

    def _send_exec(self, rec: WorkerRec, task: Task, actor: tuple | None, deps: list | None = None) -> None:
        """Send ``task`` to ``rec`` (``deps``: dependency values, computed here when None)."""
        if deps is None:
            deps = self._dep_values(rec, task)
        fn_blob = None
        fn_id = task.fn_id
        if fn_id and fn_id not in rec.known_fns:
            fn_blob = self.functions[fn_id]
            rec.known_fns.add(fn_id)
        rec.inflight.append(task)
        task.worker = rec
        task.state = RUNNING
        task.started_at = time.monotonic()  # the memory monitor kills the newest first
        owner = task.owner
        has_gpus = bool(rec.node.gpus.free)
        if actor is None or actor[0] != "call":  # an actor's output stays its creator's
            rec.job = task.job
        # what the worker's runtime context reports (ember.runtime_context), whose output it is
        ctx = {"namespace": task.namespace, "job": task.job, "resources": task.resources}
        if owner.direct and rec.node.client is None and not owner.conn.closed:
            ctx["reply"] = owner.direct  # the worker may send the result straight back
        if has_gpus:  # a node with GPUs shows each task only its own (none without num_gpus)
            ctx["gpus"] = rec.gpu_ids
        self._send(rec.client, (M.EXEC, (task.tid, fn_id, fn_blob, task.name, task.args, deps,
                                         task.rids, task.retry_exc, task.retries_left(), ctx, actor,
                                         task.seq)))

    def _hold(self, rec: WorkerRec, resources: dict[str, float]) -> None:
        """Give ``rec`` the resources it runs with (and the GPU ids to make visible)."""
        rec.held = {k: v for k, v in resources.items() if v}  # (a zero marker is no resource)
        acquire(rec.node.available, rec.held)
        gpus = rec.held.get("GPU")
        if gpus:
            rec.gpu_ids = rec.node.gpus.pick(gpus) or []
            rec.node.gpus.take(rec.gpu_ids, gpus)

    def _release_held(self, rec: WorkerRec) -> None:
        """Return what ``rec`` held (a blocked worker gave its CPU back already)."""
        held = rec.held
        if held:
            # a removed placement group's renamed resources are gone from the node: not given back
            held = {k: v for k, v in held.items() if k in rec.node.totals}
            release(rec.node.available, _without_cpu(held) if rec.blocked else held)
            if rec.gpu_ids:
                rec.node.gpus.give(rec.gpu_ids, held.get("GPU", 0.0))
        rec.gpu_ids = []
        rec.held = None

    def _worker_idle(self, rec: WorkerRec) -> None:
        self._release_held(rec)
        rec.shape = None
        rec.state = IDLE
        rec.idle_since = time.monotonic()
        rec.node.idle.append(rec)

    def _on_done(self, client: Client, msg: tuple) -> None:
        _, tid, results, retry, duration, direct = msg
        rec = client.worker
        task = self.tasks.get(tid)
        if rec is None or (task is not None and task.worker is not rec):
            # a late result from a worker we gave up on (its node was declared dead, and the
            # task was retried elsewhere): the retry's result is the one that counts
            task = None
        if rec is not None:
            for queued in rec.inflight:
                if queued.tid == tid:
                    rec.inflight.remove(queued)
                    break
        if task is not None:
            if rec is not None:
                rec.idle_since = time.monotonic()  # doubles as "last finished a task at"
            if retry and not task.cancelled:
                task.attempt += 1
                self.metrics.task_retried(task.name, duration)
                task.worker = None
                self._requeue(task)
            else:
                objs = self.table.objs
                for rid, kind, payload, contained in results:
                    if direct:  # the owner has the value already
                        obj = objs.get(rid)
                        if obj is not None and task.owner in obj.subs:
                            obj.subs.remove(task.owner)
                    self.table.complete(rid, kind, payload, contained, client.refs)
                    if kind == M.STORE:
                        self._note_copy(client, rid)
                actor = rec.actor if rec is not None else None
                failed = bool(results) and results[0][1] == M.ERROR
                self.history.task_ended(task, results[0][2] if failed else None)
                if actor is not None and task is actor.create_task:
                    # the creation spec (and its arguments) stays pinned for restarts
                    task.state = FINISHED
                    self.actors.on_created(actor, task, results)
                else:
                    self.metrics.task_finished(task.name, duration, failed)
                    self._release_task(task)
        else:
            # a task we no longer track (or no longer from this worker): free what it wrote
            for rid, kind, payload, _ in results:
                if kind == M.STORE:
                    client.refs.creating.pop(rid, None)
                    self.table.arena.free(*payload)
        if rec is not None and not rec.inflight and rec.state == BUSY and rec.actor is None:
            self._worker_idle(rec)

    def _release_task(self, task: Task) -> None:
        task.state = FINISHED
        self.tasks.pop(task.tid, None)
        table = self.table
        for d in task.deps:
            table.unpin(d)
        for c in task.contained:
            table.unpin(c)

    def _fail(self, task: Task, exc: BaseException, pinned: bool = True) -> None:
        self._fail_with_blob(task, error_blob(exc), pinned)

    def _fail_with_blob(self, task: Task, blob: bytes, pinned: bool = True) -> None:
        if task.state == FINISHED:
            return
        self.history.task_ended(task, blob)
        if not (task.extra and task.extra[0] == "create"):
            self.metrics.task_finished(task.name, None, True)
        for rid in task.rids:
            self.table.complete(rid, M.ERROR, blob, [], None)
        if pinned:
            self._release_task(task)
        else:
            task.state = FINISHED
        if task.extra:
            if task.extra[0] == "create":
                self.actors.on_create_failed(task, blob)
            elif task.extra[0] == "call":  # a failed call no longer holds up the calls behind it
                actor = self.actors.actors.get(task.extra[1])
                if actor is not None:
                    self.actors.dispatch(actor, task.owner)

    def _on_bounce(self, client: Client, msg: tuple) -> None:
        rec = client.worker
        for spec in reversed(msg[1]):
            task = self.tasks.get(spec[0])
            if task is None or task.state != RUNNING or task.worker is not rec or rec is None:
                continue  # e.g. taken back from this worker already, and given to another
            try:
                rec.inflight.remove(task)
            except ValueError:
                pass
            task.worker = None
            for d in task.deps:  # the worker never mapped them
                obj = self.table.objs.get(d)
                if obj is not None and obj.kind == M.STORE and rec is not None:
                    self.table.read_unpin(d, rec.client.refs)
            self._requeue(task, front=True)

    def _on_blocked(self, client: Client, msg: tuple) -> None:
        rec = client.worker
        if rec is not None and not rec.blocked:
            rec.blocked = True
            if rec.held:  # only the CPU: GPUs and the rest stay held
                release(rec.node.available, _cpu_of(rec.held))

    def _on_unblocked(self, client: Client, msg: tuple) -> None:
        rec = client.worker
        if rec is not None and rec.blocked:
            rec.blocked = False
            if rec.held:
                acquire(rec.node.available, _cpu_of(rec.held))

    def _on_cancel(self, client: Client, msg: tuple) -> None:
        _, tid, force, _recursive = msg
        task = self.tasks.get(tid)
        if task is None or task.state == FINISHED:
            return
        task.cancelled = True
        if task.state == QUEUED:
            self._fail(task, TaskCancelledError(f"task {task.name} was cancelled before it ran"))
            return
        rec = task.worker
        if rec is None:
            return
        if task.queued_behind() and self._take_back_unstarted(rec) and task.state == FINISHED:
            return  # it had not started: failed as cancelled now, not after the running one
        if force:
            self._kill_worker(rec)
            return
        self._send(rec.client, (M.CANCEL, tid))
        if (rec.inflight and rec.inflight[0] is task and not rec.blocked and rec.pid
                and rec.node.client is None):
            # The running task is interrupted by a signal; which task it is for goes in a file,
            # since the CANCEL message may sit behind a backlog the busy worker is not reading.
            path = cancel_file(self.session_dir, rec.pid)
            with open(path + ".tmp", "w") as f:
                f.write(tid.hex())
            os.replace(path + ".tmp", path)
            try:
                os.kill(rec.pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------------ objects
    def _on_freed(self, oid: bytes) -> None:
        """An object is gone: end its actor if it was one, drop copies cached on other nodes."""
        if oid in self.actors.actors:
            self.actors.on_freed(oid)
        readers = self.remote_readers.pop(oid, None)
        if readers:
            for node in readers:
                node.dropped.discard(oid)
                if node.alive:
                    self._send(node.client, (M.EVICT, [oid]))

    def _on_ready(self, obj: Obj) -> None:
        if obj.subs:
            for client in obj.subs:
                self._deliver(client, obj)
            obj.subs = []
        if obj.dep_tasks:
            tasks = obj.dep_tasks
            obj.dep_tasks = []
            is_error = obj.kind == M.ERROR
            for task in tasks:
                if task.state != QUEUED or task.worker is not None or task.tid not in self.tasks:
                    continue
                if is_error:
                    self._fail_with_blob(task, obj.payload)
                else:
                    task.missing -= 1
                    if task.missing == 0:
                        self._requeue(task)

    def _deliver(self, client: Client, obj: Obj) -> None:
        if obj.kind == M.STORE:
            self._send(client, (M.OBJ, obj.oid, M.STORE, obj.size))
        else:
            self._send(client, (M.OBJ, obj.oid, obj.kind, obj.payload))

    def _on_put(self, client: Client, msg: tuple) -> None:
        _, oid, payload, contained = msg[:4]
        self.table.put_inline(oid, payload, contained, client.refs)
        if len(msg) > 4:
            self.table.note_site((oid,), msg[4])

    def _on_seal(self, client: Client, msg: tuple) -> None:
        _, oid, offset, size, contained = msg[:5]
        self.table.seal(oid, offset, size, contained, client.refs)
        if len(msg) > 5:
            self.table.note_site((oid,), msg[5])
        self._note_copy(client, oid)

    def _note_copy(self, client: Client, oid: bytes) -> None:
        """A worker on a worker node wrote ``oid``: its node's store keeps a copy (if it had
        room), which locality may use and which must go when the object is freed."""
        rec = client.worker
        if rec is not None and rec.node.client is not None and oid in self.table.objs:
            self._note_reader(rec.node, oid)

    def _note_reader(self, node: NodeRec, oid: bytes) -> None:
        """``node``'s store has (or is about to have) a copy of ``oid``: EVICT goes to it when
        the object is freed, and locality and other nodes' fetches may use it."""
        self.remote_readers.setdefault(oid, set()).add(node)
        node.dropped.discard(oid)

    def _on_fetch(self, client: Client, msg: tuple) -> None:
        objs = self.table.objs
        for oid in msg[1]:
            obj = objs.get(oid)
            if obj is None:
                self._send(client, (M.OBJ, oid, M.ERROR, error_blob(ObjectLostError(
                    f"object {oid.hex()} is gone: every reference to it was dropped, so it was freed"))))
            elif obj.state == PENDING:
                obj.subs.append(client)
            else:
                self._deliver(client, obj)

    def _on_addref(self, client: Client, msg: tuple) -> None:
        table = self.table
        for oid in msg[1]:
            table.addref(oid, client.refs)

    def _on_release(self, client: Client, msg: tuple) -> None:
        table = self.table
        for oid in msg[1]:
            table.release(oid, client.refs)

    def _on_unpin(self, client: Client, msg: tuple) -> None:
        table = self.table
        for oid in msg[1]:
            table.read_unpin(oid, client.refs)

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        for rec in list(self.workers.values()):
            self._kill_worker(rec)
        self.zygote.stop()
        self.output.close()
        for client in list(self.clients.values()):
            client.conn.close()
        self.sel.close()
        self.listener.close()
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        self.arena.close()
        shutil.rmtree(os.path.join(self.session_dir, "spill"), ignore_errors=True)
