"""Fixtures for the actor integration tests.

Every test here runs against a real embedded cluster (``ember.init()`` with no address): a
node agent and its workers started as child processes.

Cluster fixtures
----------------
``cluster``      module-scoped; ``ember.init(**CLUSTER_ARGS)`` where ``CLUSTER_ARGS`` is a
                 module-level dict of the test module (default ``{"num_cpus": 4}``).
``new_cluster``  function-scoped factory: ``new_cluster(num_cpus=2, ...)`` starts a cluster
                 for one test and shuts it down afterwards.
A module uses one or the other, never both (only one cluster can be connected at a time).

Shipping test code to workers
-----------------------------
Workers cannot import the test package, so every test module's functions and classes are
registered with ``cloudpickle.register_pickle_by_value``: actor classes and tasks can be
defined at module level and still travel by value.

Leak checks
-----------
After each test module, ``_no_orphans`` checks that no process started by this test session
survives (children of the pytest process, plus any process that inherited
``EMBER_TEST_SESSION_MARK``, which catches agents re-parented after a subprocess driver or
``ember start`` exited) and that no ``/dev/shm/ember*`` entry that our processes had
mapped or open before the shutdown, or that is named after the session directory of one of
the module's clusters, remains (other ember runs on the machine create such entries too, so
the other new entries are not counted). Survivors
are killed (so one leak does not cascade) and the module errors with the list.
"""

from __future__ import annotations

import os
import signal

import cloudpickle
import ember
import pytest

from .helpers import (
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


# /dev/shm/ember* entries that belong to clusters of the current module: entries named
# after their session directory, and entries our processes had mapped or open just before
# a shutdown. Only these are checked for leaks.
_SHM_PREFIXES: set[str] = set()
_SHM_SEEN: set[str] = set()


def _init(**kwargs):
    info = ember.init(**kwargs)
    try:
        session_dir = info["session_dir"]
    except (KeyError, TypeError):
        session_dir = None
    if session_dir:
        _SHM_PREFIXES.add(os.path.basename(str(session_dir).rstrip("/")) + "-")
    return info


def _ours(entries: set[str]) -> set[str]:
    return {n for n in entries if n in _SHM_SEEN or any(n.startswith(p) for p in _SHM_PREFIXES)}


def _shutdown_quietly() -> None:
    if ember.is_initialized():
        _SHM_SEEN.update(shm_used_by(session_processes()))
        ember.shutdown()


@pytest.fixture(scope="module", autouse=True)
def _by_value(request):
    """Pickle the test module's classes and functions by value (workers cannot import it)."""
    cloudpickle.register_pickle_by_value(request.module)
    yield
    cloudpickle.unregister_pickle_by_value(request.module)


@pytest.fixture(scope="module", autouse=True)
def _no_orphans(request):
    """After each module: no surviving session process, no new /dev/shm/ember* entry."""
    shm_before = ember_shm_entries()
    _SHM_PREFIXES.clear()
    _SHM_SEEN.clear()
    yield
    _shutdown_quietly()
    wait_until(lambda: not session_processes(), CLEANUP_GRACE_S, 0.1)
    survivors = session_processes()
    leaked_shm = wait_shm_gone(_ours(ember_shm_entries() - shm_before))
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
    _shutdown_quietly()
    _init(**kwargs)
    try:
        yield ember
    finally:
        _shutdown_quietly()


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
        _shutdown_quietly()


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
