"""The worker pool grows for tasks blocked in get (nested tasks) and shrinks back to one
worker per CPU once the extra workers have idled (real agent, zygote and workers)."""

from __future__ import annotations

import os

import ember
import pytest

from .helpers import wait_until, worker_processes


def _workers() -> list[int]:
    """Pids of worker processes: the children of the zygote (which share its command line)."""
    procs = worker_processes()
    pids = {p.pid for p in procs}
    return [p.pid for p in procs if p.ppid() in pids]


@pytest.fixture
def quick_retire(monkeypatch):
    monkeypatch.setenv("EMBER_IDLE_WORKER_RETIRE_S", "1")  # inherited by the agent


def test_extra_workers_retire_after_idling(new_cluster, quick_retire):
    new_cluster(num_cpus=2)

    @ember.remote
    def depth(n):
        if n == 0:
            return os.getpid()
        return ember.get(depth.remote(n - 1))

    ember.get(depth.remote(5), timeout=60)  # six tasks blocked in a chain: six workers at least
    assert len(_workers()) >= 6

    def back_to_two() -> bool:
        return len(_workers()) == 2

    assert wait_until(back_to_two, 20), _workers()

    @ember.remote
    def still_works(x):
        return x * 2

    assert ember.get([still_works.remote(i) for i in range(20)], timeout=60) == [i * 2 for i in range(20)]
    assert ember.api._stats()["workers"] == 2
