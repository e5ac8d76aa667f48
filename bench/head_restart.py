"""Time from a head agent's SIGKILL to a named detached actor answering again (issue 13).

Starts a head (``python -m ember_node --state-dir DIR``) and one worker node on loopback,
creates a detached named actor from a remote driver, SIGKILLs the head by PID, starts it again
at once with the same DIR and port, and times a fresh driver's first successful call to
``get_actor(name)``. Each round prints one line; the median is the figure.

    .venv/bin/python bench/head_restart.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

CREATE = """
import ember
ember.init({address!r}, token={token!r}, namespace="bench")

@ember.remote(max_restarts=-1)
class Counter:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self.n

c = Counter.options(name="c", lifetime="detached").remote()
assert ember.get(c.add.remote(1)) == 1
"""

CALL = """
import json, time, ember
while True:
    try:
        ember.init({address!r}, token={token!r}, namespace="bench")
        c = ember.get_actor("c")
        ember.get(c.add.remote(1), timeout=30)
        break
    except Exception:
        if ember.is_initialized():
            ember.shutdown()
        time.sleep(0.05)
print(json.dumps({{"answered": time.time()}}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(cmd: list[str], log: str) -> subprocess.Popen:
    rfd, wfd = os.pipe()
    with open(log, "ab") as f:
        proc = subprocess.Popen([*cmd, "--ready-fd", str(wfd)], pass_fds=(wfd,), stdout=f, stderr=f,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(wfd)
    with os.fdopen(rfd) as r:
        if not r.readline():
            raise SystemExit(f"{cmd[2]} did not start; see {log}")
    return proc


def _driver(script: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"driver failed:\n{out.stderr[-3000:]}")
    return out.stdout


def one_round(root: str) -> float:
    token_file = os.path.join(root, "token")
    token = uuid.uuid4().hex
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    state = os.path.join(root, "state")

    def head_cmd(n: int) -> list[str]:
        return [sys.executable, "-m", "ember_node", "--session-dir", os.path.join(root, f"s{n}"), "--num-cpus", "1",
                "--port", str(port), "--token-file", token_file, "--state-dir", state]

    procs = [_spawn(head_cmd(1), os.path.join(root, "head.log"))]
    try:
        procs.append(_spawn([sys.executable, "-m", "ember_node.worker_node", "--address", address,
                             "--token-file", token_file, "--session-dir", os.path.join(root, "n"),
                             "--num-cpus", "1"], os.path.join(root, "node.log")))
        _driver(CREATE.format(address=address, token=token))
        killed = time.time()
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait()
        procs[0] = _spawn(head_cmd(2), os.path.join(root, "head.log"))
        answered = json.loads(_driver(CALL.format(address=address, token=token)).splitlines()[-1])["answered"]
        return answered - killed
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    times = []
    for i in range(args.rounds):
        root = tempfile.mkdtemp(prefix="emb-hr-")
        try:
            t = one_round(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        times.append(t)
        print(f"round {i + 1}: head SIGKILL -> named actor answering again: {t:.2f} s", flush=True)
    print(json.dumps({"head_restart_to_actor_s_median": round(statistics.median(times), 2),
                      "rounds": [round(t, 2) for t in times]}))


if __name__ == "__main__":
    main()
