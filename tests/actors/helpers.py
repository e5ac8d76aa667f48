"""Helpers for the actor integration tests: process and /dev/shm inspection, polling,
subprocess drivers. Nothing here may be referenced from inside a remote function or an
actor class (workers cannot import the test package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "ember"

# Every process started from this pytest run inherits this variable, so a process that
# outlives its parent (an agent re-parented to init) can still be traced back to us.
# Same variable as tests/core, so both suites agree when they run in one session.
SESSION_MARK_VAR = "EMBER_TEST_SESSION_MARK"
SESSION_MARK = os.environ.setdefault(SESSION_MARK_VAR, uuid.uuid4().hex)

# How long processes and shared memory get to disappear after a shutdown.
CLEANUP_GRACE_S = 15.0


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes.

    Returns the last value of ``predicate`` (truthy on success, falsy on timeout).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _is_live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a running process (a zombie counts as gone)."""
    try:
        return _is_live(psutil.Process(pid))
    except psutil.Error:
        return False


def wait_pid_gone(pid: int, timeout: float = CLEANUP_GRACE_S) -> bool:
    return bool(wait_until(lambda: not pid_alive(pid), timeout))


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def session_processes() -> list[psutil.Process]:
    """Live processes started by this test session: our descendants, plus any process
    carrying our session mark in its environment."""
    me = os.getpid()
    found = {p.pid: p for p in psutil.Process().children(recursive=True) if _is_live(p)}
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me or proc.pid in found:
            continue
        try:
            if proc.environ().get(SESSION_MARK_VAR) == SESSION_MARK and _is_live(proc):
                found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def kill_all(procs: Iterable[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


def describe(procs: Iterable[psutil.Process]) -> str:
    return "; ".join(f"pid {p.pid}: {cmdline(p)[:160]!r}" for p in procs)


def ember_shm_entries() -> set[str]:
    try:
        return {name for name in os.listdir(SHM_DIR) if name.startswith(SHM_PREFIX)}
    except FileNotFoundError:
        return set()


def shm_used_by(procs: Iterable[psutil.Process]) -> set[str]:
    """The /dev/shm/ember* entries that ``procs`` have mapped or open right now.

    Other ember runs on the same machine (other test sessions, benchmarks) create
    /dev/shm/ember* entries too, so the leak check only holds us to the entries that our
    own processes used.
    """
    found: set[str] = set()
    prefix = f"{SHM_DIR}/{SHM_PREFIX}"
    for proc in procs:
        paths: list[str] = []
        try:
            with open(f"/proc/{proc.pid}/maps") as f:
                paths += [line.split(None, 5)[-1].strip() for line in f if prefix in line]
        except OSError:
            pass
        try:
            fd_dir = f"/proc/{proc.pid}/fd"
            for fd in os.listdir(fd_dir):
                try:
                    target = os.readlink(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if target.startswith(prefix):
                    paths.append(target)
        except OSError:
            pass
        for path in paths:
            name = path[len(str(SHM_DIR)) + 1 :].split(" ")[0]
            if name.startswith(SHM_PREFIX):
                found.add(name)
    return found


def wait_shm_gone(names: set[str], timeout: float = CLEANUP_GRACE_S) -> set[str]:
    """Wait for the /dev/shm entries to disappear; return those still there."""
    wait_until(lambda: not (names & ember_shm_entries()), timeout, 0.1)
    return names & ember_shm_entries()


def remove_shm(names: Iterable[str]) -> None:
    for name in names:
        path = SHM_DIR / name
        try:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except OSError:
            pass


def run_script(
    tmp_path: Path, code: str, name: str, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run ``code`` as a Python script in a fresh interpreter and wait for it."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
