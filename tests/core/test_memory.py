"""Memory pressure must not kill the node agent (issue 11, part 6).

- Workers have ``oom_score_adj`` 1000, so the kernel's OOM killer takes them first; the agent
  and its zygote stay at 0 or below, and an agent started above 0 brings itself to 0.
- The memory monitor kills the newest retriable task's worker when the node's usage passes
  ``EMBER_MEMORY_USAGE_THRESHOLD``: the caller gets ``OutOfMemoryError`` (or the task is
  retried when it has retries left) and the agent lives. These tests point the monitor at a
  fake usage file (``EMBER_MEMORY_USAGE_FILE``, tests only: ``<used> <total> [pid]``, the
  reading holding while that pid lives), written by the task that "allocates", so what the
  monitor sees does not depend on the machine; the real-cgroup test is
  tests/core/test_memory_cgroup.py.
- Small values kept in the agent's memory have a bound
  (``EMBER_INLINE_OBJECTS_MAX_BYTES``); past it they go to the shared-memory store.
"""

from __future__ import annotations

import json
import os

import ember
import ember.exceptions as exc
import pytest

from .helpers import agent_processes, child_processes, cmdline, pid_alive, run_driver, wait_until

GiB = 1 << 30
MiB = 1 << 20


def _adj(pid: int) -> int:
    with open(f"/proc/{pid}/oom_score_adj") as f:
        return int(f.read())


