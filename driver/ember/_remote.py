"""A remote driver's connection: the framed protocol carried over one gRPC stream.

Only the driver dials (``host:port``, e.g. through ``kubectl port-forward``); nothing needs
to connect back to it. The cluster token rides on every call as ``authorization`` metadata.
"""

from __future__ import annotations

import mmap
import queue
import threading
from typing import Any

import grpc

from ember import _messages as M
from ember._proto import node_pb2 as pb
from ember._proto import node_pb2_grpc as pb_grpc
from ember._wire import ConnectionClosed, FrameReader, encode

CHUNK = 4 << 20
BULK_CHUNK = 1 << 20
_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def _receive_buffer(size: int) -> bytearray | mmap.mmap:
    """A writable buffer for ``size`` bytes read from the store.

    A large one is a private anonymous mapping asking for transparent huge pages: a fresh
    ``bytearray`` is zero-filled and then faulted in 4 KiB pages, which cost about as much
    as the transfer itself (100 MiB: ~60 ms against ~15 ms here).
    """
    if size < BULK_CHUNK or not hasattr(mmap, "MADV_HUGEPAGE"):
        return bytearray(size)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_HUGEPAGE)
    return buf


def keep_chunks_in_heap() -> None:
    """Have glibc's malloc serve the ~1 MiB chunks of bulk calls from its heap, and keep them.

    glibc raises its mmap threshold (128 KiB at first) to the size of the largest mapped block
    freed, and its heap trim threshold to twice that. Below ~1 MiB, each chunk gRPC allocates
    is mapped afresh or comes from a heap top that was just trimmed, so all its pages fault in
    again: that doubled the CPU of a 100 MiB transfer here. Freeing one 8 MiB block sets the
    thresholds to 8/16 MiB, as freeing any such buffer would; other allocators ignore it.
    """
    bytes(8 << 20)


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint, for the chunks of bulk calls encoded by hand."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_write_chunk(offset: int, data: memoryview) -> bytes:
    """``pb.WriteChunk(offset=offset, data=data)`` encoded, with one copy of ``data`` (building
    the message from ``data.tobytes()`` and serializing it copies the bytes three times)."""
    return b"".join((b"\x08", varint(offset), b"\x12", varint(len(data)), data))


def encode_read_chunk(data: memoryview) -> bytes:
    """``pb.ReadChunk(data=data)`` encoded, with one copy of ``data``."""
    return b"".join((b"\x0a", varint(len(data)), data))


