"""Issue 12: the protocol version in the handshake.

A real head agent refuses a peer that speaks another ember protocol, on its Unix socket and
through the gRPC ``Session`` stream (the HELLO's version) and on ``Ping`` (the request's
version), with a message naming both versions and the fix, instead of failing to decode
what the peer sends later; a peer speaking the same version is served.
"""

from __future__ import annotations

import os
import shutil
import time

import grpc
import pytest
from ember import __version__
from ember import _messages as M
from ember._proto import node_pb2 as pb
from ember._proto import node_pb2_grpc as pb_grpc
from ember._remote import GrpcConnection, channel, ping
from ember._wire import ClientConnection, ConnectionClosed

from .helpers import short_tmpdir, start_head

OTHER = M.PROTOCOL_VERSION + 41


@pytest.fixture(scope="module")
def head(module_procs):
    root = short_tmpdir()
    head = start_head(module_procs, root, num_cpus=0, store_bytes=32 << 20)
    yield head
    module_procs.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _goodbye(conn, timeout: float = 30.0) -> str | None:
    """The reason of the GOODBYE the agent sends before closing ``conn`` (None: closed without one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msgs = conn.recv(0.5)
        except ConnectionClosed:
            return None
        for m in msgs:
            if m[0] == M.GOODBYE:
                return m[1]
    raise AssertionError("the agent neither refused nor closed the connection")


def _assert_names_both_versions(reason: str, kind: str) -> None:
    assert f"the {kind} speaks ember protocol {OTHER} (ember 9.9.9), the cluster {M.PROTOCOL_VERSION}" in reason
    assert f"install the same ember version as the cluster ({__version__})" in reason


def _other_hello(kind: str, info: dict | None = None) -> tuple:
    return (M.HELLO, kind, os.getpid(), None, {**(info or {}), "protocol": OTHER, "ember": "9.9.9"})


def test_unix_socket_hello_of_another_protocol_is_refused_naming_both(head):
    conn = ClientConnection.connect(head.info["socket"])
    try:
        conn.send(_other_hello("driver", {"job": "00000001"}))
        reason = _goodbye(conn)
    finally:
        conn.close()
    assert reason is not None
    _assert_names_both_versions(reason, "driver")


def test_same_protocol_is_served(head):
    conn = ClientConnection.connect(head.info["socket"])
    try:
        conn.send((M.HELLO, "tool", os.getpid(), None, M.hello_info()))
        conn.send((M.REQUEST, 1, "stats", None))
        deadline = time.monotonic() + 30
        replies: list = []
        while not replies and time.monotonic() < deadline:
            replies = [m for m in conn.recv(0.5) if m[0] == M.REPLY]
        assert replies and replies[0][1] == 1
    finally:
        conn.close()


def test_grpc_session_hello_of_another_protocol_is_refused_naming_both(head):
    conn = GrpcConnection(head.address, head.token)
    try:
        conn.send(_other_hello("node", {"node_id": "n" * 32, "resources": {"CPU": 1.0}}))
        reason = _goodbye(conn)
    finally:
        conn.close()
    assert reason is not None
    _assert_names_both_versions(reason, "node")
    assert "joined" not in head.log.read_text().split(reason)[-1]  # it never became a node


def test_grpc_ping_of_another_protocol_is_refused_naming_both(head):
    chan = channel(head.address)
    try:
        stub = pb_grpc.NodeStub(chan)
        with pytest.raises(grpc.RpcError) as info:
            stub.Ping(pb.PingRequest(protocol=OTHER), metadata=[("authorization", f"Bearer {head.token}")],
                      timeout=30)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"speaks ember protocol {OTHER}, the cluster {M.PROTOCOL_VERSION}" in info.value.details()
        assert __version__ in info.value.details()
        reply = stub.Ping(pb.PingRequest(protocol=M.PROTOCOL_VERSION),
                          metadata=[("authorization", f"Bearer {head.token}")], timeout=30)
        assert reply.protocol == M.PROTOCOL_VERSION and reply.version == __version__
    finally:
        chan.close()
    assert ping(head.address, head.token) == head.node_id
