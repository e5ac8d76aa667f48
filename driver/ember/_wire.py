"""Framed messages over Unix sockets: the intra-host hot path.

A frame is a 4-byte little-endian length followed by a pickled tuple whose first item is the
message type (see ``_messages``). Reads take everything the kernel has (64 KiB at a time) and
parse many frames per call; writes from clients are blocking ``sendall`` under a lock, writes
from the agent are non-blocking with a user-space buffer, so the agent never blocks and no
pipelined exchange can deadlock. Intra-host peers are processes of the same user behind a
0700 directory, so pickle here crosses no trust boundary (gRPC carries cross-host traffic).
"""

from __future__ import annotations

import pickle
import select
import socket
import struct
import threading
from typing import Any

_HEADER = struct.Struct("<I")
_HLEN = _HEADER.size
RECV_CHUNK = 64 * 1024
_dumps = pickle.dumps
_loads = pickle.loads
_pack = _HEADER.pack
_unpack_from = _HEADER.unpack_from


class _DataOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it names {module}.{name}: a message may hold only plain data")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it holds a persistent id: a message may hold only plain data")


def loads_data_only(payload: bytes | memoryview) -> Any:
    """Decode a frame's payload that may hold only plain data (None, bool, int, float, str,
    bytes, and tuples, lists, dicts and sets of them): any reference to a class or function,
    which is how a pickle runs code, is refused with ``pickle.UnpicklingError``. What crosses
    gRPC into an agent is checked with this before the agent reads it."""
    import io

    return _DataOnly(io.BytesIO(payload)).load()


# A frame longer than this is refused (a length header of garbage would otherwise make the
# reader buffer gigabytes waiting for the rest); values this large go through the store.
MAX_FRAME = 1 << 30


class ConnectionClosed(Exception):
    """The peer closed the connection (or died)."""


class FrameError(ValueError):
    """The peer sent bytes that are not a frame of this protocol (the connection is unusable).

    ``messages`` holds the messages decoded before the bad frame, in order."""

    def __init__(self, reason: str, messages: list[Any]) -> None:
        super().__init__(reason)
        self.messages = messages


def encode(msg: tuple) -> bytes:
    """One frame for ``msg``."""
    body = _dumps(msg, 5)
    return _pack(len(body)) + body


class FrameReader:
    """Incremental frame parser over a byte stream."""

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    @property
    def partial(self) -> int:
        """Bytes buffered of a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Add bytes, return every complete message now available.

        Raises ``FrameError`` (with the messages decoded before it) on a frame that is too
        long or does not unpickle; the reader is unusable afterwards."""
        buf = self._buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= _HLEN:
            (size,) = _unpack_from(buf, pos)
            if size > self.max_frame:
                buf.clear()
                raise FrameError(f"a frame of {size} bytes is longer than the limit of {self.max_frame}", out)
            end = pos + _HLEN + size
            if end > n:
                break
            try:
                out.append(_loads(memoryview(buf)[pos + _HLEN : end]))
            except Exception as exc:  # noqa: BLE001 - whatever the bytes make pickle raise
                buf.clear()
                raise FrameError(f"a frame of {size} bytes does not decode ({type(exc).__name__}: "
                                 f"{str(exc)[:200]})", out) from None
            pos = end
        if pos:
            del buf[:pos]
        return out


class ClientConnection:
    """A blocking client end (driver or worker) of a framed Unix socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = FrameReader()
        self._send_lock = threading.Lock()
        self._chunk = bytearray(RECV_CHUNK)
        self._view = memoryview(self._chunk)
        self.closed = False

    @classmethod
    def connect(cls, path: str, timeout: float = 10.0) -> ClientConnection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        sock.settimeout(None)
        return cls(sock)

    def send(self, msg: tuple) -> None:
        data = encode(msg)
        with self._send_lock:
            self._sendall(data)

    def send_many(self, msgs: list[tuple]) -> None:
        data = b"".join(encode(m) for m in msgs)
        with self._send_lock:
            self._sendall(data)

    def _sendall(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionClosed("connection to the node agent is closed")
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.closed = True
            raise ConnectionClosed(f"lost the connection to the node agent: {exc}") from exc

    def recv(self, timeout: float | None) -> list[Any]:
        """Wait up to ``timeout`` seconds (None: forever) for data; return the messages read."""
        if self.closed:
            raise ConnectionClosed("connection to the node agent is closed")
        sock = self.sock
        if timeout is not None:
            ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
            if not ready:
                return []
        try:
            n = sock.recv_into(self._view)
        except InterruptedError:
            return []
        except OSError as exc:
            self.closed = True
            raise ConnectionClosed(f"lost the connection to the node agent: {exc}") from exc
        if n == 0:
            self.closed = True
            raise ConnectionClosed("the node agent closed the connection")
        msgs = self._reader.feed(self._view[:n])
        # drain whatever else is already queued without blocking
        while n == RECV_CHUNK:
            try:
                n = sock.recv_into(self._view, RECV_CHUNK, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            if n == 0:
                self.closed = True
                break
            msgs += self._reader.feed(self._view[:n])
        return msgs

    def recv_nowait(self) -> list[Any]:
        """Whatever messages are available now, without blocking."""
        return self.recv(0.0)

    def recv_ready(self) -> list[Any]:
        """Read a socket already known to be readable (no select first)."""
        return self.recv(None)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class ServerConnection:
    """The agent's end of a client connection: non-blocking, buffered writes."""

    __slots__ = ("sock", "fd", "reader", "out", "closed", "kind", "ident", "state", "error")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.reader = FrameReader()
        self.out = bytearray()
        self.closed = False
        self.kind = ""  # "driver" | "worker"
        self.ident: Any = None
        self.state: Any = None
        self.error = ""  # why the peer's input was refused (a bad frame); set by ``read``

    def queue(self, msg: tuple) -> None:
        body = _dumps(msg, 5)
        self.out += _pack(len(body))
        self.out += body

    def flush(self) -> bool:
        """Write what the socket takes; return True if everything was written."""
        out = self.out
        while out:
            try:
                n = self.sock.send(out)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self.closed = True
                out.clear()
                return True
            del out[:n]
        return True

    def read(self, view: memoryview) -> list[Any] | None:
        """Read what is available; None when the peer has closed.

        A bad frame sets ``error`` (the reason) and returns the messages before it; the
        caller closes the connection."""
        msgs: list[Any] = []
        while True:
            try:
                n = self.sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                return msgs
            except OSError:
                return None if not msgs else msgs
            if n == 0:
                return None if not msgs else msgs
            try:
                msgs += self.reader.feed(view[:n])
            except FrameError as exc:
                self.error = str(exc)
                return msgs + exc.messages
            if n < len(view):
                return msgs

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
