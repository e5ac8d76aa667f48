"""``ember logs`` on a real head started by ``ember start``: listing the session's files,
printing a worker's output by pid, actor id and task id, following a file as it grows, and
the same through the head's token-checked gRPC port (``--address``), which refuses paths
outside the session's logs. Agents run under a test-private TMPDIR (see test_cli)."""

from __future__ import annotations

import os
import subprocess
import sys

from .helpers import last_json, wait_until
from .test_cli import cli  # noqa: F401 - the fixture

PRINTER = r"""
import json, os
import ember

ember.init(address="auto", log_to_driver=False, namespace="logs")


@ember.remote
def shout(i):
    print(f"task line {i}", flush=True)
    return ember.get_runtime_context().get_task_id(), os.getpid()


@ember.remote
class Talker:
    def say(self):
        print("actor line", flush=True)
        return ember.get_runtime_context().get_actor_id(), os.getpid()


task_id, task_pid = ember.get(shout.remote(7), timeout=60)
a = Talker.options(name="talker", lifetime="detached").remote()
actor_id, actor_pid = ember.get(a.say.remote(), timeout=60)
print(json.dumps({"task_id": task_id, "task_pid": task_pid, "actor_id": actor_id, "actor_pid": actor_pid}))
"""


def test_logs_list_print_follow_and_remote(cli):  # noqa: F811
    port, head = cli.start_head()
    r = cli.driver(PRINTER)
    assert r.returncode == 0, r.stderr
    ids = last_json(r)

    listing = cli.ok("logs")
    assert "agent.log" in listing and f"worker-{ids['task_pid']}.out" in listing, listing
    assert os.path.basename(head["session_dir"])[:24] in listing

    def printed(*args: str, want: str) -> str:
        out = ""

        def has() -> bool:
            nonlocal out
            out = cli.ok("logs", *args)
            return want in out
        wait_until(has, 30)
        return out

    out = printed("--worker-pid", str(ids["task_pid"]), want="task line 7")
    assert "[ember] job" in out and "\x00" not in out  # attribution marks made readable
    printed("--actor-id", ids["actor_id"], want="actor line")
    printed("--task-id", ids["task_id"], want="task line 7")
    printed(f"worker-{ids['actor_pid']}.out", "--tail", "1", want="actor line")
    assert "task line" not in cli.ok("logs", f"worker-{ids['actor_pid']}.out", "--tail", "1") or \
        ids["actor_pid"] == ids["task_pid"]

    bad = cli("logs", "../token")
    assert bad.returncode != 0 and "not a log file name" in bad.stderr

    # through the head's gRPC port, with the token from the environment
    token = (cli.base / "token").read_text().strip()
    remote_env = {**cli.env, "EMBER_TOKEN": token}
    addr = f"127.0.0.1:{port}"

    def remote(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ember_node.cli", "logs", "--address", addr, *args],
                              env=remote_env, capture_output=True, text=True, timeout=60)

    listing = remote()
    assert listing.returncode == 0, listing.stderr
    assert f"worker-{ids['actor_pid']}.out" in listing.stdout
    got = remote("--actor-id", ids["actor_id"][:12])
    assert got.returncode == 0 and "actor line" in got.stdout, got.stderr
    for evil in ("../token", "/etc/passwd", ".."):
        refused = remote(evil)
        assert refused.returncode == 1 and "not a log file name" in refused.stderr, refused.stderr
    wrong = subprocess.run([sys.executable, "-m", "ember_node.cli", "logs", "--address", addr],
                           env={**remote_env, "EMBER_TOKEN": "wrong"}, capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 1 and "refused the token" in wrong.stderr

    # --follow prints what the actor writes after it started
    follower = cli.procs.spawn([sys.executable, "-m", "ember_node.cli", "logs", "--address", addr,
                                "--actor-id", ids["actor_id"], "--follow", "--tail", "0"],
                               env=remote_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        os.set_blocking(follower.stdout.fileno(), False)
        seen = b""

        def followed() -> bool:
            nonlocal seen
            r2 = cli.driver('import ember\nember.init(address="auto", namespace="logs")\n'
                            'ember.get(ember.get_actor("talker").say.remote(), timeout=60)\n')
            assert r2.returncode == 0, r2.stderr
            seen += follower.stdout.read() or b""
            return b"actor line" in seen
        wait_until(followed, 60, interval=0.5)
    finally:
        follower.kill()
        follower.wait(10)
        follower.stdout.close()
        follower.stderr.close()


ON_NODE = r"""
import json, os
import ember

ember.init(address="auto", log_to_driver=False)


@ember.remote(resources={"node_a": 1})
def far():
    print("far line", flush=True)
    return ember.get_runtime_context().get_task_id(), os.getpid()


tid, pid = ember.get(far.remote(), timeout=90)
print(json.dumps({"task_id": tid, "pid": pid}))
"""


def test_logs_of_a_worker_node_and_of_a_job(cli):  # noqa: F811
    import json
    import re

    port, _ = cli.start_head()
    cli.ok("start", "--address", f"127.0.0.1:{port}", "--token-file", str(cli.base / "token"),
           "--num-cpus", "1", "--resources", json.dumps({"node_a": 1}), "--object-store-memory", str(40 << 20))
    cli.track_agents()
    r = cli.driver(ON_NODE, timeout=120)
    assert r.returncode == 0, r.stderr
    far = last_json(r)

    listing = cli.ok("logs")
    row = next(ln for ln in listing.splitlines() if f"worker-{far['pid']}.out" in ln)
    assert row.startswith("node-"), listing  # the worker node's own session
    out = ""

    def printed() -> bool:
        nonlocal out
        out = cli.ok("logs", "--task-id", far["task_id"], "--node", "node-")
        return "far line" in out
    wait_until(printed, 30)

    token = (cli.base / "token").read_text().strip()
    env = {**cli.env, "EMBER_TOKEN": token}
    remote = subprocess.run([sys.executable, "-m", "ember_node.cli", "logs", "--address", f"127.0.0.1:{port}",
                             "--task-id", far["task_id"]], env=env, capture_output=True, text=True, timeout=60)
    assert remote.returncode == 1 and "ran on node" in remote.stderr and str(far["pid"]) in remote.stderr, \
        remote.stderr

    sub = cli.ok("job", "submit", "--no-wait", "--", "echo", "job", "says", "hi")
    sid = re.search(r"job (\S+) submitted", sub).group(1)

    def job_logged() -> bool:
        return "job says hi\n" in cli.ok("logs", "--job", sid)
    wait_until(job_logged, 60, interval=0.5)
    via_head = subprocess.run([sys.executable, "-m", "ember_node.cli", "logs", "--address", f"127.0.0.1:{port}",
                               "--job", sid], env=env, capture_output=True, text=True, timeout=60)
    assert "job says hi\n" in via_head.stdout, via_head.stderr
    assert f"job-{sid}.log" in cli.ok("logs")
