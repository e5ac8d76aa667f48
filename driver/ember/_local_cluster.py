"""Where ``ember start`` records the agents it started on this machine (for ``address="auto"``).

One JSON file per agent under ``$TMPDIR/ember-<uid>/agents/``: a head, and any worker nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile


def base_dir() -> str:
    """A 0700 directory for this user's ember state: ``$TMPDIR/ember-<uid>``."""
    path = os.path.join(tempfile.gettempdir(), f"ember-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _records_dir() -> str:
    path = os.path.join(base_dir(), "agents")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def pid_is_agent(pid: int) -> bool:
    """True when ``pid`` is a live ember agent (not a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ember_node" in f.read()
    except OSError:
        return False


def all_records() -> list[dict]:
    """Every live agent started here by ``ember start`` (stale records are removed)."""
    out = []
    for name in sorted(os.listdir(_records_dir())):
        path = os.path.join(_records_dir(), name)
        try:
            with open(path) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        if pid_is_agent(int(rec.get("pid", 0))):
            out.append(rec)
        else:  # the agent died without cleaning up (SIGKILL): clean up after it
            remove_record(int(rec.get("pid", 0)))
            session_dir = rec.get("session_dir") or ""
            if os.path.dirname(os.path.abspath(session_dir)) == base_dir():
                shutil.rmtree(session_dir, ignore_errors=True)
    return out


def read_record() -> dict | None:
    """The head started on this machine, or None."""
    for rec in all_records():
        if rec.get("role", "head") == "head":
            return rec
    return None


def write_record(rec: dict) -> None:
    path = os.path.join(_records_dir(), f"{rec['pid']}.json")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, path)


def remove_record(pid: int) -> None:
    try:
        os.unlink(os.path.join(_records_dir(), f"{pid}.json"))
    except FileNotFoundError:
        pass
