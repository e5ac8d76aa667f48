"""A simulated large cluster: many node agents, played by a few processes, against a real head.

Each simulated node speaks the real worker-node protocol to a real head agent over gRPC (a
``Session`` stream, as ``ember_node.worker_node`` does): it registers (HELLO "node" with its
resources), heartbeats every second with a store and memory report, and never forks a
worker (it ignores START_WORKER, counting them: that is where the head placed work).

Measured:

- the head agent's CPU, from ``/proc/<pid>/stat`` over a window, with every node
  registered and heartbeating (target: under 20% of one core at 500 nodes);
- the pure placement decision (``ember_node.scheduler.place``) over that many nodes'
  resource views, per decision, in this process (target: under 50 us);
- the head's CPU per task a driver submits while the nodes are registered: tasks that need
  a resource only the last simulated node has, so the head must find that node among all
  of them; each is placed there (a START_WORKER arrives at that node) and stays pending.

    .venv/bin/python bench/sim_cluster.py [--nodes 500] [--procs 4] [--window 10] [--tasks 2000]

Prints a JSON line with the figures (and a readable summary on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

HEARTBEAT_S = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def resource_of(index: int) -> str:
    return f"simnode{index}"


# ---------------------------------------------------------------- a process of simulated nodes
def run_nodes(address: str, token: str, first: int, count: int, report: str) -> None:
    """Play nodes ``first .. first+count-1`` until stdin closes; write START_WORKER counts to
    ``report`` (JSON, node index -> count) every second."""
    from ember import _messages as M
    from ember._remote import GrpcConnection
    from ember._wire import ConnectionClosed

    conns: dict[int, GrpcConnection] = {}
    for i in range(first, first + count):
        conn = GrpcConnection(address, token)
        conn.send((M.HELLO, "node", os.getpid(), None, M.hello_info({
            "node_id": uuid.uuid4().hex, "address": f"sim-{i}", "hostname": f"sim-{i}", "peer": "",
            "resources": {"CPU": 2.0, "memory": float(4 << 30), "object_store_memory": float(1 << 30),
                          resource_of(i): 1.0}})))
        conns[i] = conn
    started: dict[int, int] = {i: 0 for i in conns}
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    step = HEARTBEAT_S / max(len(conns), 1)
    while not stop.is_set():
        begin = time.monotonic()
        for n, (i, conn) in enumerate(conns.items()):
            try:
                conn.send((M.HEARTBEAT, (0, 1 << 30, 0), [], (1 << 30, 4 << 30, "sim")))
                for msg in conn.recv_nowait():
                    if msg[0] == M.START_WORKER:
                        started[i] += 1
            except ConnectionClosed:
                stop.set()
                break
            # spread the beats over the second, as independent nodes would send them
            delay = begin + (n + 1) * step - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        tmp = report + ".tmp"
        with open(tmp, "w") as f:
            json.dump(started, f)
        os.replace(tmp, report)
    for conn in conns.values():
        conn.close()


# ---------------------------------------------------------------- the pure decision
def time_decisions(nodes: int, repeat: int = 2000) -> dict[str, float]:
    """Microseconds per ``place`` call over ``nodes`` nodes' views, for the common cases."""
    from ember_node.scheduler import Limits, Request, holders_of, place
    from ember_node.workers import NodeRec

    recs = [NodeRec("head", "", "", {"CPU": 0.0}, is_head=True)]
    for i in range(nodes):
        n = NodeRec(uuid.uuid4().hex, f"sim-{i}", "", {"CPU": 2.0, "memory": 4e9, resource_of(i): 1.0},
                    client=object())
        n.available["CPU"] = 0.0  # every node busy: the scan sees them all
        recs.append(n)
    largest: dict[str, float] = {}
    for n in recs:
        for k, v in n.totals.items():
            largest[k] = max(largest.get(k, 0.0), v)
    limits = Limits(max_workers_per_node=8)
    cases = {
        "fits_only_the_last_node": Request({"CPU": 0.0, resource_of(nodes - 1): 1.0}, ("last",)),
        "no_room_anywhere_waits": Request({"CPU": 1.0}, ("cpu",), may_pipeline=False),
        "infeasible": Request({"GPU": 1.0}, ("gpu",)),
    }
    holders = holders_of(recs)
    out = {}
    for name, req in cases.items():
        for index in (None, holders):
            t0 = time.perf_counter()
            for _ in range(repeat):
                place(req, recs, (), largest, {}, limits, index)
            out[name + ("_indexed" if index else "_full_scan")] = (time.perf_counter() - t0) / repeat * 1e6
    return out