def _adj_or_gone(pid: int) -> int | None:
    try:
        return _adj(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None


def _pressure_task():
    """A task that takes 32 MiB, then reports the node 97% full while it lives."""

    @ember.remote
    def hog(usage_file, attempts_file, pressure_attempts):
        import os
        import time

        with open(attempts_file, "a") as f:
            f.write(f"{os.getpid()}\n")
        with open(attempts_file) as f:
            attempt = len(f.read().splitlines())
        if attempt > pressure_attempts:
            return f"attempt {attempt} ran without pressure"
        data = b"x" * (32 << 20)
        used, total = int(0.97 * (8 << 30)), 8 << 30
        with open(usage_file + ".tmp", "w") as f:
            f.write(f"{used} {total} {os.getpid()}")
        os.replace(usage_file + ".tmp", usage_file)
        time.sleep(300)  # the monitor ends this
        return len(data)

    return hog


@pytest.fixture
def monitored(new_cluster, tmp_path, monkeypatch):
    """A 2-CPU cluster whose agent reads its memory usage from tmp_path/usage."""
    usage = tmp_path / "usage"
    monkeypatch.setenv("EMBER_MEMORY_USAGE_FILE", str(usage))
    monkeypatch.setenv("EMBER_MEMORY_MONITOR_REFRESH_MS", "50")
    monkeypatch.setenv("EMBER_MEMORY_USAGE_THRESHOLD", "0.9")
    new_cluster(num_cpus=2)
    return usage


def test_workers_first_agent_last_for_the_oom_killer(new_cluster):
    new_cluster(num_cpus=2)

    @ember.remote
    def my_adj():
        import os

        with open("/proc/self/oom_score_adj") as f:
            return os.getpid(), int(f.read())

    seen = dict(ember.get([my_adj.remote() for _ in range(6)], timeout=60))
    assert seen and set(seen.values()) == {1000}
    (agent,) = agent_processes()
    assert _adj(agent.pid) <= 0
    zygotes = [p for p in child_processes() if "--zygote" in cmdline(p) and p.ppid() == agent.pid]
    assert zygotes and all(_adj(z.pid) <= 0 for z in zygotes)
    workers = [p for p in child_processes() if p.ppid() in {z.pid for z in zygotes}]
    assert {p.pid for p in workers} >= set(seen)
    # a worker forked a moment ago may not have raised its own score yet: wait for that
    assert wait_until(lambda: all(_adj_or_gone(p.pid) in (1000, None) for p in workers), 60)
    assert _adj(os.getpid()) <= 0  # the driver is untouched


def test_agent_started_above_zero_lowers_itself(tmp_path):
    """A driver that runs at oom_score_adj 500 (say, started from a worker) starts an agent,
    which brings itself back to 0; its workers are at 1000."""
    result = run_driver(tmp_path, """
        import json, os
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("500")
        import ember
        ember.init(num_cpus=1)
        import psutil
        agent = [p for p in psutil.Process().children() if "ember_node" in " ".join(p.cmdline())][0]

        @ember.remote
        def adj():
            return int(open("/proc/self/oom_score_adj").read())

        out = {"driver": int(open("/proc/self/oom_score_adj").read()),
               "agent": int(open(f"/proc/{agent.pid}/oom_score_adj").read()),
               "worker": ember.get(adj.remote(), timeout=60)}
        ember.shutdown()
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out == {"driver": 500, "agent": 0, "worker": 1000}


def test_monitor_kills_the_newest_task_and_the_agent_lives(monitored, tmp_path):
    @ember.remote(max_retries=0)
    def steady(release_file, started_file):
        import os
        import time

        open(started_file, "w").close()
        while not os.path.exists(release_file):
            time.sleep(0.02)
        return "steady finished"

    (agent,) = agent_processes()
    release, started = tmp_path / "release", tmp_path / "steady-started"
    older = steady.remote(str(release), str(started))
    assert wait_until(started.exists, 60), "the first task never started"
    hog = _pressure_task()
    ref = hog.options(max_retries=0).remote(str(monitored), str(tmp_path / "attempts"), 99)
    with pytest.raises(exc.OutOfMemoryError) as info:
        ember.get(ref, timeout=60)
    msg = str(info.value)
    assert "hog" in msg and "killed by ember's memory monitor" in msg
    assert "7.8 GiB of 8.0 GiB (97%" in msg
    assert "EMBER_MEMORY_USAGE_THRESHOLD=0.9" in msg
    assert "max_retries=0" in msg
    # the older task was spared, the agent lives and keeps working
    release.touch()
    assert ember.get(older, timeout=60) == "steady finished"
    assert pid_alive(agent.pid)

    @ember.remote
    def ping(i):
        return i

    assert ember.get([ping.remote(i) for i in range(10)], timeout=60) == list(range(10))


def test_monitor_kill_retries_when_retries_remain(monitored, tmp_path):
    hog = _pressure_task()
    attempts = tmp_path / "attempts"
    ref = hog.options(max_retries=2).remote(str(monitored), str(attempts), 1)
    assert ember.get(ref, timeout=60) == "attempt 2 ran without pressure"
    assert len(attempts.read_text().split()) == 2


def test_small_objects_past_the_bound_go_to_the_store(new_cluster, monkeypatch):
    monkeypatch.setenv("EMBER_INLINE_OBJECTS_MAX_BYTES", str(1 * MiB))
    new_cluster(num_cpus=1)
    from ember import api

    refs = [ember.put(bytes([i % 256]) * (20 * 1024)) for i in range(200)]  # ~4 MiB of small values

    @ember.remote
    def total(*values):
        return sum(len(v) for v in values), sorted({v[0] for v in values})

    size, firsts = ember.get(total.remote(*refs), timeout=60)
    assert size == 200 * 20 * 1024 and firsts == list(range(200))
    stats = api._stats()
    assert stats["inline_limit"] == 1 * MiB
    assert 0 < stats["inline_bytes"] <= 1 * MiB
    assert stats["store_bytes"] >= 3 * MiB  # the rest went to the shared-memory store

    @ember.remote
    def small(i):
        return bytes([i]) * (20 * 1024)

    results = [small.remote(i) for i in range(100)]  # task results count against it too
    assert ember.get(results, timeout=60) == [bytes([i]) * (20 * 1024) for i in range(100)]
    assert api._stats()["inline_bytes"] <= 1 * MiB
    del refs, results
    assert wait_until(lambda: api._stats()["inline_bytes"] == 0, 30), api._stats()


def _rss_anon(pid: int) -> int:
    """Private memory of ``pid`` (its heap; shared memory such as the arena not counted)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no RssAnon in /proc/{pid}/status")


def test_agent_heap_stays_bounded_under_many_small_objects(new_cluster, monkeypatch):
    """The issue's case: a program keeps hundreds of MiB of small objects alive. The agent's
    own memory grows by about the bound, not by what the program put."""
    monkeypatch.setenv("EMBER_INLINE_OBJECTS_MAX_BYTES", str(8 * MiB))
    new_cluster(num_cpus=1, object_store_memory=512 * MiB)
    from ember import api

    (agent,) = agent_processes()
    before = _rss_anon(agent.pid)
    refs = [ember.put(os.urandom(50 * 1024)) for _ in range(4000)]  # 195 MiB of small values
    assert ember.get(refs[-1], timeout=60) is not None
    assert wait_until(lambda: api._stats()["objects"] >= 4000, 60)
    grown = _rss_anon(agent.pid) - before
    assert grown < 64 * MiB, f"the agent's heap grew by {grown / MiB:.0f} MiB for 195 MiB of small objects"
    assert api._stats()["inline_bytes"] <= 8 * MiB


def test_an_actor_is_killed_when_nothing_else_runs(monitored):
    @ember.remote(max_restarts=0)
    class Cache:
        def fill(self, usage_file):
            import os

            self.data = b"x" * (32 << 20)
            with open(usage_file + ".tmp", "w") as f:
                f.write(f"{int(0.97 * (8 << 30))} {8 << 30} {os.getpid()}")
            os.replace(usage_file + ".tmp", usage_file)
            return os.getpid()

    cache = Cache.remote()
    pid = ember.get(cache.fill.remote(str(monitored)), timeout=60)
    assert wait_until(lambda: not pid_alive(pid), 60), "the actor was not killed"
    with pytest.raises(exc.ActorDiedError) as info:
        ember.get(cache.fill.remote(str(monitored)), timeout=60)
    assert "killed by ember's memory monitor" in str(info.value)
    assert "(an idle actor)" in str(info.value)
