"""Core runtime integration tests: every test runs against a real embedded cluster
(``ember.init()`` with no address): a node agent and its workers started as child processes.
The cluster fixtures and the leak check are shared (tests/conftest.py).

Remote functions in these tests are defined inside the test functions so that cloudpickle
ships them by value: workers cannot import the test package.

Checking the tests against real Ray
-----------------------------------
In a separate venv with ray, numpy, psutil, pytest and pytest-timeout, put a package
``ember`` on PYTHONPATH whose ``__init__.py`` does ``sys.modules["ember"] = ray;
sys.modules["ember.exceptions"] = ray.exceptions`` and run
``pytest tests/core -k "not ray_differs"``. Tests marked ``ray_differs`` check where ember
deliberately differs (process and /dev/shm names, infeasible requests fail instead of
hanging, ObjectStoreFullError instead of disk fallback, cleanup after a killed driver,
cancelling a task inside one long sleep); the shutdown and interpreter-exit tests skip their
/dev/shm checks there.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _no_orphans(ember_leak_check):
    yield
