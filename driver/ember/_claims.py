"""Claim slots: how a worker and its agent agree on which queued task has started.

The agent may queue tasks behind a busy worker (pipelining) and later take the ones that
have not started back, to give them to a worker that freed up first. Each such task carries a
sequence number (1, 2, ... per worker). A slot is a 16-byte file in the session directory:
``started`` (the last sequence number the worker began) and ``revoked`` (tasks up to this
number belong to the agent again). Both sides update it under an ``fcntl`` lock, so a task
is either begun by the worker or taken back by the agent, never both and never neither.
"""

from __future__ import annotations

import fcntl
import os
import struct

_PAIR = struct.Struct("<QQ")  # started, revoked


def claim_path(session_dir: str, worker_id: int) -> str:
    return os.path.join(session_dir, f"claim-{worker_id}")


class ClaimSlot:
    """One worker's slot (opened by both the agent and the worker)."""

    __slots__ = ("fd", "path")

    def __init__(self, path: str, create: bool = False) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.path = path
        self.fd = os.open(path, flags, 0o600)
        if create:
            os.ftruncate(self.fd, _PAIR.size)

    def _read(self) -> tuple[int, int]:
        return _PAIR.unpack(os.pread(self.fd, _PAIR.size, 0))

    def begin(self, seq: int) -> bool:
        """Worker: start task ``seq`` unless the agent took it back (then False)."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            _, revoked = self._read()
            if seq <= revoked:
                return False
            os.pwrite(self.fd, _PAIR.pack(seq, revoked), 0)
            return True
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def revoke(self, up_to: int) -> int | None:
        """Agent: take back every task numbered up to ``up_to`` that has not started; returns
        the last started number (tasks after it are the agent's again), or None when the
        worker holds the lock right now (try again later; never block the agent's loop)."""
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None
        try:
            started, revoked = self._read()
            if up_to > revoked:
                os.pwrite(self.fd, _PAIR.pack(started, up_to), 0)
            return started
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self, unlink: bool = False) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if unlink:
            try:
                os.unlink(self.path)
            except OSError:
                pass
