"""Worker output on a cluster started with ``ember start``, under a very deep TMPDIR
(issue 10, parts 0 and 5): a driver joined with ``address="auto"`` and a remote driver over
gRPC each see what their own tasks and actors print, prefixed ``(name pid=N)``; the sockets
fit although the state directory's path is far beyond a Unix socket path's 107 bytes;
``ember stop`` stops it all and the session's log files stay.
"""

from __future__ import annotations

import os
import re

from .helpers import last_json
from .test_deep_tmpdir import deep_cli  # noqa: F401 - the fixture

PRINTS = r"""
import json, os, sys
import ember

ember.init(%(address)s)

@ember.remote
def chatty(tag, n):
    for i in range(n):
        print(f"{tag} {i}" if i %% 3 else "P 1 2")
    print(f"{tag} on stderr", file=sys.stderr)
    return os.getpid()

@ember.remote
class Teller:
    def tell(self, tag):
        print(f"teller {tag}")
        return os.getpid()

pid = ember.get(chatty.remote(%(tag)r, 3000), timeout=60)
actor_pid = ember.get(Teller.remote().tell.remote(%(tag)r), timeout=60)
ember.shutdown()
print(json.dumps({"pid": pid, "actor_pid": actor_pid}))
"""


def _check(result, tag, n=3000):
    info = last_json(result)
    pid, actor_pid = info["pid"], info["actor_pid"]
    mine = [line.split(") ", 1)[1] for line in result.stdout.splitlines()
            if line.startswith(f"(chatty pid={pid}) ")]
    assert mine == [f"{tag} {i}" if i % 3 else "P 1 2" for i in range(n)]
    assert f"(chatty pid={pid}) {tag} on stderr" in result.stderr.splitlines()
    assert f"(Teller pid={actor_pid}) teller {tag}" in result.stdout.splitlines()
    return info


def test_start_auto_and_remote_drivers_see_their_prints_under_a_deep_tmpdir(deep_cli):  # noqa: F811
    assert len(str(deep_cli.root)) > 150
    port, head = deep_cli.start_head("--num-cpus", "2")
    auto = deep_cli.driver(PRINTS % {"address": 'address="auto"', "tag": "auto"}, timeout=120)
    _check(auto, "auto")
    token = (deep_cli.base / "token").read_text().strip()
    remote = deep_cli.driver(PRINTS % {"address": f'"127.0.0.1:{port}", token={token!r}', "tag": "remote"},
                             timeout=120)
    _check(remote, "remote")
    # each driver saw its own work only
    assert "auto " not in remote.stdout and not re.search(r"remote \d", auto.stdout)
    session_dir = head["session_dir"]
    deep_cli.ok("stop")
    logs = os.path.join(session_dir, "logs")
    outs = [n for n in os.listdir(logs) if n.startswith("worker-") and n.endswith(".out")]
    assert outs, os.listdir(logs)
    text = "".join(open(os.path.join(logs, n), errors="replace").read() for n in outs)
    assert "auto 2999" in text and "remote 2999" in text



def test_a_worker_nodes_workers_print_to_the_driver(procs, tmp_short, connect, capsys):
    """A task on a worker node: its node tails the worker's files and passes the lines to
    the head, which sends them to the driver (here in-process, connected over gRPC)."""
    import time

    import ember

    from .helpers import start_head, start_worker_node, wait_cluster

    head = start_head(procs, tmp_short, num_cpus=1)
    start_worker_node(procs, head, tmp_short, "a", num_cpus=1, resources={"node_a": 1})
    wait_cluster(head, alive_nodes=2, idle_workers=2)
    connect(head)

    @ember.remote(resources={"node_a": 1})
    def on_a():
        import sys

        print("hello from node a")
        print("P 1 2")
        print("node a on stderr", file=sys.stderr)
        return os.getpid(), os.environ.get("EMBER_TEST_NODE")

    pid, node = ember.get(on_a.remote(), timeout=60)
    assert node == "a"
    want_out = [f"(on_a pid={pid}) hello from node a", f"(on_a pid={pid}) P 1 2"]
    want_err = f"(on_a pid={pid}) node a on stderr"
    out = err = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = capsys.readouterr()
        out, err = out + got.out, err + got.err
        if all(w in out.splitlines() for w in want_out) and want_err in err.splitlines():
            break
        time.sleep(0.05)
    assert [line for line in out.splitlines() if line.startswith(f"(on_a pid={pid})")] == want_out, out
    assert want_err in err.splitlines(), err
