"""Results straight from a worker to the driver that is waiting for them.

Through the agent a task's result takes two hops back (worker to agent, agent to driver);
each hop is a process wake-up, most of a round trip's cost. A local driver therefore listens
on a Unix socket of its own, and a worker that finishes one of its tasks also sends it the
result directly; the agent, told so, does not send it again. Only small (inline) results
go this way, and only when the socket takes them without blocking: otherwise the agent's
copy is the one that arrives.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from typing import Any

from ember._wire import RECV_CHUNK, FrameReader


class DirectInbox:
    """A driver's listening socket and the worker connections it accepted."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.conns: dict[int, tuple[socket.socket, FrameReader]] = {}
        self._buf = bytearray(RECV_CHUNK)
        self._view = memoryview(self._buf)

    def register(self, poller: select.poll) -> None:
        poller.register(self.listener.fileno(), select.POLLIN)

    def ready(self, fd: int, poller: select.poll) -> list[Any]:
        """Handle a readable descriptor of ours: accept, or read messages."""
        if fd == self.listener.fileno():
            while True:
                try:
                    sock, _ = self.listener.accept()
                except (BlockingIOError, InterruptedError):
                    return []
                sock.setblocking(False)
                self.conns[sock.fileno()] = (sock, FrameReader())
                poller.register(sock.fileno(), select.POLLIN)
        entry = self.conns.get(fd)
        if entry is None:
            return []
        sock, reader = entry
        msgs: list[Any] = []
        while True:
            try:
                n = sock.recv_into(self._view)
            except (BlockingIOError, InterruptedError):
                return msgs
            except OSError:
                n = 0
            if n == 0:
                poller.unregister(fd)
                del self.conns[fd]
                sock.close()
                return msgs
            msgs += reader.feed(self._view[:n])
            if n < RECV_CHUNK:
                return msgs

    def close(self) -> None:
        for sock, _ in self.conns.values():
            sock.close()
        self.conns.clear()
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class DirectSender:
    """A worker's connections to drivers' inboxes, opened on first use."""

    def __init__(self) -> None:
        self._socks: dict[str, socket.socket | None] = {}

    def send(self, path: str, data: bytes) -> bool:
        """Send ``data`` (whole frames) if the socket takes it now; False if it was not sent."""
        sock = self._socks.get(path, False)
        if sock is False:
            sock = self._connect(path)
        if sock is None:
            return False
        try:
            n = sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                raise
            self._socks[path] = None  # the driver is gone
            sock.close()
            return False
        if n < len(data):  # rare: finish the frame so the stream stays whole
            sock.sendall(data[n:])
        return True

    def _connect(self, path: str) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            self._socks[path] = None
            return None
        self._socks[path] = sock
        return sock
