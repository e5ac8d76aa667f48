"""The head's table of submitted jobs and the rules of their states (pure: no I/O, no clock).

    PENDING --started--> RUNNING --exited 0--> SUCCEEDED
       |                    |------exited n--> FAILED (exit code n, or the signal)
       |                    `--stop, exited--> STOPPED
       |--start failed----> FAILED
       `--stop-------------> STOPPED

A job that was asked to stop is STOPPED whatever its exit code (SIGTERM usually makes it
nonzero). Ended jobs never change again; only they may be deleted.
"""

from __future__ import annotations

import re
import shlex
import signal
from dataclasses import dataclass, field, replace
from typing import Any

from ember.job_submission import JobStatus

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class JobNotFound(KeyError):
    """No job has that submission id."""

    def __str__(self) -> str:
        return f"no job with submission id {self.args[0]!r}; `ember job list` shows the jobs the head knows"


class JobConflict(ValueError):
    """The operation does not fit the job's state (or its id is taken)."""


def new_submission_id(random_bytes: bytes) -> str:
    """A submission id made from 16 random bytes: ``embersubmit_`` and 16 letters/digits."""
    return "embersubmit_" + "".join(_ALPHABET[b % len(_ALPHABET)] for b in random_bytes[:16])


def check_submission_id(sid: str) -> None:
    """Refuse an id that could not name a file: letters, digits, ``_ . -``, at most 128."""
    if not _ID.match(sid):
        raise ValueError(f"submission id {sid!r} is not valid: use letters, digits, '_', '.' and '-' "
                         f"(at most 128, starting with a letter or digit)")


@dataclass
class JobRecord:
    """One job as the head keeps it (times in milliseconds since the epoch)."""

    submission_id: str
    entrypoint: str
    metadata: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    status: JobStatus = JobStatus.PENDING
    message: str = "the job is being started"
    error_type: str = ""
    start_time_ms: int = 0
    end_time_ms: int = 0
    driver_exit_code: int | None = None
    driver_pid: int = 0
    stop_requested: bool = False


_SHELL_SYNTAX = frozenset("|&;<>()$`\\*?[]{}#~=!\n")


def entrypoint_argv(entrypoint: str) -> list[str]:
    """How to run an entrypoint command: a plain one (words and quotes only) directly, so its
    exit status and signals are the program's own; anything else through ``/bin/sh -c``."""
    if not _SHELL_SYNTAX.intersection(entrypoint):
        try:
            words = shlex.split(entrypoint)
        except ValueError:
            words = []
        if words:
            return words
    return ["/bin/sh", "-c", entrypoint]


def exit_description(returncode: int) -> str:
    """``exit code 3`` or ``signal SIGKILL`` for a process's return code."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class JobTable:
    """Submitted jobs by submission id, in submission order; every change is a method."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}

    def add(self, record: JobRecord) -> None:
        check_submission_id(record.submission_id)
        if record.submission_id in self._jobs:
            raise JobConflict(f"a job with submission id {record.submission_id!r} already exists; "
                              f"pick another id or delete that job first")
        self._jobs[record.submission_id] = record

    def get(self, sid: str) -> JobRecord:
        """A copy of the job's record."""
        return replace(self._record(sid))

    def list(self) -> list[JobRecord]:
        return [replace(r) for r in self._jobs.values()]

    def running(self) -> list[str]:
        """Submission ids of the jobs whose entrypoint runs now."""
        return [sid for sid, r in self._jobs.items() if r.status == JobStatus.RUNNING]

    def _record(self, sid: str) -> JobRecord:
        try:
            return self._jobs[sid]
        except KeyError:
            raise JobNotFound(sid) from None

    def started(self, sid: str, pid: int, now_ms: int) -> None:
        """The entrypoint's process ``pid`` is running."""
        r = self._record(sid)
        if r.status != JobStatus.PENDING:
            raise JobConflict(f"job {sid} is {r.status}, not PENDING: it cannot start")
        r.status, r.driver_pid, r.start_time_ms = JobStatus.RUNNING, pid, now_ms
        r.message = "the entrypoint is running"

    def start_failed(self, sid: str, reason: str, now_ms: int) -> None:
        """The entrypoint could not be started (``reason`` says why)."""
        r = self._record(sid)
        if r.status.is_terminal():
            return
        r.status, r.end_time_ms, r.error_type = JobStatus.FAILED, now_ms, "JOB_SETUP_FAILED"
        r.message = f"the job could not be started: {reason}"

    def request_stop(self, sid: str, now_ms: int) -> bool:
        """Ask a job to stop. True when it had not ended: a PENDING one is STOPPED at once, a
        RUNNING one once its process exits (the caller signals it)."""
        r = self._record(sid)
        if r.status.is_terminal():
            return False
        r.stop_requested = True
        if r.status == JobStatus.PENDING:
            r.status, r.end_time_ms, r.message = JobStatus.STOPPED, now_ms, "the job was stopped before it started"
        else:
            r.message = "the job is being stopped"
        return True

    def exited(self, sid: str, returncode: int, now_ms: int, output_tail: str = "") -> JobStatus:
        """The entrypoint's process ended with ``returncode`` (negative: killed by that signal)."""
        r = self._record(sid)
        if r.status.is_terminal():
            return r.status
        r.driver_exit_code, r.end_time_ms = returncode, now_ms
        if r.stop_requested:
            r.status, r.message = JobStatus.STOPPED, "the job was stopped on request"
        elif returncode == 0:
            r.status, r.message = JobStatus.SUCCEEDED, "the entrypoint finished successfully"
        else:
            r.status, r.error_type = JobStatus.FAILED, "JOB_ENTRYPOINT_COMMAND_ERROR"
            r.message = f"the entrypoint failed with {exit_description(returncode)}"
            if output_tail:
                r.message += f"; the end of its output:\n{output_tail}"
        return r.status

    def delete(self, sid: str) -> None:
        """Forget an ended job; raises ``JobConflict`` for one that has not ended."""
        r = self._record(sid)
        if not r.status.is_terminal():
            raise JobConflict(f"job {sid} is {r.status}; stop it first (`ember job stop {sid}`), "
                              f"then delete it")
        del self._jobs[sid]


def output_tail(text: str, lines: int = 10, chars: int = 2000) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of ``text``."""
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail[-chars:]
