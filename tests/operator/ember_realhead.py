"""A real ember head with one worker node, for operator tests that ask a head over gRPC.

The head listens on a free loopback port and checks ``token``; the worker node advertises
``pod`` as its node name (as a pod's agent does) and carries the resource ``on_pod``. Both
are ended, by PID, when the context exits, and their session directories are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator


def start_agent(args: list[str]) -> subprocess.Popen:
    """``python -m *args``, returned once the agent reports ready on its ready fd."""
    rfd, wfd = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", *args, "--ready-fd", str(wfd)], pass_fds=(wfd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        assert json.loads(f.readline())
    return proc


@contextlib.contextmanager
def head_with_worker(token: str, pod: str, prefix: str) -> Iterator[str]:
    """Start the head and the worker node advertising ``pod``; yields the head's address."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(token)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    procs = []
    try:
        procs.append(start_agent(["ember_node", "--session-dir", os.path.join(tmp, "head"), "--num-cpus", "1",
                                  "--port", str(port), "--token-file", token_file]))
        procs.append(start_agent(["ember_node.worker_node", "--address", address, "--token-file", token_file,
                                  "--session-dir", os.path.join(tmp, "node"), "--num-cpus", "1",
                                  "--resources", '{"on_pod": 1}', "--advertise", pod]))
        yield address
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
