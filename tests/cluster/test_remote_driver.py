"""A remote driver that knows one address:port and nothing else (issue 4, test 4).

First through a pure-Python TCP forwarder on 127.0.0.1 (what ``kubectl port-forward`` does);
then, where we are root, from inside a network namespace whose only way out is a veth pair
to the head's address. The driver reports its own sockets: it listens on nothing and its only
peers are that one address:port.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile

from .helpers import (
    last_json,
    pid_alive,
    query,
    run_driver,
    start_head,
    start_worker_node,
    wait_cluster,
    wait_until,
)

DRIVER = r"""
import json
import os

import numpy as np
import psutil

import ember

address = os.environ["DRIVER_ADDRESS"]
token = os.environ.get("DRIVER_TOKEN")  # absent: ember.init reads EMBER_TOKEN
ember.init(address, token=token)


@ember.remote
def square(x):
    return x * x


@ember.remote
def where():
    import os

    return os.environ.get("EMBER_TEST_NODE")


@ember.remote
def total(x):
    import os

    return int(x.sum()), x.nbytes, os.environ.get("EMBER_TEST_NODE")


@ember.remote
class Counter:
    def __init__(self, start):
        self.n = start

    def incr(self, by=1):
        self.n += by
        return self.n


out = {}
out["squares"] = ember.get([square.remote(i) for i in range(50)], timeout=60)
out["nodes"] = sorted({n for n in ember.get([where.remote() for _ in range(20)], timeout=60)})
pinned = os.environ.get("DRIVER_PIN")
if pinned:
    out["pinned"] = ember.get(where.options(resources={pinned: 1}).remote(), timeout=60)
c = Counter.remote(10)
for _ in range(5):
    c.incr.remote()
