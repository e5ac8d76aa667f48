"""Issue 13 chaos (d): a driver SIGKILLed (by PID) with work in flight. A real head and worker
node on loopback; the driver connects over gRPC, creates a plain actor and a detached named
one on the worker node, and leaves a task running. After the kill, the plain actor's worker
process ends, the running task's CPU comes back, the detached actor still answers another
driver, and the driver leaves no process, socket or /dev/shm segment behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil

from .helpers import (
    last_json,
    pid_alive,
    run_driver,
    start_head,
    start_worker_node,
    wait_cluster,
    wait_until,
)

VICTIM = """
import json, os, sys, time, ember
ember.init({address!r}, token={token!r}, namespace="chaos")

@ember.remote(resources={{"node_a": 0.01}})
class Holder:
    def __init__(self):
        self.n = 0
    def pid(self):
        return os.getpid()
    def add(self, k):
        self.n += k
        return self.n

@ember.remote(resources={{"node_a": 0.01}})
def busy():
    time.sleep(600)

plain = Holder.remote()
kept = Holder.options(name="kept", lifetime="detached").remote()
assert ember.get(kept.add.remote(3)) == 3
running = busy.remote()
print(json.dumps({{"plain": ember.get(plain.pid.remote()), "kept": ember.get(kept.pid.remote()),
                  "me": os.getpid()}}), flush=True)
time.sleep(600)
"""

AFTER = """
import json, ember
ember.init({address!r}, token={token!r}, namespace="chaos")
kept = ember.get_actor("kept")
print(json.dumps({{"n": ember.get(kept.add.remote(1)), "pid": ember.get(kept.pid.remote())}}))
ember.kill(kept)
"""


def _shm() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("ember")}


def test_a_killed_driver_leaves_nothing_and_its_plain_actors_end(procs, tmp_short):
    head = start_head(procs, tmp_short, num_cpus=1)
    start_worker_node(procs, head, tmp_short, "a", num_cpus=2, resources={"node_a": 1})
    wait_cluster(head, alive_nodes=2, idle_workers=3)
    shm_before = _shm()
    script = tmp_short / "victim.py"
    script.write_text(textwrap.dedent(VICTIM.format(address=head.address, token=head.token)))
    victim = procs.spawn([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=procs.env(), start_new_session=True)
    line = victim.stdout.readline()
    assert line, victim.stderr.read()[-3000:]
    pids = json.loads(line)
    children = [p.pid for p in psutil.Process(victim.pid).children(recursive=True)]

    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)
    victim.stdout.close()
    victim.stderr.close()

    assert wait_until(lambda: not pid_alive(pids["plain"]), 60, 0.1), "the plain actor outlived its driver"
    assert pid_alive(pids["kept"])
    assert all(wait_until(lambda p=p: not pid_alive(p), 30, 0.1) for p in children)
    out = run_driver(procs, AFTER.format(address=head.address, token=head.token))
    assert out.returncode == 0, out.stderr[-3000:]
    assert last_json(out) == {"n": 4, "pid": pids["kept"]}
    # the busy task was cancelled with its driver: its worker went, and the node's CPUs are free
    wait_cluster(head, alive_nodes=2, idle_workers=2, timeout=60)
    # /dev/shm: a remote driver maps no segment, and the machine's other clusters (tests run
    # side by side) make their own, so only segments named after this head's session count
    mine = os.path.basename(str(head.session_dir))
    assert wait_until(lambda: not {n for n in _shm() - shm_before if mine in n}, 30, 0.1)
    assert not [f for f in os.listdir(head.info["socket_dir"]) if str(pids["me"]) in f]
