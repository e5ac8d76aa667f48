"""What the integration test suites share: process and /dev/shm inspection, polling, and
the embedded-cluster fixtures' leak check (see tests/conftest.py). Nothing here may be
referenced from inside a remote function (workers cannot import the tests)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "ember"

# Every process started from this pytest run inherits this variable, so a process
# that outlives its parent (re-parented to init) can still be traced back to us.
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
    try:
        return _is_live(psutil.Process(pid))
    except psutil.Error:
        return False


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def child_processes() -> list[psutil.Process]:
    """Live (non-zombie) descendants of this process."""
    return [p for p in psutil.Process().children(recursive=True) if _is_live(p)]


def session_processes() -> list[psutil.Process]:
    """Live processes started by this test session: our descendants, plus any
    process carrying our session mark in its environment."""
    me = os.getpid()
    found = {p.pid: p for p in child_processes()}
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me or proc.pid in found:
            continue
        try:
            if proc.environ().get(SESSION_MARK_VAR) == SESSION_MARK and _is_live(proc):
                found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def ember_shm_entries() -> set[str]:
    try:
        return {name for name in os.listdir(SHM_DIR) if name.startswith(SHM_PREFIX)}
    except FileNotFoundError:
        return set()


def shm_used_by(procs: Iterable[int | psutil.Process]) -> set[str]:
    """/dev/shm/ember* entries that the given processes (pids or psutil processes) map or
    hold open right now."""
    names: set[str] = set()
    prefix = str(SHM_DIR / SHM_PREFIX)
    cut = len(str(SHM_DIR)) + 1
    for proc in procs:
        pid = proc.pid if isinstance(proc, psutil.Process) else proc
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    idx = line.find(prefix)
                    if idx >= 0:
                        names.add(line[idx + cut :].split()[0].split("/")[0])
            for fd in os.scandir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith(prefix):
                    names.add(target[cut:].split()[0].split("/")[0])
        except OSError:
            continue
    return names


def wait_shm_gone(names: Iterable[str], timeout: float = CLEANUP_GRACE_S) -> set[str]:
    """Wait for the /dev/shm entries to disappear; return those still present."""
    names = set(names)
    wait_until(lambda: not (names & ember_shm_entries()), timeout)
    return names & ember_shm_entries()


def kill_all(procs: Iterable[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


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


def describe(procs: Iterable[psutil.Process]) -> str:
    return "; ".join(f"pid {p.pid}: {cmdline(p)[:160]!r}" for p in procs)




def wait_pid_gone(pid: int, timeout: float = CLEANUP_GRACE_S) -> bool:
    return bool(wait_until(lambda: not pid_alive(pid), timeout))
