"""Cancelling a task while it talks to the agent (submitting nested tasks in a tight loop):
the cancel signal must never cut a message in half, and the task still ends cancelled."""

from __future__ import annotations

import time

import ember
import pytest
from ember import exceptions as exc

CLUSTER_ARGS = {"num_cpus": 2}


def test_cancel_a_task_that_keeps_submitting(cluster):
    @ember.remote
    def noop(i):
        return i

    @ember.remote
    def submitter():
        refs = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            refs.append(noop.remote(len(refs)))
            if len(refs) > 2000:
                refs = refs[-10:]
        return "not cancelled"

    for _ in range(3):  # the signal lands at a different point each time
        ref = submitter.remote()
        time.sleep(0.5)
        ember.cancel(ref)
        with pytest.raises(exc.TaskCancelledError):
            ember.get(ref, timeout=30)
    # the cluster is still healthy: the stream between the worker and the agent is whole
    assert ember.get([noop.remote(i) for i in range(100)], timeout=30) == list(range(100))
