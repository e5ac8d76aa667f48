"""The ``ember`` command line on a real head and worker node (issue 4, tests 6 and 7).

Every CLI call runs with ``TMPDIR`` set to a test-private directory, so the agent records
(``$TMPDIR/ember-<uid>/agents/``), the generated token and ``ember stop`` only ever see this
test's agents, while other suites run on the same machine. Agents started by the CLI are
detached from it; their pids come from those records and are cleaned up by pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from .helpers import (
    cli_records,
    ember_cli,
    free_port,
    last_json,
    pid_alive,
    run_driver,
    short_tmpdir,
    wait_until,
)


class Cli:
    def __init__(self, procs, root):
        self.procs = procs
        self.root = root
        self.env = procs.env({"TMPDIR": str(root)})
        self.base = root / f"ember-{os.getuid()}"

    def __call__(self, *args: str, timeout: float = 60):
        return ember_cli(self.env, *args, timeout=timeout)

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, f"ember {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def track_agents(self) -> list[dict]:
        recs = cli_records(self.root)
        for rec in recs:
            self.procs.track(int(rec["pid"]))
        return recs

    def start_head(self, *extra: str) -> tuple[int, dict]:
        port = free_port()
        out = self.ok("start", "--head", "--port", str(port), "--num-cpus", "1",
                      "--object-store-memory", str(256 << 20), *extra)
        assert f"127.0.0.1:{port}" in out, out
        heads = [r for r in self.track_agents() if r["role"] == "head"]
        assert len(heads) == 1, heads
        return port, heads[0]

    def driver(self, script: str, timeout: float = 60):
        return run_driver(self.procs, script, env={"TMPDIR": str(self.root)}, timeout=timeout)


@pytest.fixture
def cli(procs):
    root = short_tmpdir()
    c = Cli(procs, root)
    yield c
    c.track_agents()
    try:
        c("stop", timeout=30)
    except Exception:  # noqa: BLE001 - cleanup by pid below anyway
        pass
    procs.cleanup()
    shutil.rmtree(root, ignore_errors=True)


NAMED_ACTOR = r"""
import json

import ember

ember.init(address="auto")


@ember.remote
class Probe:
    def ping(self):
        return "pong"


p = Probe.options(name="cli_probe", lifetime="detached").remote()
print(json.dumps({"ping": ember.get(p.ping.remote(), timeout=30)}))
"""


WATCHER = r"""
import json
import os
import subprocess
import sys

import numpy as np

import ember

ember.init()  # no address: EMBER_ADDRESS and EMBER_TOKEN name the cluster
kept = ember.put(np.zeros(2 * 2**20, dtype=np.uint8))


@ember.remote(num_cpus=64)
def too_big():
    return 1


pending = too_big.remote()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ember_node.cli", *args], capture_output=True, text=True,
                          timeout=60).stdout


print(json.dumps({"nodes": len(ember.nodes()), "kept": kept.hex(), "pending": pending.hex(),
                  "status": cli("status"), "tasks": cli("list", "tasks"),
                  "objects": cli("list", "objects")}))
