"""The head's job runner: each submitted entrypoint runs here as a subprocess, a driver of
this cluster.

Where things go, under the session directory:

``jobs/<submission id>/``      the uploaded working directory, unpacked (gone with the session)
``logs/job-<id>.log``          the entrypoint's stdout and stderr (kept with the session's logs)

The entrypoint runs (through ``/bin/sh -c`` when it needs a shell: ``job_state.entrypoint_argv``)
in a session (and process group) of its own, started by ``job_launcher`` (which ties it to
this process's life), with ``EMBER_ADDRESS`` naming this agent's local socket, so ``ember.init()`` (or
``ray.init()`` under ``ember run``) inside it joins this cluster. One thread per job waits
for it; the job's state lives in a ``job_state.JobTable`` behind one lock. ``stop`` sends
SIGTERM to the process group, then SIGKILL after a grace period; once the driver is gone,
the agent ends its tasks and actors as for any driver that disconnects. Whatever is left of
the group when the entrypoint exits gets SIGTERM, then SIGKILL after the grace period.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

from ember._job_package import MAX_UPLOAD_BYTES, size_text, unpack
from ember._runtime_pip import parse_pip
from ember.runtime_env import JOB_ENV_VAR, JOB_PIP_VAR

from ember_node.job_state import (
    JobConflict,
    JobRecord,
    JobTable,
    entrypoint_argv,
    new_submission_id,
    output_tail,
)

log = logging.getLogger("ember.jobs")

STOP_GRACE_S = float(os.environ.get("EMBER_JOB_STOP_GRACE_S", "3"))
FOLLOW_POLL_S = 0.1
LOG_CHUNK = 64 << 10


def _now_ms() -> int:
    return int(time.time() * 1000)


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) in process group ``pgid`` other than its leader."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == pgid:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            out.append(int(name))
    return out


class JobManager:
    """Runs and tracks this head's jobs. ``driver_address`` is what ``EMBER_ADDRESS`` says
    inside an entrypoint (``unix:<the agent's socket>``)."""

    def __init__(self, session_dir: str, driver_address: str, stop_grace_s: float = STOP_GRACE_S,
                 max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.session_dir = session_dir
        self.driver_address = driver_address
        self.stop_grace_s = stop_grace_s
        self.max_upload_bytes = max_upload_bytes
        self._lock = threading.Lock()
        self._table = JobTable()
        self._procs: dict[str, subprocess.Popen] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    # ------------------------------------------------------------------ paths
    def log_path(self, sid: str) -> str:
        return os.path.join(self.session_dir, "logs", f"job-{sid}.log")

    def _work_dir(self, sid: str) -> str:
        return os.path.join(self.session_dir, "jobs", sid)

    # ------------------------------------------------------------------ submit
    def submit(self, entrypoint: str, submission_id: str, runtime_env: dict, metadata: dict[str, str],
               package: bytes) -> str:
        """Start a job; returns its submission id. Raises ``ValueError`` for a bad request,
        ``JobConflict`` for a taken id."""
        if not entrypoint.strip():
            raise ValueError("the job has no entrypoint: give a command, e.g. `python script.py`")
        if len(package) > self.max_upload_bytes:
            raise ValueError(f"the uploaded working directory is {size_text(len(package))}, more than the "
                             f"{size_text(self.max_upload_bytes)} a job may upload; leave files out with excludes")
        if runtime_env.get("pip") is not None:
            try:
                parse_pip(runtime_env["pip"])  # a bad one is refused here, by name
            except TypeError as exc:
                raise ValueError(str(exc)) from None
        env_vars = runtime_env.get("env_vars") or {}
        if not isinstance(env_vars, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in env_vars.items()):
            raise ValueError("runtime_env env_vars must be a dict of str to str")
        sid = submission_id or new_submission_id(os.urandom(16))
        record = JobRecord(sid, entrypoint, dict(metadata), dict(runtime_env))
        with self._lock:
            if self._closed:
                raise JobConflict("the head is shutting down; it takes no new jobs")
            self._table.add(record)
        try:
            cwd = self._prepare(sid, package)
            proc = self._spawn(sid, entrypoint, cwd, env_vars, bool(package), runtime_env.get("pip"))
        except (OSError, ValueError) as exc:
            log.warning("job %s could not be started: %s", sid, exc)
            with self._lock:
                self._table.start_failed(sid, str(exc), _now_ms())
            return sid
        with self._lock:
            self._procs[sid] = proc
            stopped_meanwhile = self._table.get(sid).stop_requested
            if not stopped_meanwhile:
                self._table.started(sid, proc.pid, _now_ms())
        if stopped_meanwhile:
            self._signal_group(proc, signal.SIGKILL)
        waiter = threading.Thread(target=self._wait, args=(sid, proc), name=f"ember-job-{sid}", daemon=True)
        self._threads.append(waiter)
        waiter.start()
        log.info("job %s started (pid %d): %s", sid, proc.pid, entrypoint)
        return sid

    def _prepare(self, sid: str, package: bytes) -> str:
        jobs_dir = os.path.join(self.session_dir, "jobs")
        os.makedirs(jobs_dir, mode=0o700, exist_ok=True)
        cwd = self._work_dir(sid)
        os.mkdir(cwd, 0o700)
        if package:
            try:
                unpack(package, cwd, self.max_upload_bytes)
            except Exception as exc:  # noqa: BLE001 - a broken zip is the submitter's problem
                raise ValueError(f"the uploaded working directory cannot be unpacked: {exc}") from None
        return cwd

    def _spawn(self, sid: str, entrypoint: str, cwd: str, env_vars: dict[str, str],
               package: bool, pip: dict | None = None) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k not in ("EMBER_TOKEN", "EMBER_TLS_CA")}
        env.update(env_vars)
        env["EMBER_ADDRESS"] = self.driver_address
        env["EMBER_JOB_SUBMISSION_ID"] = sid
        if package:  # its modules are pickled by value (ember._job_modules): workers lack the dir
            env["EMBER_JOB_WORKING_DIR"] = cwd
        else:
            env.pop("EMBER_JOB_WORKING_DIR", None)
        env[JOB_ENV_VAR] = json.dumps(env_vars)  # for its tasks and actors
        if pip:  # installed by the launcher for the entrypoint, and by init() for its tasks
            env[JOB_PIP_VAR] = json.dumps(pip)
        else:
            env.pop(JOB_PIP_VAR, None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (cwd, env.get("PYTHONPATH")) if p)
        # `python` in the entrypoint is the head's own interpreter (the one with ember)
        env["PATH"] = os.pathsep.join(p for p in (os.path.dirname(sys.executable), env.get("PATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")  # the log shows output as it is printed
        fd = os.open(self.log_path(sid), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            launcher = [sys.executable, "-I", "-m", "ember_node.job_launcher", str(os.getpid())]
            return subprocess.Popen([*launcher, *entrypoint_argv(entrypoint)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=fd, stderr=fd, start_new_session=True)
        finally:
            os.close(fd)

    def _wait(self, sid: str, proc: subprocess.Popen) -> None:
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped:
        except ChildProcessError:  # its group id cannot be reused while we end what is left
            pass
        if group_members(proc.pid):  # what it started and left running: SIGTERM, then SIGKILL
            self._signal_group(proc, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_grace_s
            while group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._signal_group(proc, signal.SIGKILL)
        tail = output_tail(self._read_tail(sid))
        with self._lock:  # reaped under the lock: _signal_group never signals a reused id
            code = proc.wait()
            status = self._table.exited(sid, code, _now_ms(), tail)
            self._procs.pop(sid, None)
        log.info("job %s ended: %s (exit status %d)", sid, status, code)

    def _read_tail(self, sid: str) -> str:
        try:
            with open(self.log_path(sid), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _signal_group(self, proc: subprocess.Popen, sig: int) -> None:
        """Signal the entrypoint's process group (its pid: it leads a session of its own)."""
        with self._lock:
            if proc.returncode is not None:
                return  # reaped: the group id may name someone else's group by now
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    # ------------------------------------------------------------------ queries and control
    def info(self, sid: str) -> JobRecord:
        with self._lock:
            return self._table.get(sid)

    def list(self) -> list[JobRecord]:
        with self._lock:
            return self._table.list()

    def stop(self, sid: str) -> bool:
        """SIGTERM to the job's processes, SIGKILL after the grace period; False when it had ended."""
        with self._lock:
            if not self._table.request_stop(sid, _now_ms()):
                return False
            proc = self._procs.get(sid)
        if proc is not None:
            self._signal_group(proc, signal.SIGTERM)
            timer = threading.Timer(self.stop_grace_s, self._signal_group, (proc, signal.SIGKILL))
            timer.daemon = True
            timer.start()
        return True

    def delete(self, sid: str) -> bool:
        """Forget an ended job, its log and its working directory."""
        with self._lock:
            self._table.delete(sid)
        shutil.rmtree(self._work_dir(sid), ignore_errors=True)
        try:
            os.unlink(self.log_path(sid))
        except OSError:
            pass
        return True

    def read_log(self, sid: str, offset: int, size: int = LOG_CHUNK) -> bytes:
        """Up to ``size`` bytes of the job's log from ``offset`` (b"" at its end)."""
        self.info(sid)  # raises JobNotFound
        try:
            with open(self.log_path(sid), "rb") as f:
                f.seek(offset)
                return f.read(size)
        except FileNotFoundError:
            return b""

    def follow_log(self, sid: str, offset: int, follow: bool, active: Callable[[], bool]) -> Iterator[bytes]:
        """The job's log from ``offset`` in chunks; with ``follow``, new output as it comes
        until the job has ended and all of it was sent (or ``active()`` turns false)."""
        while True:
            ended = self.info(sid).status.is_terminal()  # before reading: nothing is missed
            while data := self.read_log(sid, offset):
                offset += len(data)
                yield data
            if not follow or ended or not active():
                return
            time.sleep(FOLLOW_POLL_S)

    def close(self, timeout: float | None = None) -> None:
        """The head stops: stop every running job and wait for them (SIGKILL after the grace)."""
        with self._lock:
            self._closed = True
            running = self._table.running()
        for sid in running:
            self.stop(sid)
        deadline = time.monotonic() + (self.stop_grace_s + 5 if timeout is None else timeout)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
