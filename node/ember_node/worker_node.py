"""A worker node: joins a head over gRPC and runs the workers the head asks for.

The head schedules the whole cluster; a worker node contributes its resources, a worker
pool and an object store. It dials the head, registers, heartbeats every second, forks
workers on request from its own zygote, and reports their pids and exit statuses. Its
workers talk to the head directly over gRPC and read large objects through the node's store
(``ember_node.node_store``), which fetches each once for all of them, from the head or from
another worker node's peer port; its own peer port serves the node's copies the same way
(the only port a worker node opens, token-checked). When the head goes away, the node kills
its workers and registers again, retrying with backoff, so a restarted head gets it back.
What its workers print is tailed from their files here and passed to the head, a few times
a second, which sends it on to the drivers (see ``ember._output``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any

from ember import _messages as M
from ember._local_cluster import end_session, socket_dir, write_pid_file
from ember._oom import keep_agent_last
from ember._private_dir import UnsafePathError
from ember._remote import GrpcConnection, ping
from ember._wire import ConnectionClosed

from ember_node.fd_limit import raise_open_file_limit
from ember_node.grpc_server import serve_peer
from ember_node.leftovers import sweep_stale_arenas
from ember_node.memory_usage import UsageReader
from ember_node.node_store import NodeStore, PeerFetcher
from ember_node.session_dir import prepare_session_dir
from ember_node.store import Arena, available_memory, default_capacity, task_memory
from ember_node.worker_output import WorkerOutput
from ember_node.workers import Zygote

log = logging.getLogger("ember.worker_node")

HEARTBEAT_S = 1.0
OUTPUT_POLL_S = 0.2  # how often what workers print is passed on to the head


class _SharedOutput:
    """A WorkerOutput used from two threads (zygote events, and the poll that sends)."""

    def __init__(self, output: WorkerOutput) -> None:
        self._output = output
        self._lock = threading.Lock()

    def watch(self, pid: int) -> None:
        with self._lock:
            self._output.watch(pid)

    def poll(self) -> list:
        with self._lock:
            return self._output.poll()

    def forget(self, pid: int) -> list:
        with self._lock:
            return self._output.forget(pid)

    def close(self) -> None:
        with self._lock:
            self._output.close()

    def send(self, conn: GrpcConnection, batches: list) -> bool:
        """Pass ``batches`` to the head; False once the connection is gone."""
        if not batches:
            return True
        try:
            conn.send((M.NODE_OUTPUT, [(b.job, b.pid, b.is_stderr, b.name, b.lines) for b in batches]))
        except ConnectionClosed:
            return False
        return True


class WorkerNode:
    """One registration with the head: a zygote, a heartbeat, and the head's commands."""

    def __init__(self, head: str, token_file: str, totals: dict[str, float], session_dir: str,
                 advertise: str, tls_ca: str | None = None, store_capacity: int | None = None,
                 peer_bind: tuple[str, int] | None = ("127.0.0.1", 0), peer_host: str = "127.0.0.1") -> None:
        self.head = head
        # where this node's store serves copies to other nodes (None: it does not), and the
        # host the others reach it at
        self.peer_bind = peer_bind
        self.peer_host = peer_host
        self.store_capacity = store_capacity or default_capacity()
        self.store: NodeStore | None = None
        self.tls_ca = tls_ca
        self.token_file = token_file
        self.totals = totals
        self.session_dir = session_dir
        self.advertise = advertise
        self.node_id = uuid.uuid4().hex
        self.pids: set[int] = set()
        self.stopping = False

    def run_once(self) -> None:
        """Serve one head connection until it ends."""
        with open(self.token_file) as f:
            token = f.read().strip()
        ping(self.head, token, tls_ca=self.tls_ca)
        conn = GrpcConnection(self.head, token, self.tls_ca)
        # a store per registration: a new head knows nothing of the copies of the last one
        arena = Arena(f"/dev/shm/ember-node-{self.node_id[:12]}", self.store_capacity)
        store_sock = os.path.join(socket_dir(self.session_dir), f"store-{self.node_id[:12]}.sock")
        peers = PeerFetcher(token)
        peer_server = None
        try:
            store = NodeStore(arena, store_sock,
                              conn.read_object,
                              lambda oid, offset, data: conn.write_object(oid, offset, [data]),
                              peers.fetch)
            peer_address = ""
            if self.peer_bind is not None:
                peer_server, port = serve_peer(self.node_id, store, *self.peer_bind, token)
                host = self.peer_host
                peer_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        except BaseException:
            if peer_server is not None:
                peer_server.stop(None)
            arena.close()
            conn.close()
            raise
        self.store = store
        session = {"head_address": self.head, "token_file": self.token_file, "node_id": self.node_id,
                   "session_dir": self.session_dir, "tls_ca": self.tls_ca,
                   "node_store": store_sock, "node_arena_fd": arena.fd}
        zygote = None
        done = threading.Event()
        try:
            # the workers inherit the arena's descriptor, so its name can go now: the memory
            # returns to the system with the last process even if this one is SIGKILLed
            zygote = Zygote("", session, os.path.join(self.session_dir, "logs", "workers.log"),
                            pass_fds=(arena.fd,))
            os.unlink(arena.path)
            conn.send((M.HELLO, "node", os.getpid(), None, M.hello_info({
                "node_id": self.node_id, "resources": self.totals, "address": self.advertise,
                "hostname": socket.gethostname(), "peer": peer_address})))
            threading.Thread(target=self._heartbeat, args=(conn, done), daemon=True).start()
            output = _SharedOutput(WorkerOutput(os.path.join(self.session_dir, "logs")))
            threading.Thread(target=self._zygote_events, args=(conn, zygote, done, output), daemon=True).start()
            threading.Thread(target=self._pass_output, args=(conn, output, done), daemon=True).start()
            log.info("joined the cluster at %s as node %s; object store %d MiB, peer port %s",
                     self.head, self.node_id[:12], arena.capacity >> 20,
                     peer_address or "off (TLS: copies come from the head)")
            while not self.stopping:
                for msg in conn.recv(1.0):
                    if msg[0] == M.START_WORKER:
                        zygote.fork(msg[1])
                    elif msg[0] == M.GOODBYE:  # the head refused this node (and closes)
                        log.error("the head at %s refused this node: %s", self.head, msg[1])
                    elif msg[0] == M.EVICT:
                        store.evict(msg[1])
                    elif msg[0] == M.KILL_WORKER and msg[1] in self.pids:
                        try:
                            os.kill(msg[1], signal.SIGKILL)
                        except ProcessLookupError:
                            pass
        except ConnectionClosed:
            log.warning("lost the connection to the head at %s", self.head)
        finally:
            done.set()
            for pid in list(self.pids):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if zygote is not None:
                zygote.stop()
            if peer_server is not None:
                peer_server.stop(None)
            peers.close()
            conn.close()
            self.store = None
            store.close()

    def _heartbeat(self, conn: GrpcConnection, done: threading.Event) -> None:
        reader = UsageReader()  # the head's memory monitor acts on this node's reading
        while not done.wait(HEARTBEAT_S):
            store = self.store
            try:
                if store is None:
                    conn.send((M.HEARTBEAT,))
                else:
                    usage = reader.read()
                    conn.send((M.HEARTBEAT, (store.arena.used, store.arena.capacity, len(store.entries)),
                               store.take_dropped(),
                               (usage.used, usage.total, usage.source) if usage is not None else None))
            except ConnectionClosed:
                return

    def _pass_output(self, conn: GrpcConnection, output: _SharedOutput, done: threading.Event) -> None:
        """What this node's workers print goes to the head, which passes it to the drivers."""
        while not done.wait(OUTPUT_POLL_S):
            if not output.send(conn, output.poll()):
                return
        output.close()

    def _zygote_events(self, conn: GrpcConnection, zygote: Zygote, done: threading.Event,
                       output: _SharedOutput) -> None:
        import select

        fd = zygote.fileno()
        while not done.is_set():
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            events = zygote.read_events()
            if events is None:
                return
            for kind, a, b in events:
                if kind == "P":
                    self.pids.add(b)
                    output.watch(b)
                elif kind == "X":
                    self.pids.discard(a)
                    output.send(conn, output.forget(a))
                try:
                    conn.send((M.NODE_EVENT, kind, a, b))
                except ConnectionClosed:
                    return

    def run(self) -> None:
        """Join, serve, and join again whenever the head goes away (backoff up to 10 s)."""
        delay = 0.5
        while not self.stopping:
            started = time.monotonic()
            try:
                self.run_once()
            except ConnectionError as exc:
                log.warning("cannot join the head: %s; retrying in %.1f s", exc, delay)
            if self.stopping:
                return
            # a new identity for the next registration: a node declared dead stays dead in
            # the head's records, and coming back makes a new node
            self.node_id = uuid.uuid4().hex
            if time.monotonic() - started > 30:
                delay = 0.5
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ember_node.worker_node")
    p.add_argument("--address", required=True, help="the head's HOST:PORT")
    p.add_argument("--token-file", required=True)
    p.add_argument("--session-dir", required=True)
    p.add_argument("--num-cpus", type=float, default=None)
    p.add_argument("--num-gpus", type=float, default=None)
    p.add_argument("--memory", type=int, default=None)
    p.add_argument("--object-store-memory", type=int, default=None,
                   help="bytes of shared memory for this node's copies of objects (default: 30%% of memory)")
    p.add_argument("--resources", default=None)
    p.add_argument("--advertise", default="", help="this node's address, for `ember status`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the peer port binds to (other nodes' stores fetch copies there)")
    p.add_argument("--peer-port", type=int, default=0, help="the peer port (default: any free one)")
    p.add_argument("--peer-advertise", default=None,
                   help="the host other nodes reach the peer port at (default: --host, or this "
                        "host's address when --host is 0.0.0.0)")
    p.add_argument("--tls-ca", default=None, help="PEM file of the CA that signed the head's certificate")
    p.add_argument("--ready-fd", type=int, default=None)
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus /metrics and /healthz on this port (none: no endpoint)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address the metrics port binds to")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_open_file_limit()
    sweep_stale_arenas()
    try:
        prepare_session_dir(args.session_dir)
    except UnsafePathError as exc:
        raise SystemExit(f"ember worker node: {exc}") from None
    if (adj := keep_agent_last()) is not None and adj > 0:
        log.warning("this node agent's oom_score_adj is %d and cannot be lowered to 0: under memory "
                    "pressure the kernel may kill it before the workers", adj)
    write_pid_file(args.session_dir)
    totals: dict[str, float] = {"CPU": float(args.num_cpus if args.num_cpus is not None else os.cpu_count() or 1)}
    if args.num_gpus:
        totals["GPU"] = float(args.num_gpus)
    if args.memory:
        totals["memory"] = float(args.memory)
    if args.resources:
        totals.update({k: float(v) for k, v in json.loads(args.resources).items()})
    capacity = args.object_store_memory or default_capacity()
    totals["object_store_memory"] = float(capacity)
    totals.setdefault("memory", float(task_memory(available_memory(), capacity)))
    peer_host = args.peer_advertise or args.host
    if peer_host in ("0.0.0.0", "::", ""):
        try:
            peer_host = socket.gethostbyname(socket.gethostname())
        except OSError:
            peer_host = socket.gethostname()
    # with TLS to the head, copies would cross between nodes unencrypted: no peer port then
    peer_bind = None if args.tls_ca else (args.host, args.peer_port)
    node = WorkerNode(args.address, args.token_file, totals, args.session_dir,
                      args.advertise or socket.gethostname(),
                      os.path.abspath(args.tls_ca) if args.tls_ca else None, capacity, peer_bind, peer_host)

    def stop(signum: int, frame: Any) -> None:
        node.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    metrics = None
    if args.metrics_port is not None:
        from ember_node.metrics import WorkerNodeMetrics

        metrics = WorkerNodeMetrics(node)
        metrics.serve(args.metrics_port, args.metrics_host)
    if args.ready_fd is not None:
        os.write(args.ready_fd, json.dumps({"node_id": node.node_id, "address": args.address}).encode() + b"\n")
        os.close(args.ready_fd)
    try:
        node.run()
    finally:
        if metrics is not None:
            metrics.close()

        end_session(args.session_dir)  # its logs stay (ember._local_cluster prunes old ones)


if __name__ == "__main__":
    main()
