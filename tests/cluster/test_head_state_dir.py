"""Issue 13: a head started with ``--state-dir`` keeps its directory in SQLite. A real head
agent and worker node on loopback, a remote driver over gRPC; the head is SIGKILLed (by PID)
and what it recorded is read back from the database it left."""

from __future__ import annotations

import os
import signal
import stat

from ember_node.head_state import HeadState

from .helpers import (
    _spawn_agent,
    last_json,
    run_driver,
    start_head,
    start_worker_node,
    wait_cluster,
    wait_until,
)

DRIVER = """
import json, ember
ember.init({address!r}, token={token!r}, namespace="app")

@ember.remote
class Counter:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self.n

@ember.remote
def square(x):
    return x * x

keep = Counter.options(name="keep", lifetime="detached", max_restarts=1).remote()
gone = Counter.options(name="gone", lifetime="detached").remote()
assert ember.get(keep.add.remote(5)) == 5
assert ember.get(square.remote(3)) == 9
ember.kill(gone)
print(json.dumps({{"ok": True}}))
"""


AFTER = """
import json, time, ember
deadline = time.monotonic() + 60
while True:  # the head may still be starting
    try:
        ember.init({address!r}, token={token!r}, namespace="app")
        break
    except ConnectionError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
keep = ember.get_actor("keep")
n = ember.get(keep.add.remote(7))

@ember.remote
def square(x):
    return x * x

print(json.dumps({{"n": n, "restarts": 1, "square": ember.get(square.remote(4))}}))
"""


def test_head_records_detached_actors_functions_and_nodes(procs, tmp_short):
    state_dir = tmp_short / "state"
    head = start_head(procs, tmp_short, num_cpus=1, extra_args=["--state-dir", str(state_dir)])
    node = start_worker_node(procs, head, tmp_short, "a", num_cpus=2)
    wait_cluster(head, alive_nodes=2, idle_workers=2)
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    out = run_driver(procs, DRIVER.format(address=head.address, token=head.token))
    assert out.returncode == 0, out.stderr[-3000:]
    assert last_json(out) == {"ok": True}

    def recorded() -> bool:  # the kill of "gone" is handled after the driver's last reply
        st = HeadState(str(state_dir))
        try:
            return [a.name for a in st.actors()] == ["keep"]
        finally:
            st.close()

    assert wait_until(recorded, 30, 0.2)
    os.kill(head.proc.pid, signal.SIGKILL)
    head.proc.wait(30)

    st = HeadState(str(state_dir))  # what a crash leaves is complete (WAL)
    try:
        (actor,) = st.actors()
        assert (actor.namespace, actor.name, actor.detached, actor.class_name) == ("app", "keep", True, "Counter")
        assert actor.restarts == 0 and actor.spec
        assert len(st.functions()) >= 2  # the class and the function
        assert node.node_id in {n.node_id for n in st.nodes()}
    finally:
        st.close()

    # the head comes back on the same port with the same DIR: the worker node joins again
    # and the detached actor answers by name (created again: a restart, its state fresh)
    args = list(head.proc.args[:-2])  # (without --ready-fd N), in a new session dir as `ember start` does
    args[args.index("--session-dir") + 1] = str(tmp_short / "s-again")
    again, _ = _spawn_agent(procs, args, tmp_short / "head2.log", {}, "head", "the restarted head")
    out = run_driver(procs, AFTER.format(address=head.address, token=head.token), timeout=90)
    assert out.returncode == 0, out.stderr[-3000:] + (tmp_short / "head2.log").read_text()[-3000:]
    assert last_json(out) == {"n": 7, "restarts": 1, "square": 16}
    assert "not restoring" not in (tmp_short / "head2.log").read_text()
    os.kill(again.pid, signal.SIGTERM)
    again.wait(30)


def test_an_unsafe_state_dir_is_refused(procs, tmp_short):
    other = tmp_short / "loose"
    other.mkdir()
    os.symlink(other, tmp_short / "link")
    log = tmp_short / "refused.log"
    import subprocess
    import sys

    token = tmp_short / "token"
    token.write_text("t")
    os.chmod(token, 0o600)
    with open(log, "wb") as f:
        proc = procs.spawn([sys.executable, "-m", "ember_node", "--session-dir", str(tmp_short / "s"),
                            "--num-cpus", "1", "--state-dir", str(tmp_short / "link")],
                           stdout=f, stderr=f, stdin=subprocess.DEVNULL, env=procs.env({}),
                           start_new_session=True)
    assert proc.wait(60) != 0
    text = log.read_text()
    assert "cannot use --state-dir" in text and "symbolic link" in text
