"""Fixtures for the multi-node cluster tests (issue 4): real agents on loopback.

``procs``          function-scoped ``helpers.Procs``: whatever a test starts is stopped by pid
                   afterwards (SIGTERM, then SIGKILL, descendants included).
``module_procs``   the same for module-scoped clusters.
``three_nodes``    module-scoped: a head (1 CPU) and worker nodes ``a`` and ``b`` (2 CPUs each,
                   custom resources ``node_a`` / ``node_b``), started directly (no CLI records).
``connect``        function-scoped factory: ``connect(head)`` connects this process as a remote
                   driver (``ember.init("host:port", token=...)``); disconnected afterwards.
``netns``          function-scoped: a network namespace joined to this one by a veth pair,
                   ``(namespace, host_ip, ns_ip)``; skipped with the reason when not root.
``dash``           module-scoped: a head serving the dashboard under a workload (dashboard_cluster).
``forwarder``      function-scoped factory: ``forwarder(("127.0.0.1", port))`` -> a running
                   ``helpers.Forwarder`` (closed afterwards).

After each module, ``_no_survivors`` checks that no process carrying this run's mark
(``EMBER_CLUSTER_TEST_MARK``, inherited by agents, zygotes, workers and drivers) is alive;
survivors are killed by pid and the module errors with the list.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid

import ember
import psutil
import pytest

from .dashboard_cluster import dash  # noqa: F401 - the dashboard tests' module fixture
from .helpers import (
    Forwarder,
    Procs,
    marked_pids,
    short_tmpdir,
    start_head,
    start_worker_node,
    wait_cluster,
    wait_until,
)


def _describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:150]}")
        except psutil.Error:
            out.append(f"{pid}: (gone)")
    return "; ".join(out)


@pytest.fixture(scope="module", autouse=True)
def _no_survivors(request):
    yield
    if ember.is_initialized():
        ember.shutdown()
    wait_until(lambda: not marked_pids(), 10, 0.1)
    survivors = marked_pids()
    if survivors:
        desc = _describe(survivors)
        for pid in survivors:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        pytest.fail(f"{request.module.__name__}: processes survived the module: {desc}", pytrace=False)


def finish(p: Procs) -> None:
    """Stop what ``p`` started; fail when something needed SIGKILL or left shared memory."""
    p.cleanup()
    stubborn = p.stubborn
    leaked = p.leaked_arenas()
    problems = []
    if stubborn:
        problems.append(f"needed SIGKILL after SIGTERM and 8 s: {stubborn}")
    if leaked:
        problems.append(f"shared memory left in /dev/shm after the head stopped: {leaked}")
    if problems:
        pytest.fail("cleanup: " + " | ".join(problems), pytrace=False)


@pytest.fixture
def procs():
    p = Procs()
    yield p
    finish(p)


@pytest.fixture(scope="module")
def module_procs():
    p = Procs()
    yield p
    finish(p)


@pytest.fixture
def tmp_short(procs):
    """A short private directory, removed after what the test started has stopped."""
    path = short_tmpdir()
    yield path
    procs.cleanup()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def three_nodes(module_procs):
    """head (1 CPU) + node a (2 CPUs, node_a) + node b (2 CPUs, node_b); 1 GiB store on the head."""
    root = short_tmpdir()
    head = start_head(module_procs, root, num_cpus=1, store_bytes=1024 << 20)
    a = start_worker_node(module_procs, head, root, "a", num_cpus=2, resources={"node_a": 1})
    b = start_worker_node(module_procs, head, root, "b", num_cpus=2, resources={"node_b": 1})
    wait_cluster(head, alive_nodes=3, idle_workers=5)
    yield head, a, b
    module_procs.cleanup()  # module_procs' own teardown reports what needed SIGKILL
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def connect():
    def _connect(head, token=None):
        assert not ember.is_initialized()
        ember.init(head.address, token=token or head.token)

    yield _connect
    if ember.is_initialized():
        ember.shutdown()


@pytest.fixture
def forwarder():
    started: list[Forwarder] = []

    def _start(target):
        fwd = Forwarder(target)
        started.append(fwd)
        return fwd

    yield _start
    for fwd in started:
        fwd.close()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


@pytest.fixture
def netns():
    """A network namespace joined to this one by a veth pair: (namespace, host_ip, ns_ip)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace and a veth pair")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"embt-{tag}", f"ebh{tag}", f"ebn{tag}"
    in_use = _ip("-4", "route", "show", check=False).stdout + _ip("-4", "addr", "show", check=False).stdout
    free = [n for n in random.sample(range(1, 251), 250) if f"10.213.{n}." not in in_use]
    if not free:
        pytest.skip("no free 10.213.x.0/30 subnet for the veth pair")
    host_ip, ns_ip = f"10.213.{free[0]}.1", f"10.213.{free[0]}.2"
    made = _ip("netns", "add", ns, check=False)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` failed: {made.stderr.strip()}")
    try:
        try:
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", ns_if, "netns", ns)
            _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
            _ip("-n", ns, "link", "set", ns_if, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot set up a veth pair into the namespace: {exc.cmd}: {exc.stderr.strip()}")
        yield ns, host_ip, ns_ip
    finally:
        pids = _ip("netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", ns, check=False)
        _ip("link", "del", host_if, check=False)  # normally gone with the namespace
        leftover = _ip("netns", "list", check=False).stdout
        assert ns not in leftover, f"network namespace {ns} was not deleted"
