"""The head's gRPC port refuses a wrong or missing token before anything runs (issue 4, test 5).

The head is started directly, its stderr captured in ``head.log``. A refused driver also tries
to bypass ``init``'s ping and push a task straight into a ``Session`` stream with the wrong
token; the task would create a marker file, and the file must never appear. A positive
control (the right token) shows the same task does create its file.
"""

from __future__ import annotations

import time

import grpc
import pytest
from ember._proto import node_pb2 as pb
from ember._proto import node_pb2_grpc as pb_grpc

from .helpers import last_json, run_driver, start_head, wait_cluster

REFUSED_DRIVER = r"""
import json
import os

import ember
from ember import _context

address = os.environ["DRIVER_ADDRESS"]
marker = os.environ["MARKER"]
token = os.environ.get("DRIVER_TOKEN")  # None: no token at all (EMBER_TOKEN is unset too)
out = {}
try:
    ember.init(address, token=token)
    out["init"] = "connected"
except Exception as exc:  # noqa: BLE001
    out["init"] = type(exc).__name__
    out["init_mro"] = [c.__name__ for c in type(exc).__mro__]
    out["init_message"] = str(exc)
assert not ember.is_initialized()


@ember.remote
def make_marker(path):
    open(path, "w").close()
    return "ran"


# bypass init's ping: open the Session stream directly and submit the task through it
from ember._remote import GrpcConnection
from ember._runtime import CoreRuntime
from ember import _messages as M

rt = CoreRuntime(GrpcConnection(address, token), None, "driver", remote=True)
try:
    rt.send((M.HELLO, "driver", os.getpid(), None, None))
    _context.set_runtime(rt)
    ref = make_marker.remote(marker)
    out["bypass"] = ember.get(ref, timeout=5)
except Exception as exc:  # noqa: BLE001
    out["bypass"] = type(exc).__name__
    out["bypass_message"] = str(exc)[:300]
finally:
    _context.set_runtime(None)
    try:
        rt.close()
    except Exception:  # noqa: BLE001
        pass
print(json.dumps(out))
"""

GOOD_DRIVER = r"""
import json
import os

import ember

ember.init(os.environ["DRIVER_ADDRESS"], token=os.environ["DRIVER_TOKEN"])


@ember.remote
def make_marker(path):
    open(path, "w").close()
    return "ran"


print(json.dumps({"ran": ember.get(make_marker.remote(os.environ["MARKER"]), timeout=30)}))
ember.shutdown()
"""


@pytest.fixture
def head(procs, tmp_short):
    head = start_head(procs, tmp_short, num_cpus=1)
    wait_cluster(head, alive_nodes=1, idle_workers=1)
    return head


def _refused_lines(head) -> list[str]:
    return [ln for ln in head.log.read_text().splitlines() if "refused" in ln]


@pytest.mark.parametrize("token", ["wrong-token", None], ids=["wrong_token", "no_token"])
def test_driver_without_the_token_is_refused_and_nothing_runs(head, procs, tmp_short, token):
    marker = tmp_short / "marker"
    before = len(_refused_lines(head))
    env = {"DRIVER_ADDRESS": head.address, "MARKER": str(marker)}
    if token is not None:
        env["DRIVER_TOKEN"] = token
    out = last_json(run_driver(procs, REFUSED_DRIVER, env=env, timeout=60))
    if token is None:
        # without any token the driver refuses to dial at all (it cannot succeed)
        assert out["init"] in ("ConnectionError", "ValueError"), out
    else:
        assert "ConnectionError" in out["init_mro"], out
        assert "refused" in out["init_message"], out
    assert "token" in out["init_message"], out
    assert out["bypass"] != "ran", out
    time.sleep(1.0)  # give a (wrongly) accepted task time to run
    assert not marker.exists(), "a task from a driver without the token ran"
    # the head logged the refusals (the ping for a wrong token; the Session stream in both cases)
    refused = _refused_lines(head)[before:]
    assert refused, f"no 'refused' line in the head's log:\n{head.log.read_text()[-2000:]}"
    assert any("Session" in ln for ln in refused), refused

    # positive control: the same task with the right token does create its file
    good = tmp_short / "good-marker"
    ok = last_json(run_driver(procs, GOOD_DRIVER, env={
        "DRIVER_ADDRESS": head.address, "DRIVER_TOKEN": head.token, "MARKER": str(good)}, timeout=60))
    assert ok == {"ran": "ran"} and good.exists()
    assert not marker.exists()


def test_raw_grpc_ping_with_wrong_or_no_token_is_unauthenticated(head):
    channel = grpc.insecure_channel(head.address)
    try:
        stub = pb_grpc.NodeStub(channel)
        for metadata in ([("authorization", "Bearer not-the-token")], [("authorization", head.token)], None):
            with pytest.raises(grpc.RpcError) as info:
                stub.Ping(pb.PingRequest(), metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (metadata, info.value)
            assert "token" in info.value.details()
        reply = stub.Ping(pb.PingRequest(), metadata=[("authorization", f"Bearer {head.token}")], timeout=10)
        assert reply.node_id == head.node_id
    finally:
        channel.close()
    assert any("Ping" in ln for ln in _refused_lines(head)), head.log.read_text()[-2000:]
