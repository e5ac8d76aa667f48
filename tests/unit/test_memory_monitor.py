"""The memory monitor's pure parts: settings, whom it kills, and the checks it makes over
time with a fake usage reader and a recording kill (no processes)."""

from __future__ import annotations

import pytest
from ember_node.memory_monitor import (
    Candidate,
    MemoryMonitor,
    MonitorSettings,
    NodeView,
    choose_victim,
    decide,
    settings_from_env,
)
from ember_node.memory_usage import MemoryUsage

GiB = 1 << 30


def cand(name: str, *, retriable: bool = True, actor: bool = False, started: int = 0) -> Candidate:
    return Candidate(worker=name, pid=100 + started, task_name=name, retriable=retriable, actor=actor,
                     started=started)


def usage(fraction: float) -> MemoryUsage:
    return MemoryUsage(int(fraction * 4 * GiB), 4 * GiB, "cgroup /sys/fs/cgroup/test")


# ----------------------------------------------------------------------- settings


def test_settings_default_like_ray():
    s = settings_from_env({})
    assert s.threshold == 0.95 and s.refresh_s == 0.25 and s.enabled


def test_settings_from_ember_and_ray_names():
    assert settings_from_env({"EMBER_MEMORY_USAGE_THRESHOLD": "0.8"}).threshold == 0.8
    assert settings_from_env({"RAY_memory_usage_threshold": "0.7"}).threshold == 0.7
    both = {"EMBER_MEMORY_USAGE_THRESHOLD": "0.8", "RAY_memory_usage_threshold": "0.7"}
    assert settings_from_env(both).threshold == 0.8
    assert settings_from_env({"RAY_memory_monitor_refresh_ms": "100"}).refresh_s == 0.1


def test_refresh_zero_disables():
    s = settings_from_env({"EMBER_MEMORY_MONITOR_REFRESH_MS": "0"})
    assert not s.enabled
    m = MemoryMonitor(s, FakeReader(usage(1.0)), lambda w: None, clock=lambda: 0.0)
    assert not m.due(100.0)


@pytest.mark.parametrize("env, words", [
    ({"EMBER_MEMORY_USAGE_THRESHOLD": "lots"}, "EMBER_MEMORY_USAGE_THRESHOLD='lots' is not a number"),
    ({"EMBER_MEMORY_USAGE_THRESHOLD": "95"}, "at most 1"),
    ({"RAY_memory_usage_threshold": "0"}, "RAY_memory_usage_threshold=0"),
    ({"EMBER_MEMORY_MONITOR_REFRESH_MS": "-5"}, "0 (monitor off)"),
])
def test_bad_settings_name_the_variable(env, words):
    with pytest.raises(ValueError, match="must be|not a number") as info:
        settings_from_env(env)
    assert words in str(info.value)


# ----------------------------------------------------------------------- whom to kill


def test_newest_retriable_task_first():
    old, new = cand("old", started=1), cand("new", started=5)
    fixed = cand("fixed", retriable=False, started=9)
    assert choose_victim([old, fixed, new]) is new


def test_non_retriable_before_actors():
    task = cand("task", retriable=False, started=1)
    actor = cand("actor", actor=True, retriable=True, started=9)
    assert choose_victim([actor, task]) is task


def test_actors_last_newest_first():
    a1 = cand("a1", actor=True, started=1)
    a2 = cand("a2", actor=True, started=2)
    assert choose_victim([a1, a2]) is a2
    assert choose_victim([]) is None


def test_decide_below_threshold_kills_nobody():
    assert decide(usage(0.90), 0.95, [cand("t")], kill_pending=False) is None
    assert decide(None, 0.95, [cand("t")], kill_pending=False) is None


def test_decide_waits_for_pending_kill():
    assert decide(usage(0.99), 0.95, [cand("t")], kill_pending=True) is None


def test_decide_without_candidates():
    assert decide(usage(0.99), 0.95, [], kill_pending=False) is None


def test_decision_message_names_task_usage_and_setting():
    d = decide(usage(0.97), 0.95, [cand("mod.hog", started=3)], kill_pending=False)
    assert d is not None and d.victim.task_name == "mod.hog"
    msg = d.message
    assert "task mod.hog (worker pid 103)" in msg
    assert "3.9 GiB of 4.0 GiB (97%, from cgroup /sys/fs/cgroup/test)" in msg
    assert "EMBER_MEMORY_USAGE_THRESHOLD=0.95" in msg
    assert "EMBER_MEMORY_MONITOR_REFRESH_MS=0" in msg


