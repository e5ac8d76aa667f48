"""Helpers for the core integration tests: process and /dev/shm inspection, polling,
subprocess drivers. Nothing here may be referenced from inside a remote function
(workers cannot import the test package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
from ember_testkit import (  # noqa: F401 - re-exported for the tests of this suite
    CLEANUP_GRACE_S,
    SHM_DIR,
    SHM_PREFIX,
    child_processes,
    cmdline,
    describe,
    ember_shm_entries,
    kill_all,
    pid_alive,
    remove_shm,
    session_processes,
    shm_used_by,
    wait_pid_gone,
    wait_shm_gone,
    wait_until,
)

AGENT_MARK = "ember_node"  # agent command line: python -m ember_node ...
WORKER_MARK = "ember.worker"  # worker command line: python -m ember.worker ...
MiB = 1024 * 1024


def agent_processes() -> list[psutil.Process]:
    return [p for p in child_processes() if AGENT_MARK in cmdline(p)]


def worker_processes() -> list[psutil.Process]:
    return [p for p in child_processes() if WORKER_MARK in cmdline(p)]


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
