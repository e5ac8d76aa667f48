"""A worker blocked in get/wait gives its CPU back, so nested tasks cannot deadlock,
even when the nesting is deeper than the cluster has CPUs."""

from __future__ import annotations

import ember

from .helpers import wait_until

CLUSTER_ARGS = {"num_cpus": 2}


def test_recursion_deeper_than_cpus(cluster):
    @ember.remote
    def depth(n):
        if n == 0:
            return 0
        return 1 + ember.get(depth.remote(n - 1))

    assert ember.get(depth.remote(6), timeout=60) == 6


def test_recursion_with_fan_out(cluster):
    @ember.remote
    def fib(n):
        if n < 2:
            return n
        return sum(ember.get([fib.remote(n - 1), fib.remote(n - 2)]))

    assert ember.get(fib.remote(6), timeout=90) == 8


def test_blocked_in_wait_releases_cpu(cluster):
    @ember.remote
    def child(x):
        return x * 2

    @ember.remote
    def parent(x):
        refs = [child.remote(x), child.remote(x + 1)]
        ready, _ = ember.wait(refs, num_returns=2, timeout=30)
        return sorted(ember.get(ready))

    # Both CPUs are taken by parents that wait on children.
    assert ember.get([parent.remote(1), parent.remote(10)], timeout=60) == [[2, 4], [20, 22]]


def test_cpus_are_returned_after_nested_work(cluster):
    @ember.remote
    def depth(n):
        if n == 0:
            return 0
        return 1 + ember.get(depth.remote(n - 1))

    assert ember.get([depth.remote(3) for _ in range(3)], timeout=60) == [3, 3, 3]

    def idle():
        return ember.available_resources().get("CPU", 0.0) == 2.0

    assert wait_until(idle, 20), f"after nested work: available={ember.available_resources()}"
