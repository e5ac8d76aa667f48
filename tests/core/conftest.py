"""Fixtures for the core runtime integration tests.

Every test here runs against a real embedded cluster (``ember.init()`` with no
address): a node agent and its workers started as child processes.

Cluster fixtures
----------------
``cluster``      module-scoped; ``ember.init(**CLUSTER_ARGS)`` where ``CLUSTER_ARGS`` is
                 a module-level dict of the test module (default ``{"num_cpus": 4}``).
``new_cluster``  function-scoped factory: ``new_cluster(num_cpus=2, ...)`` starts a
                 cluster for one test and shuts it down afterwards.
A module uses one or the other, never both (only one cluster can be connected at a time).

Leak checks
-----------
After each test module, ``_no_orphans`` checks that no process started by this
test session survives (children of the pytest process, plus any process that
inherited ``EMBER_TEST_SESSION_MARK`` from us, which catches agents re-parented
after a subprocess driver exited) and that no new ``/dev/shm/ember*`` entry
remains. Survivors are killed (so one leak does not cascade) and the module
errors with the list. The /dev/shm check compares with the entries present when
the module started, minus entries that a live process outside this session maps,
so a concurrent ember run on the same machine does not trip it (one that leaks
while this module runs still can).

Remote functions in these tests are defined inside the test functions so that
cloudpickle ships them by value: workers cannot import the test package.

Checking the tests against real Ray
-----------------------------------
In a separate venv with ray, numpy, psutil, pytest and pytest-timeout, put a
package ``ember`` on PYTHONPATH whose ``__init__.py`` does
``sys.modules["ember"] = ray; sys.modules["ember.exceptions"] = ray.exceptions``
and run ``pytest tests/core -k "not ray_differs"``. Tests marked ``ray_differs``
check where ember deliberately differs (process and /dev/shm names, infeasible
requests fail instead of hanging, ObjectStoreFullError instead of disk fallback,
cleanup after a killed driver, cancelling a task inside one long sleep); the shutdown and interpreter-exit
tests skip their /dev/shm checks there.
"""

from __future__ import annotations

import os
import signal

import ember
import pytest

from .helpers import (
    CLEANUP_GRACE_S,
    describe,
    ember_shm_entries,
    kill_all,
    remove_shm,
    session_processes,
    shm_mapped_by_others,
    wait_shm_gone,
    wait_until,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ray_differs: ember deliberately differs from Ray here (the test fails when run "
        "against real Ray through a shim; the reason is in the test's docstring)",
    )


def _shutdown_quietly() -> None:
    if ember.is_initialized():
        ember.shutdown()


@pytest.fixture(scope="module", autouse=True)
def _no_orphans(request):
    """After each module: no surviving session process, no new /dev/shm/ember* entry."""
    shm_before = ember_shm_entries()
    yield
    _shutdown_quietly()
    wait_until(lambda: not session_processes(), CLEANUP_GRACE_S, 0.1)
    survivors = session_processes()
    problems = []
    if survivors:
        problems.append(f"processes survived the module: {describe(survivors)}")
        kill_all(survivors)
    # Entries that a concurrent ember run (not ours) still maps are not our leak.
    new_shm = ember_shm_entries() - shm_before
    new_shm -= shm_mapped_by_others(p.pid for p in survivors)
    leaked_shm = wait_shm_gone(new_shm)
    leaked_shm -= shm_mapped_by_others(p.pid for p in survivors)
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
    ember.init(**kwargs)
    try:
        yield ember
    finally:
        ember.shutdown()


@pytest.fixture
def new_cluster():
    """Factory for a cluster owned by one test: ``new_cluster(num_cpus=2)``."""

    def start(**kwargs):
        assert not ember.is_initialized(), "a cluster is already running in this process"
        ember.init(**kwargs)
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