# ---------------------------------------------------------------- the run
def _cluster_nodes(address: str, token: str) -> int:
    from ember._proto import node_pb2 as pb
    from ember._proto import node_pb2_grpc as pb_grpc
    from ember._remote import channel

    chan = channel(address)
    try:
        reply = pb_grpc.NodeStub(chan).ClusterInfo(pb.ClusterInfoRequest(),
                                                   metadata=[("authorization", f"Bearer {token}")], timeout=30)
        return sum(1 for n in reply.nodes if n.alive and not n.is_head)
    finally:
        chan.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _driver_submit(address: str, token: str, tasks: int, resource: str) -> str:
    """Submit ``tasks`` tasks needing ``resource`` from a driver process; its output."""
    script = f"""
import ember, time
ember.init({address!r}, token={token!r})
@ember.remote(num_cpus=0, resources={{{resource!r}: 0.001}})
def f():
    return 1
t0 = time.perf_counter()
refs = [f.remote() for _ in range({tasks})]
ready, _ = ember.wait(refs, num_returns=1, timeout=0.5)
print(len(refs), len(ready), time.perf_counter() - t0)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"the driver failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench/sim_cluster.py")
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--window", type=float, default=10.0, help="seconds of head CPU measured")
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--child", nargs=5, metavar=("ADDRESS", "TOKEN", "FIRST", "COUNT", "REPORT"))
    args = p.parse_args(argv)
    if args.child:
        address, token, first, count, report = args.child
        run_nodes(address, token, int(first), int(count), report)
        return

    figures: dict[str, Any] = {"nodes": args.nodes, "decision_us": time_decisions(args.nodes)}
    root = tempfile.mkdtemp(prefix="ember-sim-")
    token = uuid.uuid4().hex
    token_file = os.path.join(root, "token")
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, token.encode())
    os.close(fd)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    log = open(os.path.join(root, "head.log"), "wb")
    head = subprocess.Popen([sys.executable, "-m", "ember_node", "--session-dir", os.path.join(root, "s"),
                             "--num-cpus", "0", "--port", str(port), "--host", "127.0.0.1",
                             "--token-file", token_file, "--object-store-memory", str(64 << 20)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    children: list[subprocess.Popen] = []
    try:
        from ember._remote import ping

        deadline = time.monotonic() + 60
        while True:
            try:
                ping(address, token, timeout=2)
                break
            except ConnectionError:
                if time.monotonic() > deadline or head.poll() is not None:
                    raise RuntimeError("the head agent did not start") from None
                time.sleep(0.2)
        idle0 = cpu_seconds(head.pid)
        time.sleep(3)
        figures["head_cpu_idle_pct"] = (cpu_seconds(head.pid) - idle0) / 3 * 100
        per = -(-args.nodes // args.procs)
        reports = []
        for first in range(0, args.nodes, per):
            report = os.path.join(root, f"started-{first}.json")
            reports.append(report)
            children.append(subprocess.Popen(
                [sys.executable, __file__, "--child", address, token, str(first),
                 str(min(per, args.nodes - first)), report], stdin=subprocess.PIPE))
        t0 = time.monotonic()
        while _cluster_nodes(address, token) < args.nodes:
            if time.monotonic() - t0 > 180 or head.poll() is not None:
                raise RuntimeError(f"only {_cluster_nodes(address, token)} of {args.nodes} nodes joined")
            time.sleep(0.5)
        figures["join_s"] = time.monotonic() - t0
        time.sleep(3)  # the joins' work is done, heartbeats are steady
        c0, w0 = cpu_seconds(head.pid), time.monotonic()
        time.sleep(args.window)
        c1, w1 = cpu_seconds(head.pid), time.monotonic()
        figures["head_cpu_pct"] = (c1 - c0) / (w1 - w0) * 100
        alive = _cluster_nodes(address, token)
        figures["nodes_alive_after"] = alive
        # end to end: a driver's tasks for the last simulated node
        target = args.nodes - 1
        c2, w2 = cpu_seconds(head.pid), time.monotonic()
        out = _driver_submit(address, token, args.tasks, resource_of(target))
        c3, w3 = cpu_seconds(head.pid), time.monotonic()
        base = (c1 - c0) / (w1 - w0)
        figures["driver"] = out
        figures["head_cpu_us_per_task"] = ((c3 - c2) - base * (w3 - w2)) / args.tasks * 1e6
        deadline = time.monotonic() + 30
        placed = 0
        while time.monotonic() < deadline:
            started: dict[str, int] = {}
            for r in reports:
                try:
                    with open(r) as f:
                        started.update(json.load(f))
                except (OSError, ValueError):
                    pass
            placed = started.get(str(target), 0)
            if placed > 1:  # one at its join (its CPUs), more for the tasks placed on it
                break
            time.sleep(0.5)
        figures["start_worker_on_target"] = placed
    finally:
        for child in children:
            try:
                child.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        head.terminate()
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
        keep = os.environ.get("EMBER_SIM_KEEP")
        if keep:
            print(f"head log kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures))
    d = figures["decision_us"]
    print(f"{args.nodes} simulated nodes: head CPU {figures['head_cpu_pct']:.1f}% of a core heartbeating "
          f"(idle before: {figures['head_cpu_idle_pct']:.1f}%), joined in {figures['join_s']:.1f} s; "
          f"place(): {', '.join(f'{k} {v:.1f} us' for k, v in d.items())}; driver tasks: "
          f"{figures['head_cpu_us_per_task']:.1f} us head CPU each", file=sys.stderr)


if __name__ == "__main__":
    main()
