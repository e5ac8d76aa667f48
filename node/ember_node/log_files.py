"""A session's log files: what they are, which one a question names, reading the end of one
and following it as it grows. Used by ``ember logs`` (on this machine) and by the head's
``LogFiles``/``StreamLog`` calls (for a remote address).

A session's ``logs/`` directory holds ``agent.log`` (or ``node.log`` on a worker node), the
zygote's ``workers.log``, every worker's ``worker-<pid>.out``/``.err`` and each submitted
job's ``job-<id>.log``. Only plain files directly in that directory are ever opened: a name
with a slash, ``..``, or a symbolic link is refused, so a caller cannot read outside it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ember._output import MARK

_WORKER = re.compile(r"^worker-(\d+)\.(out|err)$")
_JOB = re.compile(r"^job-(.+)\.log$")
CHUNK = 256 * 1024


class LogNotFound(LookupError):
    """No log file matches what was asked for (the message says what to do instead)."""


@dataclass(frozen=True)
class LogFile:
    """One file of a session's ``logs/`` directory."""

    name: str
    size: int
    mtime: float
    kind: str  # "agent", "workers", "worker", "job" or "other"
    pid: int | None = None  # the worker's, for a worker file
    job: str = ""  # the submission id, for a job's log
    node: str = ""  # the node (or session) whose directory it is in


def classify(name: str) -> tuple[str, int | None, str]:
    """(kind, worker pid, job id) for a file name in a logs directory. Pure."""
    m = _WORKER.match(name)
    if m:
        return "worker", int(m.group(1)), ""
    m = _JOB.match(name)
    if m:
        return "job", None, m.group(1)
    if name in ("agent.log", "node.log"):
        return "agent", None, ""
    if name == "workers.log":
        return "workers", None, ""
    return "other", None, ""


def list_logs(log_dir: str, node: str = "") -> list[LogFile]:
    """The plain files of ``log_dir``, agent logs first, then by name."""
    out = []
    try:
        entries = list(os.scandir(log_dir))
    except OSError:
        return []
    for e in entries:
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        kind, pid, job = classify(e.name)
        out.append(LogFile(e.name, st.st_size, st.st_mtime, kind, pid, job, node))
    order = {"agent": 0, "workers": 1, "job": 2, "worker": 3, "other": 4}
    out.sort(key=lambda f: (order[f.kind], f.pid or 0, f.name))
    return out


