"""Helpers for the actor integration tests: process and /dev/shm inspection, polling,
subprocess drivers. Nothing here may be referenced from inside a remote function or an
actor class (workers cannot import the test package)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
