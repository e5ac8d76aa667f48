"""Fixtures for the metrics tests: a real embedded cluster serving metrics on a free port."""

from __future__ import annotations

import time

import ember
import psutil
import pytest

from .helpers import free_port


def _children() -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        return []


@pytest.fixture(scope="module", autouse=True)
def _no_orphans():
    """After each module: the cluster is shut down and no child process survives."""
    yield
    if ember.is_initialized():
        ember.shutdown()
    deadline = time.monotonic() + 60
    while _children() and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = _children()
    for p in survivors:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not survivors, f"processes survived: {survivors}"


@pytest.fixture(scope="module")
def metrics_cluster():
    """``ember.init(num_cpus=2, metrics_port=<free port>)``; yields (port, node_id)."""
    if ember.is_initialized():
        ember.shutdown()
    port = free_port()
    info = ember.init(num_cpus=2, object_store_memory=200 << 20, metrics_port=port)
    try:
        yield port, info["node_id"]
    finally:
        ember.shutdown()