def _read_chunk_data(msg: bytes) -> memoryview:
    """The data of an encoded ``ReadChunk`` without copying it (protobuf's parser would):
    the message is field 1's tag, the length as a varint, then the bytes."""
    view = memoryview(msg)
    if msg[:1] == b"\x0a":
        pos, n, shift = 1, 0, 0
        while pos < len(msg):
            byte = msg[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if pos + n == len(msg):
                    return view[pos:]
                break
    return memoryview(pb.ReadChunk.FromString(msg).data)  # any other encoding


def receive_chunks(chunks: Any, out: Any) -> int:
    """Copy the data of encoded ``ReadChunk`` messages back to back into ``out``; the count.

    Through a memoryview: ``bytearray[a:b] = bytes`` first copies the bytes into a new
    bytearray, a second copy (and fresh pages) for every chunk."""
    view = memoryview(out)
    pos = 0
    try:
        for chunk in chunks:
            data = _read_chunk_data(chunk)
            n = len(data)
            if pos + n > len(view):
                raise ConnectionError("the sender sent more bytes than the object has")
            view[pos : pos + n] = data
            pos += n
    finally:
        view.release()
    return pos


OBJECT_METADATA = "ember-object"  # WriteObject/ReadObject: the object id (hex) the range belongs to


def _metadata(token: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token else []


def channel(address: str, tls_ca: str | None = None) -> grpc.Channel:
    """A channel to an agent: TLS when ``tls_ca`` (a PEM file of the CA to trust) is given."""
    if tls_ca:
        with open(tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel(address, creds, options=_OPTIONS)
    return grpc.insecure_channel(address, options=_OPTIONS)


def ping(address: str, token: str | None, timeout: float = 10.0, tls_ca: str | None = None) -> str:
    """The node id of the agent at ``address``; raises ConnectionError with the reason."""
    chan = channel(address, tls_ca)
    try:
        stub = pb_grpc.NodeStub(chan)
        try:
            reply = stub.Ping(pb.PingRequest(protocol=M.PROTOCOL_VERSION), metadata=_metadata(token),
                              timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise ConnectionError(
                    f"the cluster at {address} refused the token: pass the right one with "
                    f"ember.init({address!r}, token=...) or the EMBER_TOKEN environment variable"
                ) from None
            if code == grpc.StatusCode.FAILED_PRECONDITION:  # the agent refused our protocol version
                raise ConnectionError(f"the cluster at {address} refused this process: {exc.details()}") from None
            raise ConnectionError(f"cannot reach an ember cluster at {address}: {exc.details()}") from None
        if reply.protocol and reply.protocol != M.PROTOCOL_VERSION:  # (0: an agent from before versions)
            from ember import __version__

            raise ConnectionError(
                f"the cluster at {address} speaks ember protocol {reply.protocol} (ember {reply.version}), "
                f"this process {M.PROTOCOL_VERSION} (ember {__version__}): install the same ember version "
                f"as the cluster ({reply.version}) here")
        return reply.node_id
    finally:
        chan.close()


class GrpcConnection:
    """Same interface as ``_wire.ClientConnection``, over a bidirectional gRPC stream."""

    def __init__(self, address: str, token: str | None, tls_ca: str | None = None) -> None:
        self.closed = False
        self._channel = channel(address, tls_ca)
        self._out: queue.SimpleQueue = queue.SimpleQueue()
        self._in: queue.SimpleQueue = queue.SimpleQueue()
        self._reader = FrameReader()
        self._send_lock = threading.Lock()
        self._stub = pb_grpc.NodeStub(self._channel)
        self._meta = _metadata(token)
        # bulk calls carry hand-encoded / undecoded chunks (see write_object, read_object)
        self._write_raw = self._channel.stream_unary(
            "/ember.v1.Node/WriteObject", response_deserializer=pb.WriteReply.FromString)
        # ReadObject's chunks undecoded: read_object takes the bytes out of each one itself
        self._read_raw = self._channel.unary_stream(
            "/ember.v1.Node/ReadObject", request_serializer=pb.ReadRequest.SerializeToString)
        keep_chunks_in_heap()
        self._call = self._stub.Session(self._requests(), metadata=self._meta)
        self._thread = threading.Thread(target=self._receive, name="ember-remote-recv", daemon=True)
        self._thread.start()

    def _requests(self) -> Any:
        """The outgoing stream: everything queued since the last message goes in one, since
        each gRPC message costs far more than its bytes (batching is what makes a remote
        driver's task throughput)."""
        out = self._out
        while True:
            data = out.get()
            if data is None:
                return
            closing = False
            if len(data) < CHUNK:
                parts = [data]
                size = len(data)
                while size < CHUNK:
                    try:
                        more = out.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        closing = True
                        break
                    parts.append(more)
                    size += len(more)
                if len(parts) > 1:
                    data = b"".join(parts)
            for i in range(0, len(data), CHUNK):
                yield pb.Frames(data=data[i : i + CHUNK])
            if closing:
                return

    def _receive(self) -> None:
        try:
            for frames in self._call:
                msgs = self._reader.feed(frames.data)
                if msgs:
                    self._in.put(msgs)
        except grpc.RpcError:
            pass
        finally:
            self._in.put(None)

    def write_object(self, oid: bytes, offset: int, parts: list[Any]) -> None:
        """Stream an object's bytes (a list of buffers, written back to back) into the space
        the store allocated for ``oid``."""

        def chunks() -> Any:
            pos = offset
            for part in parts:
                view = memoryview(part).cast("B")
                for i in range(0, len(view), BULK_CHUNK):
                    piece = view[i : i + BULK_CHUNK]
                    yield encode_write_chunk(pos, piece)
                    pos += len(piece)

        self._write_raw(chunks(), metadata=[*self._meta, (OBJECT_METADATA, oid.hex())])

    def read_object(self, oid: bytes, offset: int, size: int,
                    into: memoryview | None = None) -> bytearray | mmap.mmap | memoryview:
        """Sealed object ``oid``'s bytes, streamed out of the store (into ``into`` when given)."""
        out = _receive_buffer(size) if into is None else into
        got = receive_chunks(self._read_raw(pb.ReadRequest(offset=offset, size=size),
                                            metadata=[*self._meta, (OBJECT_METADATA, oid.hex())]), out)
        if got != size:
            raise ConnectionError(f"the head sent {got} of the object's {size} bytes")
        return out

    def send(self, msg: tuple) -> None:
        if self.closed:
            raise ConnectionClosed("the connection to the cluster is closed")
        self._out.put(encode(msg))

    def send_many(self, msgs: list[tuple]) -> None:
        if self.closed:
            raise ConnectionClosed("the connection to the cluster is closed")
        self._out.put(b"".join(encode(m) for m in msgs))

    def recv(self, timeout: float | None) -> list[Any]:
        if self.closed:
            raise ConnectionClosed("the connection to the cluster is closed")
        try:
            first = self._in.get(timeout=timeout) if timeout != 0 else self._in.get_nowait()
        except queue.Empty:
            return []
        out: list[Any] = []
        item = first
        while True:
            if item is None:
                self.closed = True
                if out:
                    return out
                raise ConnectionClosed("the cluster closed the connection")
            out += item
            try:
                item = self._in.get_nowait()
            except queue.Empty:
                return out

    def recv_nowait(self) -> list[Any]:
        return self.recv(0)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._out.put(None)
        try:
            self._call.cancel()
        except Exception:  # noqa: BLE001
            pass
        self._channel.close()
