"""Work outlives nothing it should not (issue 10, parts 3 and 4), on real agents on loopback.

- Infeasible work stays pending, as in Ray: the driver is warned, the head lists the task
  with its reason, and it runs once a node that fits joins.
- A driver's work ends with it: after its driver is interrupted or killed, its running
  tasks are stopped (their workers killed), its queued and pending ones dropped, and the
  CPUs come back for the next driver.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap

import ember
import grpc
import pytest
from ember._proto import node_pb2 as pb
from ember._proto import node_pb2_grpc as pb_grpc

from .helpers import query, start_head, start_worker_node, wait_until


def _demand(head, field: str = "demand") -> dict[tuple, int]:
    """The head's pending demand over its token-checked gRPC port: {shape: count}.

    ``demand``: work no node fits; ``waiting``: work some node fits, waiting for room."""
    with grpc.insecure_channel(head.address) as channel:
        reply = pb_grpc.NodeStub(channel).ClusterInfo(
            pb.ClusterInfoRequest(), metadata=[("authorization", f"Bearer {head.token}")], timeout=10)
    return {tuple(sorted(d.resources.items())): d.count for d in getattr(reply, field)}


def test_work_waiting_for_room_is_reported_apart_from_work_no_node_fits(procs, tmp_short, connect):
    head = start_head(procs, tmp_short, num_cpus=1)
    connect(head)

    @ember.remote
    def hold(seconds: float) -> int:
        import time

        time.sleep(seconds)
        return 1

    refs = [hold.remote(3) for _ in range(3)]  # one runs on the 1-CPU head, two wait for it
    assert wait_until(lambda: _demand(head, "waiting") == {(("CPU", 1.0),): 2}, 30, 0.05), \
        _demand(head, "waiting")
    assert _demand(head) == {}
    assert ember.get(refs, timeout=60) == [1, 1, 1]
    assert _demand(head, "waiting") == {}


def test_infeasible_task_runs_when_a_node_that_fits_joins(procs, tmp_short, connect, caplog):
    caplog.set_level(logging.WARNING, logger="ember")
    head = start_head(procs, tmp_short, num_cpus=1)
    connect(head)

    @ember.remote(resources={"big": 1})
    def where():
        import os

        return os.environ.get("EMBER_TEST_NODE")

    ref = where.remote()

    def warned() -> bool:
        ember.wait([ref], timeout=0.1)  # the driver reads what the head sends while it waits
        return any("cannot be scheduled right now" in r.getMessage() and "big" in r.getMessage()
                   for r in caplog.records)

    assert wait_until(warned, 30, 0.1), "the remote driver was not warned"
    (tasks,) = query(head, ("list", "tasks"))
    mine = [t for t in tasks if t["name"].endswith("where")]
    assert mine and "big" in mine[0]["pending_reason"], tasks
    ready, _ = ember.wait([ref], timeout=0.5)
    assert not ready
    assert _demand(head) == {(("CPU", 1.0), ("big", 1.0)): 1}  # what the autoscaler reads
    start_worker_node(procs, head, tmp_short, "bignode", num_cpus=1, resources={"big": 1})
    assert ember.get(ref, timeout=60) == "bignode"
    assert _demand(head) == {}


DRIVER = r"""
import os
import sys
import time

import ember

ember.init(address=sys.argv[1], token=sys.argv[2])


@ember.remote
def hold(flag):
    open(flag, "w").close()
    time.sleep(600)


@ember.remote
def later():
    return 1


@ember.remote(resources={"nowhere": 1})
def impossible():
    return 1


refs = [hold.remote(sys.argv[3])] + [later.remote() for _ in range(5)] + [impossible.remote()]
print("submitted", flush=True)
ember.get(refs)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_drivers_work_ends_with_it(procs, tmp_short, connect, sig):
    head = start_head(procs, tmp_short, num_cpus=1)
    flag = tmp_short / "started"
    script = tmp_short / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    driver = procs.spawn([sys.executable, str(script), head.address, head.token, str(flag)],
                         env=procs.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_until(flag.exists, 60, 0.05), "the driver's first task never started"

    def names() -> list[str]:
        (tasks,) = query(head, ("list", "tasks"))
        return [t["name"] for t in tasks]

    assert wait_until(lambda: len(names()) == 7, 30, 0.1), names()
    driver.send_signal(sig)
    driver.wait(30)
    assert wait_until(lambda: not names(), 30, 0.1), f"the driver's tasks outlived it: {names()}"
    connect(head)

    @ember.remote
    def after():
        return "ran"

    assert ember.get(after.remote(), timeout=30) == "ran", "the next driver's task waited behind the old one's"
    assert wait_until(lambda: ember.available_resources().get("CPU") == 1.0, 30, 0.1), ember.available_resources()
