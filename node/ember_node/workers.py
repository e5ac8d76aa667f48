"""The worker pool: a zygote process that forks workers, and the agent's record of each worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Any

STARTING = "starting"
IDLE = "idle"
BUSY = "busy"
DEAD = "dead"
RETIRING = "retiring"  # told to exit (idle beyond the node's CPUs)


class WorkerRec:
    """The agent's view of one worker process."""

    __slots__ = ("wid", "pid", "client", "state", "inflight", "held", "blocked", "known_fns",
                 "shape", "exit_status", "lost_at", "idle_since", "actor", "node", "gpu_ids", "claim", "seq",
                 "job")

    def __init__(self, wid: int, node: Any) -> None:
        self.wid = wid
        self.node = node
        self.pid: int | None = None
        self.client: Any = None
        self.state = STARTING
        self.inflight: deque = deque()
        self.held: dict[str, float] | None = None
        self.blocked = False
        self.known_fns: set[bytes] = set()
        self.shape: tuple | None = None
        self.exit_status: int | None = None
        self.lost_at: float | None = None
        self.idle_since = time.monotonic()
        self.actor: Any = None
        self.gpu_ids: list[int] = []  # GPUs given with ``held`` (CUDA_VISIBLE_DEVICES)
        self.claim: Any = None  # a local worker's ClaimSlot (ember._claims), for pipelining
        self.seq = 0  # the number of the last task queued on it behind another
        self.job = ""  # the job of what it runs (an actor's: its creator's), for nested tasks


def describe_exit(status: int | None) -> str:
    """Words for a wait status: 'was killed by signal 11 (SIGSEGV, a segmentation fault)'."""
    if status is None:
        return "exited unexpectedly"
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with code {code}"
    sig = -code
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    hint = {
        "SIGSEGV": ", a segmentation fault",
        "SIGKILL": "; if nobody killed it on purpose, the Linux out-of-memory killer may have (see dmesg)",
        "SIGABRT": ", an abort",
        "SIGBUS": ", a bus error",
    }.get(name, "")
    return f"was killed by signal {sig} ({name}{hint})"


class Zygote:
    """The process that forks workers on request.

    Commands go to its stdin; its reports come back on a pipe of their own (the *control
    pipe*, passed as an extra fd), never on stdout: a worker closes that fd right after the
    fork and gets its own output files, so nothing user code prints can be read as a report.
    """

    def __init__(self, socket_path: str, session: dict, log_path: str, pass_fds: tuple[int, ...] = ()) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log = open(log_path, "ab")
        # each worker writes its stdout and stderr to files of its own next to this log
        session = {**session, "log_dir": os.path.dirname(os.path.abspath(log_path))}
        control_r, control_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ember.worker", "--zygote", socket_path, json.dumps(session),
                 "--control-fd", str(control_w)],
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=self._log,
                env=env,
                close_fds=True,
                pass_fds=(*pass_fds, control_w),  # pass_fds are inherited by every worker it forks
            )
        except BaseException:
            os.close(control_r)
            raise
        finally:
            os.close(control_w)
        self._control = control_r
        os.set_blocking(control_r, False)
        self._buf = b""

    def fileno(self) -> int:
        return self._control

    def fork(self, wid: int) -> None:
        """Ask for a new worker with id ``wid`` (its pid comes later, as a 'P' event)."""
        self.proc.stdin.write(b"F %d\n" % wid)
        self.proc.stdin.flush()

    def read_events(self) -> list[tuple[str, int, int]] | None:
        """('P', wid, pid) and ('X', pid, status) events; None when the zygote is gone.

        A line that is not a well-formed report is skipped (only the zygote writes here)."""
        if self._control < 0:
            return None
        try:
            data = os.read(self._control, 65536)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        self._buf += data
        events = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            parts = line.split()
            if len(parts) == 3 and parts[0] in (b"P", b"X") and parts[1].isdigit() and parts[2].isdigit():
                events.append((parts[0].decode(), int(parts[1]), int(parts[2])))
        return events

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self._control >= 0:
            os.close(self._control)
            self._control = -1
        self._log.close()


class GpuPool:
    """Which GPUs of a node are free: whole ones for requests of 1 or more, shares of one
    GPU for fractional requests (packed onto the fullest GPU that still fits)."""

    def __init__(self, count: float) -> None:
        self.free = {i: 1.0 for i in range(int(count))}

    def pick(self, amount: float) -> list[int] | None:
        """The GPU ids a request of ``amount`` would get, or None if it cannot be placed."""
        if amount >= 1:
            whole = [i for i, share in self.free.items() if share >= 1 - 1e-9]
            n = int(amount)
            return whole[:n] if len(whole) >= n else None
        fitting = [i for i, share in self.free.items() if share >= amount - 1e-9]
        return [min(fitting, key=lambda i: self.free[i])] if fitting else None

    def take(self, ids: list[int], amount: float) -> None:
        for i in ids:
            self.free[i] -= 1.0 if amount >= 1 else amount

    def give(self, ids: list[int], amount: float) -> None:
        for i in ids:
            self.free[i] = min(1.0, self.free[i] + (1.0 if amount >= 1 else amount))


class NodeRec:
    """A node of the cluster as the head sees it: resources, workers, health."""

    __slots__ = ("node_id", "address", "hostname", "totals", "available", "client", "alive",
                 "last_heartbeat", "idle", "starting", "is_head", "death_cause", "gpus", "store", "peer",
                 "dropped", "nworkers")

    def __init__(self, node_id: str, address: str, hostname: str, totals: dict[str, float],
                 client: Any = None, is_head: bool = False) -> None:
        self.node_id = node_id
        self.address = address
        self.hostname = hostname
        self.totals = dict(totals)
        self.available = dict(totals)
        self.client = client  # None for the head's own node
        self.alive = True
        self.last_heartbeat = time.monotonic()
        self.idle: list[WorkerRec] = []
        self.starting = 0
        self.nworkers = 0  # its workers, starting ones included
        self.is_head = is_head
        self.death_cause = ""
        self.gpus = GpuPool(totals.get("GPU", 0))
        self.store: tuple[int, int, int] | None = None  # a worker node's store, as last reported
        self.peer = ""  # host:port where a worker node's store serves copies to other nodes
        self.dropped: set[bytes] = set()  # copies it reported dropped for room (see remote_readers)

    def describe(self) -> str:
        return f"node {self.node_id[:12]} ({self.address or self.hostname})"
