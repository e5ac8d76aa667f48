"""What tasks and actors print reaches the driver that submitted them (issue 10, part 0).

Drivers run as subprocesses so that their own stdout and stderr are what is checked. Each
one gets a private TMPDIR under pytest's (deep enough that the sockets go to the short
directory of ``ember._local_cluster.socket_dir``), so the session logs it keeps are its own.
"""

from __future__ import annotations

import json
import os
import re
import time

import ember
import pytest

from .helpers import run_driver

CLUSTER_ARGS = {"num_cpus": 2}

# Lines of every shape, among them ones the old zygote protocol on stdout would have read as
# its own reports ("P <wid> <pid>", "X <pid> <status>") or choked on ("loss is 0.5").
SHAPES = ["P 1 2", "X 3 4", "F 5", "P 1", "X 1 2 3", "loss is 0.5", "0", "42", "1 2 3", "",
          "   indented", "tab\there", "unicode \u2713 \u00e9", "{\"json\": [1, 2]}", "\x1b[31mred\x1b[0m",
          "(nap pid=1) a prefix of our own", "y" * 3000, "P 999999 999999"]

PRINTER = r"""
import json, os, sys
import ember

SHAPES = %(shapes)s
N = %(n)d
info = ember.init(num_cpus=2%(init)s)

@ember.remote
def shout(n):
    for i in range(n):
        print(f"#{i}" if i %% 2 == 0 else SHAPES[i %% len(SHAPES)])
    for i in range(100):
        print(f"err {i}", file=sys.stderr)
    os.write(1, b"straight to fd 1\n")
    return os.getpid()

@ember.remote
class Talker:
    def __init__(self):
        print("talker made")

    def say(self, what):
        print(f"talker says {what}")
        return os.getpid()

pid = ember.get(shout.remote(N))
ember.get(shout.remote(3))  # the agent survived all that: it still runs tasks
t = Talker.remote()
actor_pid = ember.get(t.say.remote("P 7 8"))
ember.shutdown()
print(json.dumps({"pid": pid, "actor_pid": actor_pid, "session_dir": info["session_dir"]}))
"""


def _driver(tmp_path, n=10_000, init=""):
    env_tmp = tmp_path / "t"
    env_tmp.mkdir()
    code = PRINTER % {"shapes": repr(SHAPES), "n": n, "init": init}
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(env_tmp)
    try:
        result = run_driver(tmp_path, code, timeout=120)
    finally:
        if old is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = old
    assert result.returncode == 0, result.stderr[-4000:]
    out_lines = result.stdout.splitlines()
    return json.loads(out_lines[-1]), out_lines[:-1], result.stderr.splitlines()


def _expected(n):
    return [f"#{i}" if i % 2 == 0 else SHAPES[i % len(SHAPES)] for i in range(n)]


def _from(lines, name, pid):
    prefix = f"({name} pid={pid}) "
    return [line[len(prefix):] for line in lines if line.startswith(prefix)]


def test_every_printed_line_reaches_the_driver_and_the_log_files_stay(tmp_path):
    info, out, err = _driver(tmp_path)
    pid = info["pid"]
    shout = _from(out, "shout", pid)
    expected = _expected(10_000)
    # both calls ran on the same worker or not: the first call's lines come first, in order
    assert shout[:10_000] == expected
    assert "straight to fd 1" in shout
    assert _from(err, "shout", pid)[:100] == [f"err {i}" for i in range(100)]
    talker = _from(out, "Talker", info["actor_pid"])
    assert talker == ["talker made", "talker says P 7 8"]
    # the files stay after shutdown, in the session's log directory
    logs = os.path.join(info["session_dir"], "logs")
    names = os.listdir(logs)
    assert f"worker-{pid}.out" in names and f"worker-{pid}.err" in names
    with open(os.path.join(logs, f"worker-{pid}.out"), errors="replace") as f:
        text = f.read()
    assert "#9998" in text and "loss is 0.5" in text
    assert not [n for n in os.listdir(info["session_dir"]) if n != "logs"]  # the rest is gone


def test_log_to_driver_false_prints_nothing(tmp_path):
    info, out, err = _driver(tmp_path, n=50, init=", log_to_driver=False")
    assert not [line for line in out + err if "pid=" in line], (out + err)[:20]
    with open(os.path.join(info["session_dir"], "logs", f"worker-{info['pid']}.out")) as f:
        assert "#48" in f.read()  # still in the file


def test_lines_arrive_while_the_task_runs(tmp_path, capsys):
    """Streamed as printed, not at the end: the line shows up while the task still waits."""
    go = tmp_path / "go"
    ember.init(num_cpus=1)
    try:
        @ember.remote
        def waiter(path):
            print("waiting for go")
            while not os.path.exists(path):
                time.sleep(0.05)
            return "went"

        ref = waiter.remote(str(go))
        seen = ""
        deadline = time.monotonic() + 60
        while "waiting for go" not in seen and time.monotonic() < deadline:
            seen += capsys.readouterr().out
            time.sleep(0.05)
        assert re.search(r"^\(waiter pid=\d+\) waiting for go$", seen, re.M), seen
        ready, _ = ember.wait([ref], timeout=0)
        assert not ready  # it was still running when its line arrived
        go.touch()
        assert ember.get(ref, timeout=60) == "went"
    finally:
        ember.shutdown()


def test_nested_tasks_print_to_the_driver_too(tmp_path, capsys):
    ember.init(num_cpus=2)
    try:
        @ember.remote
        def inner():
            print("from inner")
            return 1

        @ember.remote
        def outer():
            print("from outer")
            return ember.get(inner.remote())

        assert ember.get(outer.remote(), timeout=60) == 1
    finally:
        ember.shutdown()  # waits for the lines printed until now
    out = capsys.readouterr().out
    assert re.search(r"^\(outer pid=\d+\) from outer$", out, re.M), out
    assert re.search(r"^\(inner pid=\d+\) from inner$", out, re.M), out


@pytest.fixture(autouse=True)
def _not_connected():
    if ember.is_initialized():
        ember.shutdown()
    yield
