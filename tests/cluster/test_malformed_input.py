"""Issue 11, part 1: nothing a peer sends ends the agent's loop.

A real head agent (gRPC port and local socket) gets malformed, truncated, unknown and
out-of-order messages of every kind on its Unix socket and through the ``Session`` stream,
and bytes that are no protobuf on every gRPC method. Each bad peer is disconnected with a
logged reason (and a GOODBYE saying why, when the frame was read), and afterwards the head
still runs tasks for a driver. A handler that raises on a well-formed message fails that
request with a RaySystemError naming the internal error; a crashed agent keeps its logs.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import subprocess
import sys
import time
import uuid

import grpc
import pytest
from ember import _messages as M
from ember._proto import node_pb2 as pb
from ember._serialization import deserialize
from ember._wire import ClientConnection, ConnectionClosed, FrameReader
from ember.exceptions import RaySystemError

from .helpers import (
    _spawn_agent,
    free_port,
    last_json,
    run_driver,
    short_tmpdir,
    start_head,
    wait_until,
    write_token,
)

SERVICE = pb.DESCRIPTOR.services_by_name["Node"].full_name


def frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def pickled(msg: object) -> bytes:
    return frame(pickle.dumps(msg, 5))


HELLO = pickled((M.HELLO, "driver", os.getpid(), None, None))
TID = b"t" * 16

# name -> (bytes sent after an optional HELLO, whether HELLO goes first)
BAD_FRAMES: dict[str, tuple[bytes, bool]] = {
    "not-a-pickle": (frame(b"\x00garbage, not a pickle\xff" * 3), True),
    "pickled-int": (pickled(12345), True),
    "empty-tuple": (pickled(()), True),
    "list-not-tuple": (pickled([M.FETCH, [b"x"]]), True),
    "unknown-type": (pickled((999, "x")), True),
    "bool-type": (pickled((True,)), True),
    "submit-no-spec": (pickled((M.SUBMIT,)), True),
    "submit-short-spec": (pickled((M.SUBMIT, ("x",) * 3)), True),
    "submit-bad-fields": (pickled((M.SUBMIT, ("x",) * 12)), True),
    "submit-negative-cpu": (pickled((M.SUBMIT, (TID, None, "f", b"", [], [b"r" * 20], {"CPU": -1}, 0,
                                                 False, [], None, None))), True),
    "fetch-not-ids": (pickled((M.FETCH, 7)), True),
    "seal-negative": (pickled((M.SEAL, b"o" * 20, -4096, 10, [])), True),
    "done-bad-results": (pickled((M.DONE, TID, [("x",)], False, 0.0, False)), True),
    "request-bad-what": (pickled((M.REQUEST, 1, "not a request", None)), True),
    "node-event-bad": (pickled((M.NODE_EVENT, "Z", "a", "b")), True),
    "before-hello": (pickled((M.FETCH, [b"x" * 20])), False),
    "hello-twice": (HELLO, True),
    "hello-bad-kind": (pickled((M.HELLO, "root", 1, None, None)), False),
    "huge-length-header": (struct.pack("<I", 0xFFFFFFF0) + b"abc", True),
}


@pytest.fixture(scope="module")
def head(module_procs):
    root = short_tmpdir()
    head = start_head(module_procs, root, num_cpus=1, store_bytes=64 << 20)
    yield head
    module_procs.cleanup()
    import shutil

    shutil.rmtree(root, ignore_errors=True)


def agent_works(head) -> None:
    """The head is alive and its loop turns: a local request is answered."""
    assert head.proc.poll() is None, f"the head agent exited ({head.proc.returncode}):\n{head.log.read_text()[-3000:]}"
    conn = ClientConnection.connect(head.info["socket"])
    try:
        conn.send((M.HELLO, "tool", os.getpid(), None, None))
        conn.send((M.REQUEST, 1, "stats", None))
        replies = read_until(conn, lambda m: m[0] == M.REPLY)
        assert replies and replies[-1][1] == 1
    finally:
        conn.close()


def read_until(conn: ClientConnection, done, timeout: float = 30.0) -> list:
    """Messages read until one satisfies ``done`` (or the connection closes, or time is up)."""
    got: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msgs = conn.recv(0.5)
        except ConnectionClosed:
            return got
        got += msgs
        if any(done(m) for m in msgs):
            return got
    return got


def closed_with_goodbye(conn: ClientConnection) -> list:
    """Read until the agent closes the connection; what it sent before."""
    got = read_until(conn, lambda m: False, timeout=30)
    assert conn.closed, "the agent did not close the connection of a peer that sent a bad frame"
    return got


@pytest.mark.parametrize("kind", sorted(BAD_FRAMES))
def test_bad_frame_on_the_unix_socket_closes_only_that_peer(head, kind):
    data, hello_first = BAD_FRAMES[kind]
    conn = ClientConnection.connect(head.info["socket"])
    try:
        conn.sock.sendall((HELLO if hello_first else b"") + data)
        got = closed_with_goodbye(conn)
    finally:
        conn.close()
    goodbyes = [m for m in got if m[0] == M.GOODBYE]
    assert goodbyes and isinstance(goodbyes[0][1], str) and goodbyes[0][1], got
    assert wait_until(lambda: goodbyes[0][1] in head.log.read_text(), 30), "the reason was not logged"
    agent_works(head)


def test_truncated_frame_and_silent_peers_leave_the_agent_up(head):
    conn = ClientConnection.connect(head.info["socket"])
    conn.sock.sendall(HELLO + pickled((M.FETCH, [b"x" * 20]))[:-3])  # cut in the middle of a frame
    conn.close()
    assert wait_until(lambda: "in the middle of a frame" in head.log.read_text(), 30)
    # connections that never speak are fine too (until HELLO_TIMEOUT_S closes them)
    idle = [socket.socket(socket.AF_UNIX) for _ in range(20)]
    try:
        for s in idle:
            s.connect(head.info["socket"])
        agent_works(head)
    finally:
        for s in idle:
            s.close()
    agent_works(head)


def _session(head, chunks: list[bytes]) -> list[bytes]:
    """Run one Session stream sending ``chunks``; the bytes the agent sent back."""
    chan = grpc.insecure_channel(head.address)
    try:
        call = chan.stream_stream(f"/{SERVICE}/Session", request_serializer=pb.Frames.SerializeToString,
                                  response_deserializer=pb.Frames.FromString)
        stop = {"done": False}

        def requests():
            for c in chunks:
                yield pb.Frames(data=c)
            while not stop["done"]:  # keep the upstream open: the agent must end the stream
                time.sleep(0.05)

        out = []
        try:
            for reply in call(requests(), metadata=(("authorization", f"Bearer {head.token}"),), timeout=30):
                out.append(reply.data)
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED, "the agent did not end the stream"
        finally:
            stop["done"] = True
        return out
    finally:
        chan.close()


@pytest.mark.parametrize("kind", ["not-a-pickle", "pickled-int", "empty-tuple", "unknown-type",
                                  "submit-bad-fields", "before-hello", "huge-length-header"])
def test_bad_frame_on_the_session_stream_ends_only_that_session(head, kind):
    data, hello_first = BAD_FRAMES[kind]
    chunks = [HELLO, data] if hello_first else [data]
    received = b"".join(_session(head, chunks))
    msgs = FrameReader().feed(received)
    assert any(m[0] == M.GOODBYE for m in msgs), msgs
    agent_works(head)


def _raw_call(head, method: str, kind: str, payload: bytes):
    chan = grpc.insecure_channel(head.address)
    meta = (("authorization", f"Bearer {head.token}"),)
    try:
        factory = {"uu": chan.unary_unary, "us": chan.unary_stream,
                   "su": chan.stream_unary, "ss": chan.stream_stream}[kind]
        call = factory(f"/{SERVICE}/{method}")  # no serializers: the bytes go as they are
        if kind[0] == "s":
            result = call(iter([payload, payload]), metadata=meta, timeout=30)
        else:
            result = call(payload, metadata=meta, timeout=30)
        if kind[1] == "s":
            result = list(result)
        return grpc.StatusCode.OK, result
    except grpc.RpcError as exc:
        return exc.code(), None
    finally:
        chan.close()


NOT_PROTOBUF = b"\xff\xff\xff\xff\x0f\x0a\xff"  # a truncated varint, an invalid tag


@pytest.mark.parametrize("method,kind", [("Ping", "uu"), ("ClusterInfo", "uu"), ("Session", "ss"),
                                         ("WriteObject", "su"), ("ReadObject", "us"), ("ReadCopy", "us")])
def test_bytes_that_are_no_protobuf_on_every_grpc_method(head, method, kind):
    code, _ = _raw_call(head, method, kind, NOT_PROTOBUF)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    agent_works(head)


@pytest.mark.parametrize("offset,size", [(1 << 40, 10), (0, 1 << 40), ((64 << 20) - 8, 64), (1 << 63, 1 << 63)])
def test_out_of_range_object_reads_and_writes_are_refused(head, offset, size):
    """Ranges outside the store, naming no object (refused as such) or naming one (refused
    as outside it: test_untrusted_frames checks the object rules themselves)."""
    for named in (None, "ab" * 20):
        _out_of_range_refused(head, offset, size, named)
    agent_works(head)


REFUSED = (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


def _out_of_range_refused(head, offset: int, size: int, named: str | None) -> None:
    meta = (("authorization", f"Bearer {head.token}"),) + ((("ember-object", named),) if named else ())
    write = pb.WriteChunk(offset=offset, data=b"x" * min(size, 64)).SerializeToString()
    chan = grpc.insecure_channel(head.address)
    try:
        read = chan.unary_stream(f"/{SERVICE}/ReadObject")
        with pytest.raises(grpc.RpcError) as info:
            list(read(pb.ReadRequest(offset=offset, size=size).SerializeToString(), metadata=meta, timeout=30))
        assert info.value.code() in REFUSED, info.value
        if offset + min(size, 64) > 64 << 20:  # a write of that many bytes there does not fit
            call = chan.stream_unary(f"/{SERVICE}/WriteObject")
            # the second chunk of a write is checked as the first is
            for chunks in ([write], [pb.WriteChunk(offset=0, data=b"y").SerializeToString(), write]):
                with pytest.raises(grpc.RpcError) as info:
                    call(iter(chunks), metadata=meta, timeout=30)
                assert info.value.code() in REFUSED, info.value
    finally:
        chan.close()


# A head agent whose actor manager fails on every actor call (a stand-in for a bug in a
# handler): the same agent code, with one collaborator replaced before it starts.
BROKEN_HEAD = """
import sys
from ember_node import actors, main

