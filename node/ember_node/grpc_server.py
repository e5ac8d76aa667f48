"""The agent's gRPC endpoint: the one port a remote driver (or a tool) needs.

Every call must carry the cluster token (``authorization: Bearer <token>`` metadata); an
interceptor compares it in constant time and refuses the call with UNAUTHENTICATED before
any handler runs, so nothing from an unauthenticated peer is ever decoded. A ``Session``
stream is a byte pipe to the agent's local socket: the remote driver speaks the same framed
protocol as a local one, and the agent sees it as one more client.
"""

from __future__ import annotations

import hmac
import logging
import os
import pickle
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from ember import _messages as M
from ember._proto import node_pb2 as pb
from ember._proto import node_pb2_grpc as pb_grpc
from ember._remote import OBJECT_METADATA, encode_read_chunk, keep_chunks_in_heap
from ember._wire import MAX_FRAME, encode, loads_data_only

from ember_node.fd_limit import open_file_limit
from ember_node.grpc_jobs import JobServicer
from ember_node.grpc_logs import LogServicer

log = logging.getLogger("ember.grpc")

CHUNK = 4 << 20
BULK_CHUNK = 1 << 20  # measured here: 1 MiB messages stream faster than 4 or 16 MiB
MAX_MESSAGE = 64 << 20
MAX_SESSIONS = 1024
# A TCP connection that has not finished its HTTP/2 (and TLS) handshake within this long is
# dropped; at most max_connections() are open at once (more are closed as they come), so a
# flood of connections that never make a call cannot use up the agent's file descriptors.
HANDSHAKE_TIMEOUT_MS = int(os.environ.get("EMBER_GRPC_HANDSHAKE_TIMEOUT_MS", "10000"))


