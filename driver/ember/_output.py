"""What tasks and actors print: per-worker files, attribution marks, and the driver's printer.

How a line gets from ``print()`` in a task to the driver that submitted the task:

1. Every worker's stdout and stderr (file descriptors 1 and 2, so C extensions and child
   processes are caught too) are files of its own in the session's log directory,
   ``logs/worker-<pid>.out`` and ``.err``, opened right after the fork
   (:func:`redirect_stdio`). Nothing the worker prints can reach the channel on which the
   zygote reports to the agent: that is a pipe the worker closes at once.
2. Before a task runs, the worker writes a *mark* line into both files when the job or the
   name to show differ from the last ones written (:class:`OutputMarks`): the job is the
   driver that submitted the work (nested tasks inherit it; an actor keeps its creator's),
   the name is the function's, or the actor class's. So every later line of the file
   belongs to that task until the next mark, whatever wrote it, and attribution needs no
   message per task and no clock. A user line that happens to look like a mark can only
   mislabel that user's own output.
3. The node agent tails the files (``ember_node.worker_output``), splits them into
   attributed lines with :class:`OutputParser`, and sends them, batched, to the output
   connection of the job's driver: a second connection of that driver, local or over
   gRPC, read by a daemon thread (:class:`OutputPrinter`) that prints each line as
   ``(name pid=N) line`` on the driver's stdout (stderr for the worker's stderr).
   ``init(log_to_driver=False)`` opens no such connection. A worker node tails its own
   workers' files and passes the lines to the head (NODE_OUTPUT), which routes them the
   same way. The files stay in the session's log directory after the cluster stops.
4. A line that carries a progress bar's state (``ember.experimental.tqdm_ray``) is not
   printed: the printer hands it to the driver's bars (``ember._progress``), which draw it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ember import _messages as M
from ember._progress import ProgressBars, driver_bars, route

MARK = b"\x00\x1fember-task "  # starts a mark line: MARK job SP name LF
MAX_LINE = 64 * 1024  # a longer run of bytes without a newline is passed on as one line


def mark_line(job: str, name: str) -> bytes:
    """The mark line that attributes what follows to ``job`` and ``name``."""
    return MARK + job.encode() + b" " + name.replace("\n", " ").encode() + b"\n"


def display_name(task_name: str) -> str:
    """What a line's prefix shows for a task name: ``f`` for ``mod.<locals>.f``, ``Counter``
    for ``Counter.__init__`` (an actor's prefix is its class)."""
    if task_name.endswith(".__init__"):
        task_name = task_name[: -len(".__init__")]
    return task_name.rsplit(".", 1)[-1] or task_name


def redirect_stdio(log_dir: str | None) -> bool:
    """In a freshly forked worker: stdin from /dev/null, stdout and stderr to
    ``log_dir/worker-<pid>.out`` and ``.err``. False (output left alone) without ``log_dir``."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if not log_dir:
        return False
    pid = os.getpid()
    for fd, ext in ((1, "out"), (2, "err")):
        f = os.open(os.path.join(log_dir, f"worker-{pid}.{ext}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(f, fd)
        os.close(f)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    return True


class OutputMarks:
    """Writes mark lines into a worker's output files when the attribution changes."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last: tuple[str, str] | None = None

    def mark(self, job: str, task_name: str) -> None:
        """Attribute what follows to ``job`` and the task called ``task_name``."""
        if not self.enabled or self._last == (job, task_name):
            return
        self._last = (job, task_name)
        line = mark_line(job, display_name(task_name))
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            try:
                stream.flush()  # what the last task left in Python's buffer belongs to it
            except (OSError, ValueError, AttributeError):
                pass
            try:
                os.write(fd, line)
            except OSError:
                pass


@dataclass
class OutputChunk:
    """Consecutive lines of one worker stream with the same attribution."""

    job: str
    name: str
    lines: list[str] = field(default_factory=list)


class OutputParser:
    """Splits the bytes of one worker stream into attributed lines (pure: no I/O)."""

    def __init__(self) -> None:
        self.job = ""
        self.name = ""
        self._pending = b""

    def feed(self, data: bytes, final: bool = False) -> list[OutputChunk]:
        """Chunks for the complete lines in what was read so far; with ``final`` (the worker
        is gone) a last line without a newline too."""
        buf = self._pending + data if self._pending else data
        pieces = buf.split(b"\n")
        rest = pieces.pop()
        if final and rest:
            pieces.append(rest)
            rest = b""
        while len(rest) > MAX_LINE:
            pieces.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._pending = rest
        out: list[OutputChunk] = []
        for piece in pieces:
            at = piece.find(MARK)
            if at < 0:
                self._add(out, piece)
                continue
            if at > 0:  # the end of a line printed without a newline, then a mark
                self._add(out, piece[:at])
            job, _, name = piece[at + len(MARK):].partition(b" ")
            self.job = job.decode(errors="replace")
            self.name = name.decode(errors="replace")
        return out

    def _add(self, out: list[OutputChunk], piece: bytes) -> None:
        if not out or out[-1].job != self.job or out[-1].name != self.name:
            out.append(OutputChunk(self.job, self.name))
        out[-1].lines.append(piece.decode(errors="replace"))


def format_lines(name: str, pid: int, lines: list[str]) -> str:
    """The text the driver prints for ``lines``: ``(name pid=N) line`` each."""
    prefix = f"({name} pid={pid}) " if name else f"(pid={pid}) "
    return "".join(f"{prefix}{line}\n" for line in lines)


class OutputPrinter:
    """A driver's receiver of its workers' output: one connection of its own to the agent
    (``conn``: a ``ClientConnection`` or a ``GrpcConnection``), read by a daemon thread."""

    def __init__(self, conn: Any, job: str, stdout: TextIO | None = None, stderr: TextIO | None = None,
                 bars: ProgressBars | None = None) -> None:
        self.conn = conn
        self.bars = bars if bars is not None else driver_bars()  # where tasks' progress bars are drawn
        self._out = stdout
        self._err = stderr
        self._drained = threading.Event()
        self._closed = False
        conn.send((M.HELLO, "output", os.getpid(), None, M.hello_info({"job": job})))
        # once the agent answers, it knows this connection: nothing printed later is missed
        conn.send((M.REQUEST, 0, "session", None))
        deadline = time.monotonic() + 30
        while not any(m[0] == M.REPLY for m in conn.recv(1.0)):
            if time.monotonic() > deadline:
                raise TimeoutError("the node agent did not answer the output connection within 30 s")
        self._thread = threading.Thread(target=self._run, name="ember-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._closed:
                try:
                    msgs = self.conn.recv(0.25)
                except Exception:  # noqa: BLE001 - the agent or the connection is gone
                    return
                for msg in msgs:
                    if msg[0] == M.OUTPUT:
                        self._print(msg[1])
                    elif msg[0] == M.REPLY:
                        self._drained.set()
        finally:
            self._drained.set()  # nothing more will come: close() need not wait

    def _print(self, batch: list) -> None:
        bars = self.bars
        for pid, is_err, name, lines in batch:
            stream = (self._err or sys.stderr) if is_err else (self._out or sys.stdout)
            lines, states = route(lines)  # a task's progress bar updates (ember._progress)
            for state in states:
                bars.update(pid, state, f"{name} pid={pid}" if name else f"pid={pid}")
            if not lines:
                continue
            try:
                bars.write(stream, format_lines(name, pid, lines))
            except (OSError, ValueError):
                pass

    def close(self, drain_timeout: float = 10.0) -> None:
        """Print what workers wrote until now, then disconnect. The agent's answer comes
        after those lines, so this waits only as long as printing them takes (at most
        ``drain_timeout``; not at all when the agent is gone)."""
        if self._closed:
            return
        try:
            self._drained.clear()
            self.conn.send((M.REQUEST, 0, "drain_output", None))
            self._drained.wait(drain_timeout)
        except Exception:  # noqa: BLE001 - the agent is gone: nothing more will come
            pass
        self._closed = True
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass
