"""Ray API breadth (issue 15): Ray programs run unchanged under ``ember run``, and ember's
``ember.util``, runtime context and actor extras behave as Ray documents them. Programs run
either as real ``ember run`` subprocesses (helpers.run_ray_program) or in-process against a
real embedded cluster (the shared fixtures of tests/conftest.py). Every module is under the
shared leak check."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _no_orphans(ember_leak_check):
    yield