def max_connections() -> int:
    """How many gRPC connections the agent accepts at once: ``EMBER_MAX_GRPC_CONNECTIONS``,
    else half the open-file limit (the other half stays for workers, spill files and the
    local socket), at most 4096."""
    configured = os.environ.get("EMBER_MAX_GRPC_CONNECTIONS")
    if configured:
        return int(configured)
    return max(16, min(4096, open_file_limit() // 2))


def _server_options() -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
            ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
            ("grpc.max_allowed_incoming_connections", max_connections())]


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuse every call whose token is missing or wrong, before its handler runs."""

    def __init__(self, token: str, on_failure: Callable[[str], None]) -> None:
        self._expected = f"Bearer {token}".encode()
        self._on_failure = on_failure

        def deny(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong cluster token: pass token=... to ember.init() or set EMBER_TOKEN")

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(lambda it, ctx: deny(None, ctx))

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        given = b""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
        if hmac.compare_digest(given, self._expected):
            return continuation(details)
        self._on_failure(details.method)
        log.warning("refused %s: %s cluster token", details.method, "wrong" if given else "missing")
        return self._deny_stream if details.method.endswith("/Session") else self._deny_unary


class NodeServicer(JobServicer, LogServicer, pb_grpc.NodeServicer):
    """Ping, ClusterInfo, Session, the object calls, the log calls and (with ``jobs``) the job calls,
    backed by the local agent."""

    def __init__(self, agent: Any, jobs: Any = None) -> None:
        self.agent = agent
        self.jobs = jobs

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingReply:
        from ember import __version__

        if request.protocol and request.protocol != M.PROTOCOL_VERSION:  # (0: a peer from before versions)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, M.version_mismatch(
                "driver or node", request.protocol, None, M.PROTOCOL_VERSION, __version__))
        return pb.PingReply(node_id=self.agent.node_id, version=__version__, protocol=M.PROTOCOL_VERSION)

    def ClusterInfo(self, request: pb.ClusterInfoRequest, context: grpc.ServicerContext) -> pb.ClusterInfoReply:
        agent = self.agent
        idle = agent.idle_seconds()
        nodes = [pb.NodeInfo(node_id=node.node_id, address=node.address, alive=node.alive,
                             is_head=node.is_head, resources=dict(node.totals),
                             available={k: max(v, 0.0) for k, v in dict(node.available).items()},
                             idle_seconds=idle.get(node.node_id, 0.0))
                 for node in list(agent.nodes.values())]
        unmet, waiting = agent.pending_demand()
        return pb.ClusterInfoReply(
            nodes=nodes, demand=[pb.PendingDemand(resources=dict(d.resources), count=d.count) for d in unmet],
            waiting=[pb.PendingDemand(resources=dict(d.resources), count=d.count) for d in waiting])

    def Session(self, request_iterator: Iterator[pb.Frames], context: grpc.ServicerContext) -> Iterator[pb.Frames]:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"the head agent cannot open a session now: {exc}")
        try:
            sock.settimeout(10.0)
            sock.connect(self.agent.socket_path)
            sock.settimeout(None)
        except OSError as exc:
            sock.close()
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the head agent does not take sessions now: {exc}")

        refused: list[str] = []

        def upstream() -> None:
            checker = DataOnlyFrames()
            try:
                for frames in request_iterator:
                    sock.sendall(checker.feed(frames.data))
            except pickle.UnpicklingError as exc:
                log.warning("closing a Session from %s: %s", context.peer(), exc)
                refused.append(str(exc))
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # ends the downstream loop below
                except OSError:
                    pass
            except Exception:  # noqa: BLE001 - the stream ended or was cancelled
                pass
            finally:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        threading.Thread(target=upstream, name="ember-session-up", daemon=True).start()
        context.add_callback(lambda: _close_quietly(sock))
        try:
            while True:
                try:
                    data = sock.recv(CHUNK)
                except OSError:
                    break
                if not data:
                    break
                yield pb.Frames(data=data)
        finally:
            _close_quietly(sock)
        if refused:  # the peer's last message says why, as the agent's own GOODBYE would
            yield pb.Frames(data=encode((M.GOODBYE, refused[0])))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, refused[0])


    def _object_range(self, context: grpc.ServicerContext, sealed: bool) -> tuple[int, int]:
        """The store range of the object the call names (metadata ``ember-object``): a sealed
        object to read, or an allocation still being written to write; any other range is
        refused, so no token holder reads free space or overwrites anyone's sealed object."""
        oid_hex = dict(context.invocation_metadata()).get(OBJECT_METADATA, "")
        try:
            oid = bytes.fromhex(oid_hex)
        except ValueError:
            oid = b""
        if not oid:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the call names no object ({OBJECT_METADATA} metadata)")
        if sealed:
            obj = self.agent.table.objs.get(oid)
            if obj is not None and obj.state and obj.kind == M.STORE and isinstance(obj.payload, tuple):
                return obj.payload
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"object {oid_hex} is not a sealed object in this store")
        for client in list(self.agent.clients.values()):
            span = client.refs.creating.get(oid)
            if span is not None:
                return span
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"object {oid_hex} is not being written: only space allocated for it, before "
                      f"it is sealed, may be written (sealed objects are read-only)")
        raise AssertionError("unreachable")

    @staticmethod
    def _inside(span: tuple[int, int], offset: int, size: int, context: grpc.ServicerContext) -> None:
        if offset < span[0] or size < 0 or offset + size > span[0] + span[1]:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "the range lies outside the object the call names")

    def ReadCopy(self, request: pb.CopyRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "the head keeps no copies: ReadCopy is served on worker nodes' peer ports; "
                      "read the head's objects with ReadObject")
        yield b""  # a generator, like the other streaming methods (abort raises first)

    def WriteObject(self, request_iterator: Iterator[pb.WriteChunk], context: grpc.ServicerContext) -> pb.WriteReply:
        written = 0
        span = self._object_range(context, sealed=False)
        view = self.agent.arena.view()
        try:
            for chunk in request_iterator:
                n = len(chunk.data)
                self._inside(span, chunk.offset, n, context)
                view[chunk.offset : chunk.offset + n] = chunk.data
                written += n
        finally:
            view.release()
        return pb.WriteReply(written=written)

    def ReadObject(self, request: pb.ReadRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Each chunk is an encoded ``ReadChunk``, made with one copy straight out of the store
        (``pb.ReadChunk(data=bytes(...))`` then serializing it copies the bytes three times);
        ``serve`` registers this method without a response serializer."""
        self._inside(self._object_range(context, sealed=True), request.offset, request.size, context)
        view = self.agent.arena.view()
        try:
            yield from _read_chunks(view, request.offset, request.size)
        finally:
            view.release()


def _read_chunks(view: memoryview, start: int, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``view`` from ``start``, as encoded ``ReadChunk`` messages of 1 MiB."""
    end = start + size
    for pos in range(start, end, BULK_CHUNK):
        yield encode_read_chunk(view[pos : min(pos + BULK_CHUNK, end)])


_KINDS = {(False, False): grpc.unary_unary_rpc_method_handler,
          (False, True): grpc.unary_stream_rpc_method_handler,
          (True, False): grpc.stream_unary_rpc_method_handler,
          (True, True): grpc.stream_stream_rpc_method_handler}
_RAW_RESPONSES = {"ReadObject", "ReadCopy"}  # methods that yield already-encoded messages


class PeerServicer(pb_grpc.NodeServicer):
    """A worker node's endpoint for other nodes' stores: Ping and ReadCopy (nothing else)."""

    def __init__(self, node_id: str, store: Any) -> None:
        self.node_id = node_id
        self.store = store

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingReply:
        from ember import __version__

        return pb.PingReply(node_id=self.node_id, version=__version__, protocol=M.PROTOCOL_VERSION)

    def ReadCopy(self, request: pb.CopyRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        entry = self.store.open_copy(request.object_id)
        if entry is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "this node holds no copy of that object")
        view = self.store.arena.view()
        try:
            yield from _read_chunks(view, entry.offset, entry.size)
        finally:
            view.release()
            self.store.release(request.object_id, entry)


class _Undecodable:
    """A request whose bytes did not parse as its message type (see ``_decoder``)."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _decoder(request_cls: Any) -> Callable[[bytes], Any]:
    """A request deserializer that never raises: bytes that are no ``request_cls`` become an
    ``_Undecodable``, which ``_checked`` refuses with INVALID_ARGUMENT. (gRPC's own handling
    of a raising deserializer leaves call state behind that makes ``Server.stop`` hang.)"""
    def decode(data: bytes) -> Any:
        try:
            return request_cls.FromString(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure
            return _Undecodable(f"the request is not a valid {request_cls.DESCRIPTOR.name} message: {exc}")
    return decode


def _checked(handler: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
    """``handler``, refusing undecodable requests (each one of a request stream)."""
    if streaming:
        def run_stream(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
            def requests() -> Iterator[Any]:
                for request in request_iterator:
                    if isinstance(request, _Undecodable):
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.problem)
                    yield request
            return handler(requests(), context)
        return run_stream

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.problem)
        return handler(request, context)
    return run


def _add_servicer(servicer: pb_grpc.NodeServicer, server: grpc.Server) -> None:
    """What ``add_NodeServicer_to_server`` does, built from the service's descriptor, except
    that the methods in ``_RAW_RESPONSES`` send the bytes they yield as they are, and bytes
    that are no request of the method's type are refused with INVALID_ARGUMENT."""
    service = pb.DESCRIPTOR.services_by_name["Node"]
    handlers = {}
    for method in service.methods:
        request_cls = getattr(pb, method.input_type.name)
        response_cls = getattr(pb, method.output_type.name)
        make = _KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            _checked(getattr(servicer, method.name), method.client_streaming),
            request_deserializer=_decoder(request_cls),
            response_serializer=None if method.name in _RAW_RESPONSES else response_cls.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


class DataOnlyFrames:
    """Frames from a remote peer, let through only once each is known to be plain data
    (``ember._wire.loads_data_only``): nothing a remote peer sends makes the agent resolve
    a class or function, so no pickle from the network runs code in the agent."""

    __slots__ = ("_buf", "_count")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._count = 0

    def feed(self, data: bytes) -> bytes:
        """The complete frames of what has arrived so far (the rest waits for more bytes);
        raises ``pickle.UnpicklingError`` naming the first frame that is not plain data."""
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            size = int.from_bytes(buf[pos:pos + 4], "little")
            if size > MAX_FRAME:
                raise pickle.UnpicklingError(
                    f"message {self._count + 1} of the stream was refused: a frame of {size} bytes "
                    f"is larger than the largest allowed ({MAX_FRAME}); large values go through the store")
            end = pos + 4 + size
            if end > n:
                break
            self._count += 1
            try:
                msg = loads_data_only(memoryview(buf)[pos + 4:end])
            except Exception as exc:  # noqa: BLE001 - any decoding failure refuses the frame
                raise pickle.UnpicklingError(f"message {self._count} of the stream was refused: {exc}") from None
            if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], int):
                raise pickle.UnpicklingError(
                    f"message {self._count} of the stream was refused: not a tuple starting with a message type")
            pos = end
        out = bytes(buf[:pos])
        del buf[:pos]
        return out


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def serve_peer(node_id: str, store: Any, host: str, port: int, token: str) -> tuple[grpc.Server, int]:
    """A worker node's port for the other nodes' stores (token-checked like the head's)."""
    keep_chunks_in_heap()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="ember-peer"),
        interceptors=[TokenInterceptor(token, lambda method: None)],
        options=_server_options(),
    )
    _add_servicer(PeerServicer(node_id, store), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (in use?); pick another --peer-port")
    server.start()
    return server, bound


def serve(agent: Any, host: str, port: int, token: str, on_auth_failure: Callable[[str], None],
          tls: tuple[bytes, bytes] | None = None, jobs: Any = None) -> tuple[grpc.Server, int]:
    """Start the gRPC server (TLS with ``tls=(cert_pem, key_pem)``; the job calls with
    ``jobs``, an ``ember_node.jobs.JobManager``); returns it and the bound port."""
    keep_chunks_in_heap()
    # the metrics interceptor goes first, so calls the token check refuses are counted too
    counting = [agent.metrics.grpc_interceptor()] if getattr(agent, "metrics", None) is not None else []
    server = grpc.server(
        # every Session (a remote driver, or each worker of a worker node) holds one thread for
        # its whole life, so the pool bounds how many can be connected at once
        futures.ThreadPoolExecutor(max_workers=MAX_SESSIONS, thread_name_prefix="ember-grpc"),
        interceptors=[*counting, TokenInterceptor(token, on_auth_failure)],
        options=_server_options(),
    )
    _add_servicer(NodeServicer(agent, jobs), server)
    if tls is not None:
        cert, key = tls
        bound = server.add_secure_port(f"{host}:{port}", grpc.ssl_server_credentials([(key, cert)]))
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (in use?); pick another --port")
    server.start()
    return server, bound