# ----------------------------------------------------------------------- the monitor over time


class FakeReader:
    def __init__(self, reading: MemoryUsage | None) -> None:
        self.reading = reading

    def read(self) -> MemoryUsage | None:
        return self.reading


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(worker: str, task: str, started: float = 0.0) -> Candidate:
    return Candidate(worker, 1, task, True, False, started)


def view(reading: MemoryUsage | None, *cands: Candidate, node: str = "head") -> NodeView:
    return NodeView(node, reading, list(cands))


def monitor(killed: list, clock: Clock, reading: MemoryUsage | None = None) -> MemoryMonitor:
    return MemoryMonitor(MonitorSettings(0.95, 0.25), FakeReader(reading), killed.append, clock)


def test_monitor_kills_only_over_the_threshold():
    killed: list[str] = []
    clock = Clock()
    m = monitor(killed, clock)
    assert m.tick([view(usage(0.5), run("w1", "a", 1.0), run("w2", "b", 2.0))]) == []
    clock.now = 3
    (d,) = m.tick([view(usage(0.96), run("w1", "c", 2.5), run("w2", "b", 2.0))])
    assert d.victim.task_name == "c"
    assert killed == ["w1"]
    assert m.kill_cause("w1") == d.message
    assert m.kill_cause("w1") is None  # told once


def test_monitor_kills_one_at_a_time_per_node():
    killed: list[str] = []
    clock = Clock()
    m = monitor(killed, clock)
    high = usage(0.99)
    m.tick([view(high, run("w1", "a", 1), run("w2", "b", 2))])
    assert killed == ["w2"]
    clock.now = 1
    # the victim is still listed (not gone yet): nobody else is killed
    m.tick([view(high, run("w1", "a", 1), run("w2", "b", 2))])
    assert killed == ["w2"]
    clock.now = 2
    # gone, and memory still high: the next one goes
    m.tick([view(high, run("w1", "a", 1))])
    assert killed == ["w2", "w1"]


def test_monitor_nodes_are_independent():
    killed: list[str] = []
    clock = Clock()
    m = monitor(killed, clock)
    m.tick([view(usage(0.99), run("h1", "a", 1), run("h2", "b", 2)),
            view(usage(0.97), run("n1", "c", 1), node="node-a"),
            view(usage(0.50), run("m1", "d", 3), node="node-b")])
    assert killed == ["h2", "n1"]


def test_monitor_stops_waiting_for_a_kill_that_never_lands():
    killed: list[str] = []
    clock = Clock()
    m = monitor(killed, clock)
    m.tick([view(usage(0.99), run("w1", "a"))])
    clock.now = 5
    m.tick([view(usage(0.99), run("w1", "a"))])
    assert killed == ["w1"]
    clock.now = 11
    m.tick([view(usage(0.99), run("w1", "a"))])
    assert killed == ["w1", "w1"]


def test_monitor_due_after_refresh():
    clock = Clock()
    m = monitor([], clock)
    assert m.due(0.0)
    m.tick([])
    assert not m.due(0.2)
    assert m.due(0.25)


def test_worker_node_reports_go_stale():
    clock = Clock()
    m = monitor([], clock, reading=usage(0.3))
    assert m.read_local() == usage(0.3) and m.last_usage == usage(0.3)
    assert m.reported("node-a") is None
    m.note_report("node-a", usage(0.97))
    clock.now = 4.9
    assert m.reported("node-a") == usage(0.97)
    clock.now = 5.1
    assert m.reported("node-a") is None  # older than REPORT_STALE_S: not acted on
    m.note_report("node-a", usage(0.97))
    m.forget("node-a")
    assert m.reported("node-a") is None


def test_over_the_threshold_with_nothing_to_kill_warns_now_and_then(caplog):
    clock = Clock()
    m = monitor([], clock)
    with caplog.at_level("WARNING", logger="ember.memory"):
        m.tick([view(usage(0.99))])
        clock.now = 10
        m.tick([view(usage(0.99))])
        assert len(caplog.records) == 1
        assert "no task or actor runs there to kill" in caplog.records[0].getMessage()
        clock.now = 31
        m.tick([view(usage(0.99))])
    assert len(caplog.records) == 2
