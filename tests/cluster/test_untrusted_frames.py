"""What a token holder sends over gRPC cannot run code in the agent or touch others' objects
(issue 11, part 4). Every frame of the Session stream must be plain data, checked before the
agent reads it: a frame naming a class or function closes that stream with INVALID_ARGUMENT,
runs nothing, and the cluster goes on. WriteObject/ReadObject name the object their range
belongs to, and the agent checks it. Real head agent on loopback, raw gRPC client."""

from __future__ import annotations

import os
import pickle
import struct

import ember
import grpc
import pytest
from ember._proto import node_pb2 as pb
from ember._proto import node_pb2_grpc as pb_grpc

from .helpers import query, start_head, wait_until


class _RunsCode:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _frame(obj: object) -> bytes:
    body = pickle.dumps(obj, 5)
    return struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("payload", ["code", "class", "not-a-tuple", "garbage"])
def test_a_frame_that_is_not_plain_data_is_refused(procs, tmp_short, connect, payload):
    head = start_head(procs, tmp_short, num_cpus=1)
    marker = str(tmp_short / "pwned")
    data = {
        "code": _frame((1, "driver", 1, None, _RunsCode(marker))),
        "class": _frame((1, "driver", 1, None, {"x": ValueError})),
        "not-a-tuple": _frame(12345),
        "garbage": struct.pack("<I", 5) + b"\x80\x05zzz",
    }[payload]
    chan = grpc.insecure_channel(head.address)
    try:
        stub = pb_grpc.NodeStub(chan)
        call = stub.Session(iter([pb.Frames(data=data)]), metadata=[("authorization", f"Bearer {head.token}")],
                            timeout=30)
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
        assert "refused" in info.value.details()
    finally:
        chan.close()
    assert not os.path.exists(marker), "a pickle from the network ran code in the agent"
    assert head.proc.poll() is None, "the head agent died"
    connect(head)

    @ember.remote
    def ok():
        return "ok"

    assert ember.get(ok.remote(), timeout=60) == "ok"


def _write(head, oid_hex: str | None, offset: int, data: bytes) -> grpc.RpcError | None:
    meta = [("authorization", f"Bearer {head.token}")]
    if oid_hex is not None:
        meta.append(("ember-object", oid_hex))
    chan = grpc.insecure_channel(head.address)
    try:
        stub = pb_grpc.NodeStub(chan)
        stub.WriteObject(iter([pb.WriteChunk(offset=offset, data=data)]), metadata=meta, timeout=30)
        return None
    except grpc.RpcError as exc:
        return exc
    finally:
        chan.close()


def _read(head, oid_hex: str, offset: int, size: int) -> grpc.RpcError | None:
    chan = grpc.insecure_channel(head.address)
    try:
        stub = pb_grpc.NodeStub(chan)
        list(stub.ReadObject(pb.ReadRequest(offset=offset, size=size), timeout=30,
                             metadata=[("authorization", f"Bearer {head.token}"), ("ember-object", oid_hex)]))
        return None
    except grpc.RpcError as exc:
        return exc
    finally:
        chan.close()


def test_store_ranges_are_checked_against_the_object_named(procs, tmp_short, connect):
    """WriteObject only into space allocated for an object not yet sealed; ReadObject only
    inside a sealed object: a token holder cannot overwrite another driver's sealed object,
    nor read free space."""
    import numpy as np

    head = start_head(procs, tmp_short, num_cpus=1)
    connect(head)
    value = np.arange(1 << 18, dtype=np.int64)  # 2 MiB: in the shared-memory store
    ref = ember.put(value)
    oid = ref.hex()

    def sealed() -> bool:
        (objects,) = query(head, ("list", "objects"))
        return any(o["object_id"] == oid and o["state"] == "READY" for o in objects)

    assert wait_until(sealed, 30, 0.05), "the put never reached the head"
    for offset in (0, 4096, 1 << 20):
        err = _write(head, oid, offset, b"\xff" * 4096)
        assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    err = _write(head, None, 0, b"\xff")
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    err = _read(head, "ab" * 20, 0, 4096)
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    err = _read(head, oid, 0, 256 << 20)
    assert err is not None and err.code() == grpc.StatusCode.OUT_OF_RANGE, err
    assert np.array_equal(ember.get(ref, timeout=60), value), "a sealed object was changed"
