"""Tails the output files of this node's workers and hands attributed lines to the agent.

Each worker writes its stdout and stderr to ``logs/worker-<pid>.out`` and ``.err`` with
mark lines saying which job and task the lines after them belong to (``ember._output``).
The agent's loop calls :meth:`WorkerOutput.poll` a few times a second; the files are read
from where the last read stopped, so a worker that crashed still has everything it wrote
delivered, and nothing a worker prints can disturb the agent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ember._output import OutputParser

READ_BUDGET = 4 << 20  # bytes read from one file per poll: a flood cannot stall the loop


@dataclass
class OutputBatch:
    """Lines of one worker stream for one job."""

    job: str
    pid: int
    is_stderr: bool
    name: str
    lines: list[str]


class _Stream:
    __slots__ = ("path", "fd", "parser", "is_stderr")

    def __init__(self, path: str, is_stderr: bool) -> None:
        self.path = path
        self.fd = -1
        self.parser = OutputParser()
        self.is_stderr = is_stderr


class WorkerOutput:
    """The output files of the workers this agent forked, by pid."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self._streams: dict[int, tuple[_Stream, _Stream]] = {}

    def watch(self, pid: int) -> None:
        """Start following the files of the worker with ``pid``."""
        if pid not in self._streams:
            self._streams[pid] = tuple(  # type: ignore[assignment]
                _Stream(os.path.join(self.log_dir, f"worker-{pid}.{ext}"), ext == "err") for ext in ("out", "err"))

    def poll(self) -> list[OutputBatch]:
        """What every followed worker wrote since the last poll."""
        out: list[OutputBatch] = []
        for pid, streams in self._streams.items():
            for stream in streams:
                self._read(pid, stream, False, out)
        return out

    def forget(self, pid: int) -> list[OutputBatch]:
        """The worker is gone: the rest of its output (a last line without a newline too)."""
        out: list[OutputBatch] = []
        streams = self._streams.pop(pid, None)
        if streams is not None:
            for stream in streams:
                self._read(pid, stream, True, out)
                if stream.fd >= 0:
                    os.close(stream.fd)
        return out

    def close(self) -> None:
        for streams in self._streams.values():
            for stream in streams:
                if stream.fd >= 0:
                    os.close(stream.fd)
        self._streams.clear()

    def _read(self, pid: int, stream: _Stream, final: bool, out: list[OutputBatch]) -> None:
        if stream.fd < 0:
            try:
                stream.fd = os.open(stream.path, os.O_RDONLY)
            except OSError:  # not created yet (the worker is starting), or no file at all
                return
        data = b""
        budget = READ_BUDGET
        while budget > 0:
            try:
                chunk = os.read(stream.fd, min(budget, 1 << 20))
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            budget -= len(chunk)
        if not data and not final:
            return
        for chunk in stream.parser.feed(data, final=final and budget > 0):
            out.append(OutputBatch(chunk.job, pid, stream.is_stderr, chunk.name, chunk.lines))