def on_call(self, task, client):
    raise LookupError("injected failure in ActorManager.on_call")

actors.ActorManager.on_call = on_call
main.main(sys.argv[1:])
"""


def test_an_internal_error_in_a_handler_fails_that_task_with_ray_system_error(procs, tmp_short):
    """A well-formed SUBMIT (an actor call) whose handling raises inside the agent: the task's
    result is a RaySystemError naming the error, the traceback is logged, the agent goes on."""
    token_file = tmp_short / "token"
    token = write_token(token_file)
    log = tmp_short / "broken-head.log"
    port = free_port()
    proc, info = _spawn_agent(procs, [sys.executable, "-c", BROKEN_HEAD, "--session-dir", str(tmp_short / "s"),
                                      "--num-cpus", "1", "--object-store-memory", str(64 << 20),
                                      "--port", str(port), "--token-file", str(token_file)],
                              log, {}, "head", "the head agent")
    procs.arenas.append(info["arena"])
    conn = ClientConnection.connect(info["socket"])
    rid = uuid.uuid4().bytes + b"\x00\x00\x00\x01"
    try:
        conn.send((M.HELLO, "driver", os.getpid(), None, None))
        conn.send((M.SUBMIT, (uuid.uuid4().bytes, None, "Counter.incr", b"", [], [rid], {}, 0, False, [],
                              ("call", uuid.uuid4().bytes + b"\x00" * 4, "incr"), None)))
        conn.send((M.FETCH, [rid]))
        got = read_until(conn, lambda m: m[0] == M.OBJ and m[1] == rid)
    finally:
        conn.close()
    objs = [m for m in got if m[0] == M.OBJ and m[1] == rid]
    assert objs and objs[0][2] == M.ERROR, got
    err = deserialize(objs[0][3])
    assert isinstance(err, RaySystemError)
    assert "internal error" in str(err) and "LookupError" in str(err) and "SUBMIT" in str(err)
    assert "injected failure" in str(err)
    assert wait_until(lambda: "Traceback" in log.read_text() and "injected failure" in log.read_text(), 30)
    assert proc.poll() is None
    script = f"""
        import json, ember
        ember.init("127.0.0.1:{port}", token={token!r})

        @ember.remote
        def one():
            return 1

        print(json.dumps(ember.get(one.remote())))
        ember.shutdown()
    """
    assert last_json(run_driver(procs, script)) == 1


def test_a_driver_still_works_after_all_that(head, procs):
    script = f"""
        import json, ember
        ember.init({head.address!r}, token={head.token!r})

        @ember.remote
        def add(a, b):
            return a + b

        print(json.dumps(ember.get(add.remote(2, 3))))
        ember.shutdown()
    """
    assert last_json(run_driver(procs, script)) == 5


def test_an_agent_that_crashes_keeps_its_logs(procs, tmp_short):
    """The agent fails after it has started (its gRPC port is taken): its session dir keeps logs/."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", free_port()))
    taken.listen(1)
    try:
        token_file = tmp_short / "token"
        write_token(token_file)
        session_dir = tmp_short / "s"
        os.makedirs(session_dir / "logs", mode=0o700)
        os.chmod(session_dir, 0o700)
        (session_dir / "logs" / "earlier.log").write_text("what happened before\n")
        proc = procs.spawn([sys.executable, "-m", "ember_node", "--session-dir", str(session_dir),
                            "--num-cpus", "1", "--object-store-memory", str(64 << 20),
                            "--port", str(taken.getsockname()[1]), "--token-file", str(token_file)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=procs.env(),
                           start_new_session=True)
        _, err = proc.communicate(timeout=60)
    finally:
        taken.close()
    assert proc.returncode != 0
    assert (session_dir / "logs" / "earlier.log").read_text() == "what happened before\n"
    assert "its logs stay in" in err.decode()
    assert not (session_dir / "agent.sock").exists()


def test_an_embedded_agent_that_dies_on_its_own_keeps_its_logs(procs):
    """The driver's shutdown after its embedded agent died (SIGABRT) leaves the agent's logs."""
    script = """
        import json, os, signal, time, psutil, ember
        ember.init(num_cpus=1)
        from ember import api
        cluster = api._cluster
        os.kill(cluster.proc.pid, signal.SIGABRT)
        cluster.proc.wait(30)
        try:
            ember.shutdown()
        except Exception:
            pass
        logs = os.path.join(cluster.session_dir, "logs")
        print(json.dumps({"logs": sorted(os.listdir(logs)) if os.path.isdir(logs) else None,
                          "dir": cluster.session_dir}))
    """
    result = run_driver(procs, script, timeout=90)
    out = last_json(result)
    try:
        assert out["logs"] and "agent.log" in out["logs"], out
        assert "its logs are in" in result.stderr
    finally:
        import shutil

        shutil.rmtree(out["dir"], ignore_errors=True)
