"""Where ``ember start`` records the cluster it started on this machine (for ``address="auto"``)."""

from __future__ import annotations

import json
import os
import tempfile


def base_dir() -> str:
    """A 0700 directory for this user's ember state: ``$TMPDIR/ember-<uid>``."""
    path = os.path.join(tempfile.gettempdir(), f"ember-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def record_path() -> str:
    return os.path.join(base_dir(), "cluster.json")


def pid_is_agent(pid: int) -> bool:
    """True when ``pid`` is a live ember node agent (not a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ember_node" in f.read()
    except OSError:
        return False


def read_record() -> dict | None:
    """The running local cluster's record, or None (a stale record is removed)."""
    try:
        with open(record_path()) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not pid_is_agent(int(rec.get("pid", 0))):
        remove_record()
        return None
    return rec


def write_record(rec: dict) -> None:
    path = record_path()
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, path)


def remove_record() -> None:
    try:
        os.unlink(record_path())
    except FileNotFoundError:
        pass
