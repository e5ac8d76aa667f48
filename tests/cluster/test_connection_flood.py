"""Issue 11, part 2: a flood of connections leaves a working cluster.

The head runs with a small open-file limit (soft = hard = 256, set in the child before
exec, so it cannot raise it) and gets 20,000 plain TCP connection attempts on its gRPC port
in waves of 1,000 held open at once (more than its descriptors): a local client is served
during the last wave, and afterwards a remote driver runs a task. A second head started with
a low soft limit shows the agent raises it to the hard limit.
"""

from __future__ import annotations

import errno
import resource
import socket
import time

import psutil
import pytest

from .helpers import last_json, query, run_driver, start_head

LIMIT = 256
ATTEMPTS = 20_000
WAVE = 1_000


def _limit(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


@pytest.fixture
def own_fds():
    """This process may need a few thousand descriptors for the waves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < WAVE + 200:
        pytest.skip(f"the test needs {WAVE + 200} open files, the hard limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _wave(port: int, n: int) -> tuple[list[socket.socket], int]:
    """Start ``n`` non-blocking connects to ``port``; (the sockets, how many were refused at once)."""
    socks, refused = [], 0
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err in (0, errno.EINPROGRESS, errno.EAGAIN):
            socks.append(s)
        else:
            refused += 1
            s.close()
    return socks, refused


def _close(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def test_a_connection_flood_on_an_fd_limited_head_leaves_a_working_cluster(procs, tmp_short, own_fds):
    head = start_head(procs, tmp_short, num_cpus=1, store_bytes=64 << 20,
                      env={"EMBER_GRPC_HANDSHAKE_TIMEOUT_MS": "2000"}, preexec_fn=_limit(LIMIT, LIMIT))
    assert psutil.Process(head.proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (LIMIT, LIMIT)
    started = time.monotonic()
    attempts = 0
    held: list[socket.socket] = []
    try:
        while attempts < ATTEMPTS:
            _close(held)
            held, _ = _wave(head.port, WAVE)
            attempts += WAVE
            time.sleep(0.05)  # let the agent accept (and shed) what it can
        # the last wave is still open: more connections than the agent has descriptors
        assert head.proc.poll() is None, head.log.read_text()[-3000:]
        nodes, = query(head, ("nodes", None))  # the local socket is still served
        assert nodes and nodes[0]["Alive"]
    finally:
        _close(held)
    flood_s = time.monotonic() - started
    assert head.proc.poll() is None, f"the head died under the flood:\n{head.log.read_text()[-3000:]}"
    script = f"""
        import json, ember
        ember.init({head.address!r}, token={head.token!r})

        @ember.remote
        def square(x):
            return x * x

        print(json.dumps(ember.get([square.remote(i) for i in range(4)])))
        ember.shutdown()
    """
    assert last_json(run_driver(procs, script, timeout=90)) == [0, 1, 4, 9]
    print(f"{attempts} connection attempts in {flood_s:.1f} s; head fd limit {LIMIT}")


def test_the_agent_raises_its_soft_open_file_limit_to_the_hard_limit(procs, tmp_short):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= LIMIT:
        pytest.skip(f"needs a finite hard open-file limit above {LIMIT} (it is {hard})")
    head = start_head(procs, tmp_short, num_cpus=1, store_bytes=64 << 20, preexec_fn=_limit(LIMIT, hard))
    assert psutil.Process(head.proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (hard, hard)
    assert f"raised the open-file limit from {LIMIT} to {hard}" in head.log.read_text()


def _closed_by_peer(sock: socket.socket, timeout: float) -> bytes | None:
    """Read until the peer closes (the bytes it sent), or None if it is still open after ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return data
    return None


def test_silent_connections_are_capped_and_time_out(procs, tmp_short):
    """Connections that never say HELLO (local socket) or never finish the HTTP/2 handshake
    (gRPC port) are closed: the oldest when too many wait, all after the timeout."""
    from ember import _messages as M
    from ember._wire import FrameReader

    head = start_head(procs, tmp_short, num_cpus=1, store_bytes=64 << 20,
                      env={"EMBER_GRPC_HANDSHAKE_TIMEOUT_MS": "1500", "EMBER_HELLO_TIMEOUT_S": "1.5",
                           "EMBER_MAX_UNGREETED": "8"})
    local = [socket.socket(socket.AF_UNIX) for _ in range(12)]
    tcp = socket.create_connection(("127.0.0.1", head.port), timeout=10)
    try:
        for s in local:
            s.connect(head.info["socket"])
        # the 4 oldest go at once to make room (their GOODBYE says why); the rest after 1.5 s
        first = _closed_by_peer(local[0], 30)
        assert first is not None, "the oldest silent connection was not closed"
        reason = FrameReader().feed(first)
        assert reason and reason[0][0] == M.GOODBYE and "waiting to say HELLO" in reason[0][1]
        last = _closed_by_peer(local[-1], 30)
        assert last is not None, "a silent connection was not closed after EMBER_HELLO_TIMEOUT_S"
        assert "no HELLO within" in FrameReader().feed(last)[0][1]
        assert _closed_by_peer(tcp, 30) is not None, "gRPC kept a connection that never did its handshake"
    finally:
        for s in local:
            s.close()
        tcp.close()
    nodes, = query(head, ("nodes", None))
    assert nodes[0]["Alive"]
