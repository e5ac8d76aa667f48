"""Fixtures shared by the integration suites that run embedded clusters (tests/core,
tests/actors): cluster fixtures and the leak check. A suite opts in to the leak check with
an autouse module fixture that requests ``ember_leak_check``.

Cluster fixtures
----------------
``cluster``      module-scoped; ``ember.init(**CLUSTER_ARGS)`` where ``CLUSTER_ARGS`` is a
                 module-level dict of the test module (default ``{"num_cpus": 4}``).
``new_cluster``  function-scoped factory: ``new_cluster(num_cpus=2, ...)`` starts a cluster
                 for one test and shuts it down afterwards.
A module uses one or the other, never both (only one cluster can be connected at a time).

Leak check
----------
After each module: no process started by this test session survives (children of pytest,
plus any process that inherited ``EMBER_TEST_SESSION_MARK``, which catches agents
re-parented after a subprocess driver or ``ember start`` exited), and no
``/dev/shm/ember*`` entry of ours remains: one named after the session directory of one of
the module's clusters, or that our processes had mapped or open before the shutdown (other
ember runs on the machine create such entries too, and are not counted). Survivors are
killed, so one leak does not cascade, and the module errors with the list.
"""

from __future__ import annotations

import os
import signal

import ember
import pytest
from ember_testkit import (
    CLEANUP_GRACE_S,
    describe,
    ember_shm_entries,
    kill_all,
    remove_shm,
    session_processes,
    shm_used_by,
    wait_shm_gone,
    wait_until,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ray_differs: ember deliberately differs from Ray here (the test fails when run "
        "against real Ray through a shim; the reason is in the test's docstring)",
    )


class _Ours:
    """The /dev/shm entries the current module's clusters made."""

    prefixes: set[str] = set()
    seen: set[str] = set()

    @classmethod
    def reset(cls) -> None:
        cls.prefixes.clear()
        cls.seen.clear()

    @classmethod
    def of(cls, entries: set[str]) -> set[str]:
        return {n for n in entries if n in cls.seen or any(n.startswith(p) for p in cls.prefixes)}


def _init(**kwargs):
    info = ember.init(**kwargs)
    try:
        session_dir = info["session_dir"]
    except (KeyError, TypeError):
        session_dir = None
    if session_dir:
        name = os.path.basename(str(session_dir).rstrip("/"))
        _Ours.prefixes.add(f"ember-{name.removeprefix('ember-')}-")
    return info


def shutdown_quietly() -> None:
    """Shut down this process's cluster, if any, noting the store entries it used."""
    if ember.is_initialized():
        _Ours.seen.update(shm_used_by(session_processes()))
        ember.shutdown()


@pytest.fixture(scope="module")
def ember_leak_check(request):
    """After the module: no surviving session process, no /dev/shm entry of ours."""
    shm_before = ember_shm_entries()
    _Ours.reset()
    yield
    shutdown_quietly()
    wait_until(lambda: not session_processes(), CLEANUP_GRACE_S, 0.1)
    survivors = session_processes()
    leaked_shm = wait_shm_gone(_Ours.of(ember_shm_entries() - shm_before))
    problems = []
    if survivors:
        problems.append(f"processes survived the module: {describe(survivors)}")
        kill_all(survivors)
    if leaked_shm:
        problems.append(f"/dev/shm entries survived the module: {sorted(leaked_shm)}")
        remove_shm(leaked_shm)
    if problems:
        pytest.fail(f"{request.module.__name__}: " + " | ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def cluster(request):
    """One embedded cluster shared by the tests of a module (``CLUSTER_ARGS``)."""
    kwargs = getattr(request.module, "CLUSTER_ARGS", {"num_cpus": 4})
    shutdown_quietly()
    _init(**kwargs)
    try:
        yield ember
    finally:
        shutdown_quietly()


@pytest.fixture
def new_cluster():
    """Factory for a cluster owned by one test: ``new_cluster(num_cpus=2)``."""

    def start(**kwargs):
        assert not ember.is_initialized(), "a cluster is already running in this process"
        _init(**kwargs)
        return ember

    try:
        yield start
    finally:
        shutdown_quietly()


@pytest.fixture
def kill_on_exit():
    """Pids that the test must not leave alive, whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
