"""Helpers for the multi-node cluster tests: agents started as real processes on loopback,
every started pid tracked and cleaned up, subprocess drivers, a TCP port forwarder.

Nothing here may be referenced from inside a remote function (workers cannot import the
test package); remote functions are defined inside the test functions or driver scripts.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MiB = 1 << 20

# Every process these tests start carries this mark in its environment (and passes it on to
# the zygote and workers it starts), so cleanup can find re-parented survivors by pid.
MARK_VAR = "EMBER_CLUSTER_TEST_MARK"
MARK = os.environ.setdefault(MARK_VAR, uuid.uuid4().hex)
# Workers inherit their agent's environment: this tells a task which node it runs on.
NODE_VAR = "EMBER_TEST_NODE"

READY_TIMEOUT_S = 30.0


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05):
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def short_tmpdir(prefix: str = "embc-") -> Path:
    """A private directory with a short path (Unix socket paths are limited to 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def pid_alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def descendants(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def marked_pids() -> list[int]:
    """Live processes (other than this one) carrying this run's mark."""
    me = os.getpid()
    out = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARK_VAR) == MARK and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except psutil.Error:
            continue
    return out


def ours(pid: int) -> bool:
    """True when ``pid`` is a live process carrying this run's mark (not a recycled pid)."""
    try:
        return psutil.Process(pid).environ().get(MARK_VAR) == MARK
    except psutil.Error:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Procs:
    """Every process a test starts; ``cleanup`` ends them (and their descendants) by pid."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen] = []
        self.extra: set[int] = set()
        self.known: set[int] = set()  # descendants seen while their parent was alive
        self.arenas: list[str] = []  # shared-memory files of the heads started directly
        self.stubborn: list[str] = []  # processes that needed SIGKILL after SIGTERM

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, MARK_VAR: MARK, "PYTHONUNBUFFERED": "1"}
        for var in ("EMBER_ADDRESS", "EMBER_TOKEN"):
            env.pop(var, None)
        env.update(extra or {})
        return env

    def spawn(self, cmd: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, **kw)
        self.popens.append(proc)
        return proc

    def track(self, pid: int) -> None:
        self.extra.add(pid)

    def remember_tree(self, pid: int) -> list[int]:
        kids = descendants(pid)
        self.known.update(kids)
        return kids

    def kill_tree(self, pid: int, sig: int = signal.SIGKILL) -> list[int]:
        """Signal ``pid``; its descendants (snapshotted first) are killed at cleanup if they linger."""
        kids = self.remember_tree(pid)
        _signal(pid, sig)
        return kids

    def cleanup(self) -> list[str]:
        """Stop everything: SIGTERM first (agents remove their shared memory), then SIGKILL.

        Returns a description of processes that needed SIGKILL after the grace period."""
        live = [p for p in self.popens if p.poll() is None]
        extra = [pid for pid in self.extra if pid_alive(pid) and ours(pid)]
        for pid in [p.pid for p in live] + extra:
            self.remember_tree(pid)
        # worker nodes before heads, so they do not keep retrying a head that is gone
        for p in sorted(live, key=lambda p: getattr(p, "ember_role", "") == "head"):
            _signal(p.pid, signal.SIGTERM)
        for pid in extra:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        wait_until(lambda: not [pid for pid in extra if pid_alive(pid)],
                   max(0.1, deadline - time.monotonic()), 0.05)
        stubborn = []
        for p in self.popens:
            if p.poll() is None:
                stubborn.append(f"pid {p.pid} {' '.join(map(str, p.args))[:120]}")
                _signal(p.pid, signal.SIGKILL)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for pid in extra:
            if pid_alive(pid) and ours(pid):
                stubborn.append(f"pid {pid}")
                _signal(pid, signal.SIGKILL)
        rest = set(self.known)
        wait_until(lambda: not [pid for pid in rest if pid_alive(pid)], 5, 0.05)
        for pid in rest:
            if pid_alive(pid) and ours(pid):
                _signal(pid, signal.SIGKILL)
        self.popens.clear()
        self.extra.clear()
        self.known.clear()
        self.stubborn += stubborn
        return stubborn

    def leaked_arenas(self) -> list[str]:
        """Shared-memory arenas of stopped heads that are still in /dev/shm (removed here)."""
        wait_until(lambda: not [a for a in self.arenas if os.path.exists(a)], 5, 0.1)
        leaked = [a for a in self.arenas if os.path.exists(a)]
        for a in leaked:
            try:
                os.unlink(a)
            except OSError:
                pass
        self.arenas.clear()
        return leaked


def _read_ready(rfd: int, proc: subprocess.Popen, what: str, log: Path | None) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_S
    data = b""
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{what} was not ready within {READY_TIMEOUT_S:.0f} s"
                                   + (f"; log:\n{log.read_text()[-3000:]}" if log and log.exists() else ""))
            ready, _, _ = select.select([rfd], [], [], left)
            if ready:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    proc.wait(timeout=5)
                    raise RuntimeError(f"{what} exited (code {proc.returncode}) before it was ready"
                                       + (f"; log:\n{log.read_text()[-3000:]}" if log and log.exists() else ""))
                data += chunk
    finally:
        os.close(rfd)
    return json.loads(data)


@dataclass
class Head:
    proc: subprocess.Popen
    host: str
    port: int
    token: str
    token_file: Path
    session_dir: Path
    log: Path
    info: dict

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def node_id(self) -> str:
        return self.info["node_id"]


@dataclass
class WorkerNodeProc:
    proc: subprocess.Popen
    name: str
    node_id: str
    session_dir: Path
    log: Path
    resources: dict = field(default_factory=dict)


def write_token(path: Path, token: str | None = None) -> str:
    token = token or uuid.uuid4().hex
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def _agent_options(resources: dict | None, store_bytes: int | None, extra: list[str] | None) -> list[str]:
    out = ["--resources", json.dumps(resources)] if resources else []
    if store_bytes:
        out += ["--object-store-memory", str(store_bytes)]
    return out + (extra or [])


def _spawn_agent(procs: Procs, cmd: list[str], log: Path, env: dict[str, str], role: str,
                 what: str, preexec_fn: Callable[[], None] | None = None) -> tuple[subprocess.Popen, dict]:
    """Start an agent with ``--ready-fd``, logging to ``log``; (process, its ready line).
    ``preexec_fn`` runs in the child before exec (e.g. to lower its resource limits)."""
    rfd, wfd = os.pipe()
    with open(log, "ab") as logf:
        proc = procs.spawn([*cmd, "--ready-fd", str(wfd)], pass_fds=(wfd,), stdin=subprocess.DEVNULL,
                           stdout=logf, stderr=logf, env=procs.env(env), start_new_session=True,
                           preexec_fn=preexec_fn)
    proc.ember_role = role  # type: ignore[attr-defined]
    os.close(wfd)
    return proc, _read_ready(rfd, proc, what, log)


def start_head(procs: Procs, root: Path, *, num_cpus: float = 1, host: str = "127.0.0.1",
               store_bytes: int = 256 * MiB, resources: dict | None = None,
               env: dict[str, str] | None = None, name: str = "head",
               extra_args: list[str] | None = None,
               preexec_fn: Callable[[], None] | None = None) -> Head:
    """``python -m ember_node`` started directly (no CLI records); stderr goes to ``root/head.log``."""
    root.mkdir(parents=True, exist_ok=True)
    token_file = root / "token"
    token = write_token(token_file)
    session_dir = root / f"s-{uuid.uuid4().hex[:8]}"
    log = root / "head.log"
    port = free_port(host)
    cmd = [sys.executable, "-m", "ember_node", "--session-dir", str(session_dir),
           "--num-cpus", str(num_cpus), "--port", str(port), "--host", host,
           "--token-file", str(token_file)]
    cmd += _agent_options(resources, store_bytes, extra_args)
    proc, info = _spawn_agent(procs, cmd, log, {NODE_VAR: name, **(env or {})}, "head", "the head agent",
                              preexec_fn)
    if info.get("arena"):
        procs.arenas.append(info["arena"])
    return Head(proc, host, port, token, token_file, session_dir, log, info)


def start_worker_node(procs: Procs, head: Head, root: Path, name: str, *, num_cpus: float = 2,
                      resources: dict | None = None, env: dict[str, str] | None = None,
                      store_bytes: int | None = None, prefix: list[str] | None = None,
                      extra_args: list[str] | None = None) -> WorkerNodeProc:
    """``python -m ember_node.worker_node`` joining ``head``; its workers see ``EMBER_TEST_NODE=name``.
    ``prefix`` goes before the command (e.g. ``ip netns exec NS``)."""
    session_dir = root / f"n-{name}-{uuid.uuid4().hex[:6]}"
    log = root / f"node-{name}.log"
    cmd = [*(prefix or []), sys.executable, "-m", "ember_node.worker_node", "--address", head.address,
           "--token-file", str(head.token_file), "--session-dir", str(session_dir),
           "--num-cpus", str(num_cpus)]
    cmd += _agent_options(resources, store_bytes, extra_args)
    proc, info = _spawn_agent(procs, cmd, log, {NODE_VAR: name, **(env or {})}, "node", f"worker node {name}")
    return WorkerNodeProc(proc, name, info["node_id"], session_dir, log, dict(resources or {}))


def query(head: Head, *requests: tuple[str, object]) -> list:
    """Ask the head over its local socket (as `ember status` does), without ember.init()."""
    from ember import _messages as M
    from ember._runtime import CoreRuntime
    from ember._wire import ClientConnection

    rt = CoreRuntime(ClientConnection.connect(head.info["socket"]), None, "driver")
    try:
        rt.send((M.HELLO, "tool", os.getpid(), None, None))
        return [rt.request(M.REQUEST, what, arg, timeout=30) for what, arg in requests]
    finally:
        rt.close()


def wait_cluster(head: Head, alive_nodes: int, idle_workers: int = 0, timeout: float = 30) -> None:
    """Until the head lists ``alive_nodes`` live nodes and has ``idle_workers`` idle workers."""
    state: dict = {}

    def ready() -> bool:
        nodes, stats = query(head, ("nodes", None), ("stats", None))
        state["nodes"], state["stats"] = nodes, stats
        return sum(1 for n in nodes if n["Alive"]) >= alive_nodes and stats["idle_workers"] >= idle_workers

    if not wait_until(ready, timeout, 0.1):
        raise AssertionError(f"cluster not ready within {timeout} s: nodes={state.get('nodes')} "
                             f"stats={ {k: state.get('stats', {}).get(k) for k in ('workers', 'idle_workers')} }")


def run_driver(procs: Procs, script: str, *, env: dict[str, str] | None = None, timeout: float = 60,
               prefix: list[str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run a driver script in a new Python process (bounded); returns the completed process.

    The script's last stdout line is conventionally a JSON result (see ``last_json``)."""
    fd, path = tempfile.mkstemp(prefix="driver-", suffix=".py", dir=cwd or "/tmp")
    with os.fdopen(fd, "w") as f:
        f.write(textwrap.dedent(script))
    try:
        proc = procs.spawn([*(prefix or []), sys.executable, path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=procs.env(env),
                           start_new_session=True, cwd=cwd)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            procs.kill_tree(proc.pid)
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"driver did not finish within {timeout} s\nstdout:\n{out}\n"
                                 f"stderr:\n{err[-4000:]}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        os.unlink(path)


def last_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, (f"driver failed (exit {result.returncode})\n"
                                    f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}")
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert lines, f"driver printed nothing\nstderr:\n{result.stderr[-3000:]}"
    return json.loads(lines[-1])


class Forwarder:
    """A pure-Python TCP forwarder: 127.0.0.1:<free port> -> target, one thread pair per connection.

    Counts connections and bytes so a test can show the traffic went through it."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._closed = False
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, name="fwd-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._socks += [client, upstream]
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, up), name="fwd-pump", daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(timeout=2)


def ember_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m ember_node.cli ARGS`` with ``env`` (which sets a private TMPDIR)."""
    return subprocess.run([sys.executable, "-m", "ember_node.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def cli_records(tmpdir: Path) -> list[dict]:
    """The agents `ember start` recorded under ``TMPDIR=tmpdir``."""
    d = tmpdir / f"ember-{os.getuid()}" / "agents"
    out = []
    if d.is_dir():
        for f in sorted(d.glob("*.json")):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                pass
    return out
