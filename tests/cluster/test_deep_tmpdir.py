"""A very deep TMPDIR (issue 10, part 5): ``init()``, ``ember start``, a driver joining with
``address="auto"``, and ``ember stop`` all work, although ember's state directory is far
deeper than a Unix socket path's 107 bytes allow."""

from __future__ import annotations

import shutil

import pytest

from .helpers import last_json, short_tmpdir
from .test_cli import Cli

DRIVER = r"""
import json
import ember

ember.init(%s)

@ember.remote
def square(x):
    return x * x

print(json.dumps(ember.get([square.remote(i) for i in range(4)], timeout=60)))
"""


@pytest.fixture
def deep_cli(procs):
    top = short_tmpdir()
    root = top.joinpath(*(["deep" * 8] * 5))  # ~170 bytes before ember adds its own
    root.mkdir(parents=True)
    c = Cli(procs, root)
    yield c
    c.track_agents()
    try:
        c("stop", timeout=30)
    except Exception:  # noqa: BLE001 - cleanup by pid below anyway
        pass
    procs.cleanup()
    shutil.rmtree(top, ignore_errors=True)


def test_start_auto_and_stop_under_a_deep_tmpdir(deep_cli):
    assert len(str(deep_cli.root)) > 150
    deep_cli.start_head()
    assert last_json(deep_cli.driver(DRIVER % 'address="auto"')) == [0, 1, 4, 9]
    deep_cli.ok("stop")
    assert not [r for r in deep_cli.track_agents()]


def test_embedded_init_under_a_deep_tmpdir(deep_cli):
    assert last_json(deep_cli.driver(DRIVER % "num_cpus=1")) == [0, 1, 4, 9]
