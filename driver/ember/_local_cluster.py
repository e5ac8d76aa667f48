"""Where ember keeps its state on this machine, all under ``$TMPDIR/ember-<uid>/`` (0700):

``agents/``    one JSON file per agent ``ember start`` started (a head, worker nodes), for
               ``address="auto"`` and ``ember stop``;
``token``      the cluster token ``ember start --head`` generated (0600);
``sessions/``  one directory per cluster session (embedded clusters' and ``ember start``'s):
               ``logs/`` holds the agent's log, the zygote's ``workers.log`` and every
               worker's ``worker-<pid>.out``/``.err``. When a session ends only ``logs/``
               stays; the newest ``KEEP_SESSIONS`` ended sessions are kept, older ones go
               when a new session starts.

Unix socket paths are limited to 107 bytes. When a session directory is too deep for its
sockets (a long ``TMPDIR``), they go to a short private directory instead,
``/tmp/ember-<uid>-sockets/<hash of the session directory>/`` (0700), removed with the
session (:func:`socket_dir`, :func:`remove_socket_dir`).

One JSON file per agent under ``<state dir>/agents/``: a head, and any worker nodes. The state
dir is ``$XDG_RUNTIME_DIR/ember`` when that is set, else ``$TMPDIR/ember-<uid>``; it, the
records, the session dirs and sockets they name are checked to be this user's own and
private before use (``ember._private_dir``), so another local user cannot plant a record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time

from ember import _private_dir

KEEP_SESSIONS = 5  # ended sessions whose logs are kept
_YOUNG_S = 60.0  # a session this new may not have written its pid file yet: never pruned
PID_FILE = "agent.pid"


def base_dir() -> str:
    """A 0700 directory for this user's ember state: ``$XDG_RUNTIME_DIR/ember`` when
    ``XDG_RUNTIME_DIR`` is set (a per-user directory), else ``$TMPDIR/ember-<uid>``.
    Raises ``UnsafePathError`` when it exists with another owner or group/world access."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        _private_dir.check(runtime, "dir")
        return _private_dir.ensure_dir(os.path.join(runtime, "ember"))
    return _private_dir.ensure_dir(os.path.join(tempfile.gettempdir(), f"ember-{os.getuid()}"))


MAX_UNIX_PATH = 107  # bytes of a Unix socket path (sun_path is 108, with its NUL)
SOCKET_NAME_ROOM = 24  # the longest socket name ember uses: "d-<pid>-<6 hex>.sock"
SHORT_SOCKET_ROOT = "/tmp"


def _short_socket_dir(session_dir: str) -> str:
    digest = hashlib.sha256(os.path.abspath(session_dir).encode()).hexdigest()[:16]
    return os.path.join(SHORT_SOCKET_ROOT, f"ember-{os.getuid()}-sockets", digest)


def _fits(directory: str) -> bool:
    return len(os.fsencode(os.path.abspath(directory))) + 1 + SOCKET_NAME_ROOM <= MAX_UNIX_PATH


def socket_dir(session_dir: str) -> str:
    """Where a session's Unix sockets go: the session directory itself, or when its path is
    too long for a socket path, a short private directory (created here)."""
    if _fits(session_dir):
        return session_dir
    path = _short_socket_dir(session_dir)
    try:
        _private_dir.ensure_dir(os.path.dirname(path))
        _private_dir.ensure_dir(path)
    except OSError as exc:
        raise OSError(
            f"the session directory {session_dir} is too long for Unix socket paths "
            f"({MAX_UNIX_PATH} bytes), and the short directory {path} cannot be used ({exc}); "
            f"set TMPDIR to a shorter directory") from exc
    if not _fits(path):
        raise OSError(f"no short directory for Unix sockets: {path} is too long; set TMPDIR "
                      f"to a shorter directory")
    return path


def remove_socket_dir(session_dir: str) -> None:
    """The session is over: remove its short socket directory, if it had one."""
    short = _short_socket_dir(session_dir)
    if os.path.isdir(short) and not os.path.islink(short):
        shutil.rmtree(short, ignore_errors=True)


def sessions_dir() -> str:
    """Where sessions live: ``$TMPDIR/ember-<uid>/sessions``."""
    path = os.path.join(base_dir(), "sessions")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def new_session_dir(prefix: str) -> str:
    """A fresh session directory with its ``logs/`` (old ended sessions are pruned first)."""
    prune_sessions()
    path = tempfile.mkdtemp(prefix=f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}-", dir=sessions_dir())
    os.makedirs(os.path.join(path, "logs"), mode=0o700)
    return path


def end_session(session_dir: str) -> None:
    """A session is over: remove all of it but ``logs/`` (sockets, spill files, pid file)."""
    remove_socket_dir(session_dir)
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


def write_pid_file(session_dir: str) -> None:
    """The agent running ``session_dir`` says so (pruning skips sessions whose agent lives)."""
    with open(os.path.join(session_dir, PID_FILE), "w") as f:
        f.write(str(os.getpid()))


def _session_live(path: str) -> bool:
    try:
        if time.time() - os.stat(path).st_mtime < _YOUNG_S:
            return True
        with open(os.path.join(path, PID_FILE)) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    return pid > 0 and pid_is_agent(pid)


def prune_sessions(keep: int = KEEP_SESSIONS) -> None:
    """Delete ended sessions beyond the newest ``keep`` (live ones are never touched)."""
    root = sessions_dir()
    ended = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path) and not _session_live(path):
            try:
                ended.append((os.stat(path).st_mtime, path))
            except OSError:
                pass
    ended.sort(reverse=True)
    for _, path in ended[keep:]:
        shutil.rmtree(path, ignore_errors=True)


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
            if os.path.dirname(session_dir) == sessions_dir() and not os.path.islink(session_dir):
                end_session(session_dir)
            _unlink_arena(rec.get("arena"))
    return out


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
