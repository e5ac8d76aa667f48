"""Actor integration tests: every test runs against a real embedded cluster. The cluster
fixtures and the leak check are shared (tests/conftest.py).

Shipping test code to workers
-----------------------------
Workers cannot import the test package, so every test module's functions and classes are
registered with ``cloudpickle.register_pickle_by_value``: actor classes and tasks can be
defined at module level and still travel by value.
"""

from __future__ import annotations

import cloudpickle
import pytest


@pytest.fixture(scope="module", autouse=True)
def _by_value(request):
    """Pickle the test module's classes and functions by value (workers cannot import it)."""
    cloudpickle.register_pickle_by_value(request.module)
    yield
    cloudpickle.unregister_pickle_by_value(request.module)


@pytest.fixture(scope="module", autouse=True)
def _no_orphans(ember_leak_check):
    yield
