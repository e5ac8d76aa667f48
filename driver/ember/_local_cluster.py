"""Where ``ember start`` records the agents it started on this machine (for ``address="auto"``).

One JSON file per agent under ``<state dir>/agents/``: a head, and any worker nodes. The state
dir is ``$XDG_RUNTIME_DIR/ember`` when that is set, else ``$TMPDIR/ember-<uid>``; it, the
records, the session dirs and sockets they name are checked to be this user's own and
private before use (``ember._private_dir``), so another local user cannot plant a record.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from ember import _private_dir


def base_dir() -> str:
    """A 0700 directory for this user's ember state: ``$XDG_RUNTIME_DIR/ember`` when
    ``XDG_RUNTIME_DIR`` is set (a per-user directory), else ``$TMPDIR/ember-<uid>``.
    Raises ``UnsafePathError`` when it exists with another owner or group/world access."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        _private_dir.check(runtime, "dir")
        return _private_dir.ensure_dir(os.path.join(runtime, "ember"))
    return _private_dir.ensure_dir(os.path.join(tempfile.gettempdir(), f"ember-{os.getuid()}"))


def _records_dir() -> str:
    return _private_dir.ensure_dir(os.path.join(base_dir(), "agents"))


def check_record(rec: dict) -> None:
    """Refuse (``UnsafePathError``) a record whose session dir is not a private dir of ours,
    or whose socket is not our own socket in a private dir of ours."""
    session_dir = rec.get("session_dir")
    if session_dir:
        _private_dir.check(os.path.abspath(str(session_dir)), "dir")
    sock = rec.get("socket")
    if sock:
        sock = os.path.abspath(str(sock))
        _private_dir.check(os.path.dirname(sock), "dir")
        _private_dir.check(sock, "socket")


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
    records = _records_dir()
    base = os.path.dirname(records)
    for name in sorted(os.listdir(records)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(records, name)
        try:
            _private_dir.check(path, "file")
            with open(path) as f:
                rec = json.load(f)
            pid = int(rec.get("pid", 0))
        except FileNotFoundError:
            continue
        except (ValueError, TypeError, AttributeError):
            continue  # half written
        if pid_is_agent(pid):
            try:
                check_record(rec)
            except FileNotFoundError:
                continue  # its agent is starting or stopping
            out.append(rec)
        else:  # the agent died without cleaning up (SIGKILL): clean up after it
            remove_record(pid)
            session_dir = os.path.abspath(str(rec.get("session_dir") or ""))
            if os.path.dirname(session_dir) == base and not os.path.islink(session_dir):
                remove_keeping_logs(session_dir)
            _unlink_arena(rec.get("arena"))
    return out


def remove_keeping_logs(session_dir: str) -> None:
    """A dead or failed agent's session dir goes, except its ``logs`` (why it died may be there)."""
    try:
        names = os.listdir(session_dir)
    except OSError:
        return
    for name in names:
        if name == "logs":
            continue
        path = os.path.join(session_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
    try:
        os.rmdir(session_dir)  # gone if it had no logs
    except OSError:
        pass


def _unlink_arena(path: object) -> None:
    """A dead head's shared-memory arena (named in its record), if it is still there and ours."""
    if not isinstance(path, str) or os.path.dirname(path) != "/dev/shm" or \
            not os.path.basename(path).startswith("ember-"):
        return
    try:
        st = os.lstat(path)
    except OSError:
        return
    if st.st_uid == os.geteuid() and not os.path.islink(path):
        try:
            os.unlink(path)
        except OSError:
            pass


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