def check_name(name: str) -> str:
    """``name`` if it names a file directly in a logs directory; ValueError otherwise. Pure."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ValueError(f"{name!r} is not a log file name: give a name from `ember logs` (no directories)")
    return name


def path_in(log_dir: str, name: str) -> str:
    """The path of the plain file ``name`` in ``log_dir``; refuses anything else (a link,
    a directory, a path outside it)."""
    path = os.path.join(log_dir, check_name(name))
    try:
        st = os.lstat(path)
    except OSError:
        raise LogNotFound(f"no log file {name!r} in {log_dir}; `ember logs` lists them") from None
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{name!r} is not a plain file in the session's logs; refusing to read it")
    return path


def pick(files: Iterable[LogFile], name: str = "", worker_pid: int | None = None, job: str = "",
         node: str = "", stderr: bool = False) -> LogFile:
    """The one file a question names: by ``name``, by worker pid (``.out``, or ``.err`` with
    ``stderr``) or by job id; ``node`` narrows to files of nodes whose id starts with it.
    Raises LogNotFound saying what exists instead. Pure."""
    files = [f for f in files if not node or f.node.startswith(node)]
    if name:
        hits = [f for f in files if f.name == name]
        what = f"file {name!r}"
    elif worker_pid is not None:
        want = f"worker-{worker_pid}.{'err' if stderr else 'out'}"
        hits = [f for f in files if f.name == want]
        what = f"output of worker pid {worker_pid}"
    elif job:
        hits = [f for f in files if f.kind == "job" and f.job == job]
        what = f"log of job {job!r}"
    else:
        raise ValueError("say which log: a file name, --worker-pid, --actor-id, --task-id or --job")
    if not hits:
        where = f" on node {node}" if node else ""
        raise LogNotFound(f"no {what}{where}; `ember logs` lists the files there are")
    if len(hits) > 1:
        nodes = ", ".join(sorted(f.node for f in hits))
        raise LogNotFound(f"the {what} is on several nodes ({nodes}): pick one with --node")
    return hits[0]


def tail_offset(data: bytes, lines: int, at_start: bool) -> int:
    """Where the last ``lines`` lines of ``data`` (the end of a file) begin; ``at_start``:
    ``data`` starts at the file's start. -1 when ``data`` holds fewer lines and more of
    the file lies before it. A final line without a newline counts as a line. Pure."""
    if lines <= 0:
        return len(data)
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0 if at_start else -1
    return pos + 1


def tail_start(path: str, lines: int | None) -> int:
    """The byte offset in ``path`` where its last ``lines`` lines begin (None: 0, all of it)."""
    if lines is None or lines < 0:
        return 0
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        block = 64 * 1024
        while True:
            start = max(size - block, 0)
            f.seek(start)
            at = tail_offset(f.read(size - start), lines, start == 0)
            if at >= 0:
                return start + at
            block *= 4


def read_log(path: str, offset: int, follow: bool, active: Callable[[], bool] = lambda: True,
             poll_s: float = 0.25) -> Iterator[bytes]:
    """The bytes of ``path`` from ``offset``; with ``follow`` keep yielding what is appended
    while ``active()`` is true (a file that shrinks, rotated, is read again from its start)."""
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(CHUNK)
            if chunk:
                yield chunk
                continue
            if not follow or not active():
                return
            try:
                if os.stat(path).st_size < f.tell():
                    f.seek(0)
            except OSError:
                return
            time.sleep(poll_s)


class MarkRenderer:
    """Turns the attribution marks in a worker's output (``ember._output``) into readable
    lines, ``[ember] job <job>: <name>``; everything else passes unchanged. Pure."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        buf = self._pending + data
        if final:
            body, self._pending = buf, b""
        else:
            cut = buf.rfind(b"\n") + 1
            body, self._pending = buf[:cut], buf[cut:]
            if len(self._pending) > CHUNK and MARK not in self._pending:
                body, self._pending = buf, b""
        if MARK not in body:
            return body
        out = []
        for line in body.split(b"\n"):
            at = line.find(MARK)
            if at >= 0:
                job, _, name = line[at + len(MARK):].partition(b" ")
                line = line[:at] + b"[ember] job " + job + b": " + name
            out.append(line)
        return b"\n".join(out)


def format_size(n: int) -> str:
    """``n`` bytes for a table: 812 B, 4.2 KiB, 1.3 MiB. Pure."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def worker_of(rows: Iterable[dict], key: str, value: str) -> tuple[int, str | None]:
    """(worker pid, node id) of the actor or task whose ``key`` ("actor_id" or "task_id")
    is ``value`` (or a unique prefix of it), from state rows (``ember.util.state``'s); for
    a task that ran more than once, its latest attempt. Raises LogNotFound. Pure."""
    what = "actor" if key == "actor_id" else "task"
    hits = [r for r in rows if str(r.get(key) or "").startswith(value.lower())] if value else []
    if len({r.get(key) for r in hits}) > 1:
        raise LogNotFound(f"{value!r} is the start of several {what} ids: give more of it")
    pid_key = "pid" if what == "actor" else "worker_pid"
    ran = [r for r in hits if r.get(pid_key)]
    if not ran:
        if hits:
            raise LogNotFound(f"{what} {value} has not run on a worker yet: no log file holds its output")
        raise LogNotFound(f"the head knows no {what} {value!r}; `ember list {what}s` shows the ids")
    best = max(ran, key=lambda r: r.get("attempt") or 0)
    return int(best[pid_key]), best.get("node_id")