"""


def test_status_list_and_stop(cli):
    from ember._remote import ping

    port, head_rec = cli.start_head()
    token_file = cli.base / "token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    cli.ok("start", "--address", f"127.0.0.1:{port}", "--token-file", str(token_file),
           "--num-cpus", "1", "--resources", json.dumps({"node_a": 1}),
           "--object-store-memory", str(40 << 20))
    recs = cli.track_agents()
    assert sorted(r["role"] for r in recs) == ["head", "worker"], recs

    def two_nodes():
        r = cli("list", "nodes", "--json")
        return r.returncode == 0 and sum(1 for n in json.loads(r.stdout) if n["Alive"]) >= 2

    assert wait_until(two_nodes, 60, 0.2), cli("list", "nodes", "--json")
    nodes = json.loads(cli.ok("list", "nodes", "--json"))
    assert len(nodes) >= 2 and all({"NodeID", "Alive", "Resources"} <= set(n) for n in nodes), nodes

    def store_reported():  # with the worker node's first heartbeat
        nodes = json.loads(cli.ok("list", "nodes", "--json"))
        return all(n.get("object_store") for n in nodes)

    assert wait_until(store_reported, 60, 0.2), cli("list", "nodes", "--json")
    status = cli.ok("status")
    assert "nodes: 2 alive, 0 dead" in status, status
    # each node's memory as the memory monitor reads it (a worker node's comes with its heartbeat)
    memory = r"; memory [\d.]+ [KMG]?i?B / [\d.]+ [KMG]?i?B \(\d+%\)$"
    assert re.search(r"ALIVE .*node_a 1; store 0 B / 40 MiB" + memory, status, re.M), status
    assert len(re.findall(memory, status, re.M)) == 2, status
    assert re.search(r"^\s+object_store_memory\s+0 B / \d+ MiB$", status, re.M), status  # bytes, readable
    table = cli.ok("list", "nodes").splitlines()
    assert table[0].split().count("ALIVE") == 1 and len(table) == 3, table
    assert re.search(r"^\s+CPU\s+\S+ / 2$", status, re.M), status
    assert re.search(r"^\s+node_a\s+\S+ / 1$", status, re.M), status
    as_json = json.loads(cli.ok("status", "--json"))
    assert as_json["resources"]["CPU"] == 2 and len(as_json["nodes"]) == 2

    # the head's port is on loopback only (no --host given)
    import psutil

    listening = {c.laddr.ip.removeprefix("::ffff:") for c in psutil.Process(int(head_rec["pid"])).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening == {"127.0.0.1"}, listening

    # a driver that names the cluster only through EMBER_ADDRESS / EMBER_TOKEN, watched by the CLI
    watched = last_json(run_driver(cli.procs, WATCHER, env={
        "TMPDIR": str(cli.root), "EMBER_ADDRESS": f"127.0.0.1:{port}",
        "EMBER_TOKEN": token_file.read_text().strip()}))
    assert watched["nodes"] == 2  # it joined the cluster, not an embedded one
    assert "needs 64 CPU but the largest node has 1" in watched["status"], watched["status"]
    assert "ember start --num-cpus" in watched["status"]
    rows = [ln for ln in watched["tasks"].splitlines() if "too_big" in ln]
    assert rows and "QUEUED" in rows[0], watched["tasks"]
    assert watched["tasks"].splitlines()[0].split()[:2] == ["TASK_ID", "NAME"], watched["tasks"]
    line = [ln for ln in watched["objects"].splitlines() if ln.startswith(watched["kept"])]
    assert line and "STORE" in line[0], watched["objects"]

    assert last_json(cli.driver(NAMED_ACTOR)) == {"ping": "pong"}
    actors = cli.ok("list", "actors")
    line = [ln for ln in actors.splitlines() if "cli_probe" in ln]
    assert line and "Probe" in line[0] and "ALIVE" in line[0], actors

    # a wrong token on the CLI-started head is refused, and its log says so
    with pytest.raises(ConnectionError, match="token"):
        ping(f"127.0.0.1:{port}", "not-the-token")
    agent_log = Path(head_rec["session_dir"]) / "logs" / "agent.log"
    assert wait_until(lambda: "refused" in agent_log.read_text(), 5), agent_log.read_text()[-2000:]

    # ember stop: every agent and everything under it is gone
    pids = {int(r["pid"]) for r in cli_records(cli.root)}
    for pid in list(pids):
        pids |= set(cli.procs.remember_tree(pid))
    assert len(pids) >= 4, f"expected agents, zygotes and workers, found {pids}"
    stopped = cli.ok("stop")
    assert stopped.count("ember stopped") == 2, stopped
    assert wait_until(lambda: not [p for p in pids if pid_alive(p)], 15), \
        f"still alive after `ember stop`: {[p for p in pids if pid_alive(p)]}"
    assert cli_records(cli.root) == []
    arena = f"ember-{Path(head_rec['session_dir']).name}-"
    assert wait_until(lambda: not [f for f in os.listdir("/dev/shm") if f.startswith(arena)], 5), \
        f"the head's shared memory /dev/shm/{arena}* survived `ember stop`"

    after = cli("status")
    assert after.returncode != 0
    assert "no cluster started by `ember start` is running on this machine" in after.stderr, after
    again = cli("stop")
    assert again.returncode == 0 and "nothing" in again.stdout, again


DETACHED_1 = r"""
import json