out["counter"] = ember.get(c.incr.remote(100), timeout=60)
arr = np.arange(50 * 2**20 // 8, dtype=np.int64)
ref = ember.put(arr)
back = ember.get(ref, timeout=60)
out["put_get_equal"] = bool(np.array_equal(arr, back))
out["task_sum"] = ember.get(total.remote(ref), timeout=60)
out["expected_sum"] = int(arr.sum())
out["returned_equal"] = bool(np.array_equal(ember.get(ember.put(back), timeout=60), arr))
out["cluster_cpus"] = ember.cluster_resources()["CPU"]

me = psutil.Process()
inet = me.net_connections(kind="inet")
out["listening"] = [f"{c.laddr.ip}:{c.laddr.port}" for c in inet if c.status == psutil.CONN_LISTEN]
out["peers"] = sorted({f"{c.raddr.ip.removeprefix('::ffff:')}:{c.raddr.port}" for c in inet if c.raddr})
out["unix_peers"] = sorted({c.raddr for c in me.net_connections(kind="unix") if c.raddr})
ember.shutdown()
print(json.dumps(out))
"""


def _check(result: dict, only_peer: str, nodes: set[str]) -> None:
    assert result["squares"] == [i * i for i in range(50)]
    assert set(result["nodes"]) <= nodes and result["nodes"], result["nodes"]
    assert result["counter"] == 115
    assert result["put_get_equal"] and result["returned_equal"]
    s, nbytes, _node = result["task_sum"]
    assert (s, nbytes) == (result["expected_sum"], 50 * 2**20)
    assert result["listening"] == [], f"the driver listens on {result['listening']}"
    assert result["peers"] == [only_peer], f"the driver talked to {result['peers']}, not only {only_peer}"
    assert not [p for p in result["unix_peers"] if "agent.sock" in p], result["unix_peers"]


def test_remote_driver_through_one_forwarded_port(procs, tmp_short, forwarder):
    head = start_head(procs, tmp_short, num_cpus=2)
    start_worker_node(procs, head, tmp_short, "a", num_cpus=1, resources={"node_a": 1})
    wait_cluster(head, alive_nodes=2, idle_workers=3)
    fwd = forwarder(("127.0.0.1", head.port))
    # as a Ray user writes it for KubeRay's head Service port `client` (10001 -> the head's port)
    result = last_json(run_driver(procs, DRIVER, timeout=90, env={
        "DRIVER_ADDRESS": f"ray://127.0.0.1:{fwd.port}", "DRIVER_TOKEN": head.token, "DRIVER_PIN": "node_a"}))
    _check(result, f"127.0.0.1:{fwd.port}", {"head", "a"})
    assert result["pinned"] == "a"
    assert result["cluster_cpus"] == 3
    assert fwd.connections >= 1
    # the 50 MiB array went up (put) and came down (get) through the forwarder
    assert fwd.bytes_up > 50 * 2**20 and fwd.bytes_down > 50 * 2**20, (fwd.bytes_up, fwd.bytes_down)


def test_remote_driver_from_a_network_namespace(procs, tmp_short, netns):
    ns, host_ip, ns_ip = netns
    # inside, only the namespace's own veth address (and its own loopback) exist
    probe = subprocess.run(["ip", "netns", "exec", ns, "ip", "-4", "addr", "show"], capture_output=True,
                           text=True, timeout=20)
    assert ns_ip in probe.stdout and host_ip not in probe.stdout
    head = start_head(procs, tmp_short, num_cpus=2, host=host_ip)
    wait_cluster(head, alive_nodes=1, idle_workers=2)
    result = last_json(run_driver(procs, DRIVER, timeout=90, prefix=["ip", "netns", "exec", ns], env={
        "DRIVER_ADDRESS": f"{host_ip}:{head.port}", "EMBER_TOKEN": head.token}))
    _check(result, f"{host_ip}:{head.port}", {"head"})
    assert result["cluster_cpus"] == 2


DYING_DRIVER = r"""
import json
import os
import time

import numpy as np

import ember

ember.init(os.environ["DRIVER_ADDRESS"], token=os.environ["DRIVER_TOKEN"])


@ember.remote(resources={"node_a": 0.5})
def make(n):
    import numpy as np

    return np.ones(n, dtype=np.uint8)


@ember.remote(resources={"node_a": 0.5}, num_cpus=0)
class Pid:
    def pid(self, x=None):
        import os

        return os.getpid()


big = ember.put(np.zeros(30 * 2**20, dtype=np.uint8))
made = make.remote(20 * 2**20)
ember.wait([made], timeout=60)
mortal = Pid.remote()
keeper = Pid.options(name="keeper", lifetime="detached").remote()
pids = ember.get([mortal.pid.remote(big), keeper.pid.remote(made)], timeout=60)
print(json.dumps({"pids": pids}), flush=True)
time.sleep(600)
"""


def test_a_remote_driver_that_dies_leaves_nothing_behind(procs, tmp_short):
    """A remote driver SIGKILLed mid-session: its objects are freed (in the head's store and
    in the worker node's), its actor ends, and only its detached actor lives on."""
    head = start_head(procs, tmp_short, num_cpus=1)
    start_worker_node(procs, head, tmp_short, "a", num_cpus=2, resources={"node_a": 1})
    wait_cluster(head, alive_nodes=2, idle_workers=3)
    (before,) = query(head, ("stats", None))
    with tempfile.NamedTemporaryFile("w", suffix=".py", dir=tmp_short, delete=False) as f:
        f.write(DYING_DRIVER)
    driver = procs.spawn([sys.executable, f.name], stdout=subprocess.PIPE, text=True, start_new_session=True,
                         env=procs.env({"DRIVER_ADDRESS": head.address, "DRIVER_TOKEN": head.token}))
    line = driver.stdout.readline()
    assert line, "the driver died before it was ready"
    mortal_pid, keeper_pid = json.loads(line)["pids"]

    nodes, stats = query(head, ("nodes", None), ("stats", None))
    assert stats["store_bytes"] >= before["store_bytes"] + 50 * 2**20
    assert wait_until(lambda: any((n["object_store"] or (0,))[0] >= 50 * 2**20
                                  for n in query(head, ("nodes", None))[0] if not n["IsHead"]), 10)

    driver.send_signal(signal.SIGKILL)
    driver.wait(10)

    def cleaned() -> bool:
        nodes, stats, actors = query(head, ("nodes", None), ("stats", None), ("list", "actors"))
        worker = [n for n in nodes if not n["IsHead"]][0]
        alive = sorted(a.get("name") or "" for a in actors if a["state"] == "ALIVE")
        return (stats["store_bytes"] == before["store_bytes"] and worker["object_store"][0] == 0
                and alive == ["keeper"] and not pid_alive(mortal_pid))

    assert wait_until(cleaned, 60), query(head, ("stats", None), ("list", "actors"), ("nodes", None))
    assert pid_alive(keeper_pid)
