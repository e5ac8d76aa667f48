"""``@remote(max_calls=N)`` as Ray documents it: a worker process runs the function at most N
times and then exits, and a fresh worker runs the next calls; 0 (the default for tasks that
use no GPU) means no limit, a task given GPUs defaults to 1. Seen through worker pids."""

from __future__ import annotations

import collections
import os

import ember
import pytest
from ember_testkit import pid_alive, wait_until

CLUSTER_ARGS = {"num_cpus": 2, "num_gpus": 1}


def test_a_worker_runs_the_function_at_most_max_calls_times(cluster):
    @ember.remote(max_calls=2)
    def pid():
        return os.getpid()

    pids = [ember.get(pid.remote(), timeout=60) for _ in range(6)]
    per_pid = collections.Counter(pids)
    assert max(per_pid.values()) <= 2 and len(per_pid) >= 3, per_pid
    # a worker that reached the limit exits (a clean exit, not a crash)
    for p, n in per_pid.items():
        if n == 2:
            assert wait_until(lambda p=p: not pid_alive(p), 60), f"worker {p} is still alive"


def test_tasks_queued_behind_a_retiring_worker_all_run(cluster):
    @ember.remote(max_calls=1, max_retries=0)
    def pid(i):
        return i, os.getpid()

    results = ember.get([pid.remote(i) for i in range(16)], timeout=120)
    assert [i for i, _ in results] == list(range(16))
    assert len({p for _, p in results}) == 16  # each call had a process of its own


def test_no_limit_by_default_and_options_set_one(cluster):
    @ember.remote
    def pid():
        return os.getpid()

    plain = [ember.get(pid.remote(), timeout=60) for _ in range(8)]
    assert len(set(plain)) < 8  # workers are reused
    limited = [ember.get(pid.options(max_calls=1).remote(), timeout=60) for _ in range(4)]
    assert len(set(limited)) == 4
    again = [ember.get(pid.remote(), timeout=60) for _ in range(8)]
    assert len(set(again)) < 8  # the limit was for those calls only


def test_the_last_call_counts_even_when_it_raises(cluster):
    @ember.remote(max_calls=1, max_retries=0)
    def fail():
        raise ValueError(str(os.getpid()))

    seen = set()
    for _ in range(3):
        with pytest.raises(ValueError) as info:
            ember.get(fail.remote(), timeout=60)
        seen.add(str(info.value).strip().splitlines()[-1])
    assert len(seen) == 3


def test_gpu_tasks_default_to_one_call_per_process(cluster):
    @ember.remote(num_gpus=1)
    def gpu_pid():
        return os.getpid()

    pids = [ember.get(gpu_pid.remote(), timeout=60) for _ in range(3)]
    assert len(set(pids)) == 3
    reuse = [ember.get(gpu_pid.options(max_calls=0).remote(), timeout=60) for _ in range(4)]
    assert len(set(reuse)) < 4  # max_calls=0 lifts the default


def test_bad_max_calls_is_refused_at_definition():
    with pytest.raises(ValueError, match="max_calls must be a non-negative integer"):
        ember.remote(max_calls=-1)(lambda: None)
    with pytest.raises(ValueError, match="max_calls must be a non-negative integer"):
        ember.remote(max_calls="2")(lambda: None)