import ember

ember.init(address="auto", namespace="counters")  # shared across drivers, as in Ray


@ember.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


c = Counter.options(name="c", lifetime="detached").remote()
values = ember.get([c.incr.remote() for _ in range(3)], timeout=30)
print(json.dumps({"values": values}))
"""

DETACHED_2 = r"""
import json

import ember

ember.init(address="auto", namespace="counters")
c = ember.get_actor("c")
print(json.dumps({"after": ember.get(c.incr.remote(), timeout=30)}))
"""


def test_detached_actor_outlives_its_driver(cli):
    cli.start_head()
    assert last_json(cli.driver(DETACHED_1)) == {"values": [1, 2, 3]}
    actors = cli.ok("list", "actors")
    assert any(" c " in f" {ln} " and "ALIVE" in ln for ln in actors.splitlines()), actors
    assert last_json(cli.driver(DETACHED_2)) == {"after": 4}
    assert last_json(cli.driver(DETACHED_2)) == {"after": 5}


def test_ray_start_flags_mean_the_same_and_flags_without_meaning_are_warned_about(cli):
    """A KubeRay pod's `ray start` flags, renamed to `ember start`: Ray's spellings work,
    Ray flags with no meaning here are warned about (the agent still starts), and a flag
    neither knows is refused naming it."""
    port = free_port()
    metrics = free_port()
    head = cli("start", "--head", "--port", str(port), "--num-cpus=1", "--dashboard-host", "0.0.0.0",
               "--include-dashboard", "false", "--redis-password", "s3cret", "--enable-resource-isolation",
               "--object-store-memory", str(64 << 20), f"--metrics-export-port={metrics}",
               "--node-ip-address", "127.0.0.1")
    assert head.returncode == 0, head.stderr
    cli.track_agents()
    assert "ignoring the Ray flag --redis-password: ember uses no Redis" in head.stderr, head.stderr
    assert "ignoring the Ray flag --enable-resource-isolation" in head.stderr, head.stderr
    token_file = cli.base / "token"
    node = cli("start", "--address", f"127.0.0.1:{port}", "--token-file", str(token_file), "--num-cpus", "1",
               "--resources", '\'{"TPU": 4}\'', "--object-store-memory", str(40 << 20),
               "--node-manager-port", "6380", "--node-ip-address", "127.0.0.1")
    assert node.returncode == 0, node.stderr
    cli.track_agents()
    assert "ignoring the Ray flag --node-manager-port" in node.stderr, node.stderr

    def joined():
        r = cli("status", "--json")
        return r.returncode == 0 and json.loads(r.stdout)["resources"].get("TPU") == 4

    assert wait_until(joined, 30, 0.2), cli("status", "--json").stdout
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/healthz", timeout=10) as answer:
        assert answer.status == 200  # --metrics-export-port is --metrics-port

    refused = cli("start", "--address", f"127.0.0.1:{port}", "--no-such-flag", "1")
    assert refused.returncode == 2 and "--no-such-flag" in refused.stderr, refused.stderr
    bad = cli("start", "--address", f"127.0.0.1:{port}", "--token-file", str(token_file),
              "--resources", "TPU=4")
    assert bad.returncode == 1 and "--resources 'TPU=4' is not a JSON object" in bad.stderr, bad.stderr
