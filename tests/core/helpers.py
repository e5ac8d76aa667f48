"""Helpers for the core integration tests: process and /dev/shm inspection, polling,
subprocess drivers. Nothing here may be referenced from inside a remote function
(workers cannot import the test package)."""

from __future__ import annotations

import json
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
AGENT_MARK = "ember_node"  # agent command line: python -m ember_node ...
WORKER_MARK = "ember.worker"  # worker command line: python -m ember.worker ...
MiB = 1024 * 1024

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


def agent_processes() -> list[psutil.Process]:
    return [p for p in child_processes() if AGENT_MARK in cmdline(p)]


def worker_processes() -> list[psutil.Process]:
    return [p for p in child_processes() if WORKER_MARK in cmdline(p)]


def ember_shm_entries() -> set[str]:
    try:
        return {name for name in os.listdir(SHM_DIR) if name.startswith(SHM_PREFIX)}
    except FileNotFoundError:
        return set()


def ember_shm_bytes() -> int:
    """Bytes of /dev/shm actually allocated (not apparent size) under ember* names."""
    total = 0
    for name in ember_shm_entries():
        path = SHM_DIR / name
        try:
            if path.is_dir():
                for root, _dirs, files in os.walk(path):
                    for f in files:
                        try:
                            total += os.stat(os.path.join(root, f)).st_blocks * 512
                        except FileNotFoundError:
                            pass
            else:
                total += path.stat().st_blocks * 512
        except FileNotFoundError:
            pass
    return total


def shm_used_by(pids: Iterable[int]) -> set[str]:
    """/dev/shm/ember* entries that the given processes map or hold open."""
    names: set[str] = set()
    prefix = str(SHM_DIR / SHM_PREFIX)
    cut = len(str(SHM_DIR)) + 1
    for pid in pids:
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


def shm_mapped_by_others(session_pids: Iterable[int]) -> set[str]:
    """/dev/shm/ember* entries that a live process outside this test session maps or
    holds open (a concurrent ember run on the same machine)."""
    mine = set(session_pids) | {os.getpid()}
    return shm_used_by(
        int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and int(e.name) not in mine
    )


def cluster_shm_bytes() -> int:
    """Allocated bytes of the /dev/shm/ember* entries used by this process and its
    children (this test's cluster only, not a concurrent run's)."""
    names = shm_used_by([os.getpid(), *(p.pid for p in child_processes())])
    total = 0
    for name in names:
        try:
            total += (SHM_DIR / name).stat().st_blocks * 512
        except (FileNotFoundError, NotADirectoryError):
            pass
    return total


def wait_pids_gone(pids: Iterable[int], timeout: float = CLEANUP_GRACE_S) -> list[int]:
    """Wait for the processes to exit; return those still alive at the deadline."""
    pids = list(pids)
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout)
    return [p for p in pids if pid_alive(p)]


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


# ------------------------------------------------------------------ subprocess drivers


def write_script(tmp_path: Path, code: str, name: str = "driver.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def run_driver(
    tmp_path: Path, code: str, timeout: float = 60, args: Iterable[str] = ()
) -> subprocess.CompletedProcess:
    """Run ``code`` as a driver script in a fresh interpreter and wait for it."""
    script = write_script(tmp_path, code)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_driver(tmp_path: Path, code: str) -> subprocess.Popen:
    """Start ``code`` as a driver script; stdout is a pipe (line-buffered text)."""
    script = write_script(tmp_path, code)
    return subprocess.Popen(
        [sys.executable, "-u", str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_json_line(proc: subprocess.Popen, prefix: str, timeout: float = 60) -> dict:
    """Read the driver's stdout until a line ``PREFIX {json}`` appears."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = proc.stdout.readline()
            if not line:  # EOF: the driver died
                break
            seen.append(line)
            if line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1 :])
    finally:
        sel.close()
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(
        f"driver never printed {prefix!r} (rc={proc.returncode}); stdout={''.join(seen)[-2000:]!r}"
        f" stderr={err[-3000:]!r}"
    )
