"""Scheduling on a real embedded cluster: free CPUs never idle while work waits behind a busy
worker, whatever ran before; nested tasks never deadlock; a cap on workers is an error that
names it. Concurrency is proven with barriers (every task waits until all of them started),
never with timings."""

from __future__ import annotations

import ember
import ember.exceptions as exc
import pytest

T = 60  # every get is bounded well below the pytest timeout


def _barrier_fn():
    @ember.remote
    def barrier(folder, i, n):
        import os
        import time

        open(os.path.join(folder, f"started-{i}"), "w").close()
        deadline = time.time() + 30
        while time.time() < deadline:
            if len([f for f in os.listdir(folder) if f.startswith("started-")]) >= n:
                return True
            time.sleep(0.01)
        return False

    return barrier


def _nap_fn():
    @ember.remote
    def nap(t):
        import time

        time.sleep(t)
        return t

    return nap


@pytest.mark.parametrize("warmup", [8, 500])
def test_parallel_work_after_a_short_warm_up_runs_on_every_cpu(new_cluster, tmp_path, warmup):
    """The issue's example: after short calls of the same function, 4 calls on 4 CPUs all
    run at once (each waits until all 4 started)."""
    new_cluster(num_cpus=4)
    nap = _nap_fn()
    assert ember.get([nap.remote(0) for _ in range(warmup)], timeout=T) == [0] * warmup
    barrier = _barrier_fn()
    assert ember.get([barrier.remote(str(tmp_path), i, 4) for i in range(4)], timeout=T) == [True] * 4


def test_short_tasks_never_wait_behind_a_long_one(new_cluster, tmp_path):
    """One long task holds a worker; hundreds of short ones of the same function finish
    while it still runs (none stays queued behind it: work stealing)."""
    new_cluster(num_cpus=2)

    @ember.remote
    def step(release: str | None):
        import os
        import time

        if release is None:
            return 0
        deadline = time.time() + 60
        while not os.path.exists(release) and time.time() < deadline:
            time.sleep(0.01)
        return 1

    release = str(tmp_path / "release")
    ember.get([step.remote(None) for _ in range(50)], timeout=T)  # warm: the function looks short
    long_ref = step.remote(release)
    shorts = [step.remote(None) for _ in range(300)]
    assert ember.get(shorts, timeout=T) == [0] * 300
    ready, _ = ember.wait([long_ref], timeout=0)
    assert not ready, "the long task ended before its release: the test proved nothing"
    open(release, "w").close()
    assert ember.get(long_ref, timeout=T) == 1


def test_tasks_run_beside_an_actor_holding_a_cpu(new_cluster, tmp_path):
    new_cluster(num_cpus=3)

    @ember.remote(num_cpus=1)
    class Busy:
        def hold(self, path):
            import os
            import time

            deadline = time.time() + 60
            while not os.path.exists(path) and time.time() < deadline:
                time.sleep(0.01)
            return True

    actor = Busy.remote()
    release = str(tmp_path / "release")
    held = actor.hold.remote(release)
    barrier = _barrier_fn()
    folder = tmp_path / "b"
    folder.mkdir()
    assert ember.get([barrier.remote(str(folder), i, 2) for i in range(2)], timeout=T) == [True, True]
    open(release, "w").close()
    assert ember.get(held, timeout=T) is True


def test_a_hundred_parents_each_waiting_on_a_child_complete(new_cluster):
    """Issue 11.5: ``parent(i)`` returns ``get(child.remote(i))`` for 100 parents on 2 CPUs."""
    new_cluster(num_cpus=2)

    @ember.remote
    def child(i):
        return i * 2

    @ember.remote
    def parent(i):
        return ember.get(child.remote(i))

    assert ember.get([parent.remote(i) for i in range(100)], timeout=120) == [i * 2 for i in range(100)]


def test_a_200_deep_recursion_completes(new_cluster):
    new_cluster(num_cpus=2)

    @ember.remote
    def depth(n):
        if n == 0:
            return 0
        return 1 + ember.get(depth.remote(n - 1))

    assert ember.get(depth.remote(200), timeout=120) == 200


def test_the_worker_cap_is_an_error_naming_the_setting(new_cluster, monkeypatch):
    """With EMBER_MAX_WORKERS_PER_NODE=4, a 10-deep chain of tasks waiting on each other
    cannot run: the innermost that cannot start fails with an error naming the setting,
    never a silent hang."""
    monkeypatch.setenv("EMBER_MAX_WORKERS_PER_NODE", "4")
    new_cluster(num_cpus=1)

    @ember.remote
    def depth(n):
        if n == 0:
            return 0
        return 1 + ember.get(depth.remote(n - 1))

    with pytest.raises(exc.RayError) as info:
        ember.get(depth.remote(10), timeout=T)
    assert "EMBER_MAX_WORKERS_PER_NODE" in str(info.value)
    assert ember.get(depth.remote(2), timeout=T) == 2, "the cluster did not recover"
