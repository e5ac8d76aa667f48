"""The head's bounded task/actor history and the pure state-query helpers (no processes)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ember._serialization import pickle_strings, serialize
from ember._state_query import check_filters, chrome_trace, matches, parse_filter, select, summarize
from ember.exceptions import RayTaskError
from ember_node.history import DEFAULT_HISTORY, History, error_message, limits_from_env, short_error


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _task(i: int, *, worker=True, extra=None, started=1.0):
    node = SimpleNamespace(node_id="n" * 32)
    w = SimpleNamespace(pid=4000 + i % 2, node=node) if worker else None
    return SimpleNamespace(tid=i.to_bytes(16, "big"), name=f"f{i % 3}", extra=extra, started_at=started,
                           worker=w, attempt=0)


def _history(**kw) -> tuple[History, FakeClock]:
    clock = FakeClock()
    return History(clock=clock, wall=lambda: 1_000_100.0, **kw), clock


def test_history_keeps_only_the_newest_entries_up_to_its_bound():
    h, clock = _history(max_tasks=3, max_actors=2)
    for i in range(10):
        clock.now += 1
        h.task_ended(_task(i))
    rows = h.task_rows()
    assert [r["task_id"] for r in rows] == [i.to_bytes(16, "big").hex() for i in (7, 8, 9)]
    for i in range(5):
        h.actor_died(SimpleNamespace(aid=bytes([i]) * 18, class_name="A", key=None, worker=None,
                                     restarts=i, death_cause=ValueError(f"gone {i}")))
    assert [r["death_cause"] for r in h.actor_rows()] == ["gone 3", "gone 4"]


def test_task_rows_carry_state_times_node_pid_and_the_error_text():
    h, clock = _history()
    clock.now = 102.5
    h.task_ended(_task(1, started=100.0))
    try:
        raise ValueError("boom")
    except ValueError as exc:
        blob = serialize(RayTaskError("g", "Traceback...\nValueError: boom", exc, 1)).to_bytes()
    h.task_ended(_task(2, extra=("call", b"x"), started=101.0), blob)
    h.task_ended(_task(3, worker=False, started=0.0), serialize(RuntimeError("never ran")).to_bytes())
    ok, failed, unrun = h.task_rows()
    assert ok["state"] == "FINISHED" and ok["type"] == "NORMAL_TASK"
    assert ok["duration_s"] == pytest.approx(2.5)
    # wall clock: offset 1_000_100 - 100 = 1_000_000 s
    assert ok["start_time_ms"] == pytest.approx((1_000_000 + 100.0) * 1000)
    assert ok["node_id"] == "n" * 32 and ok["worker_pid"] == 4001 and ok["error"] == ""
    assert failed["state"] == "FAILED" and failed["type"] == "ACTOR_TASK"
    assert failed["error"] == "ValueError: boom" and "Traceback" in failed["error_message"]
    assert unrun["start_time_ms"] is None and unrun["duration_s"] is None
    assert unrun["worker_pid"] is None and unrun["error"] == "never ran"


def test_zero_bound_keeps_nothing():
    h, _ = _history(max_tasks=0)
    h.task_ended(_task(1))
    assert h.task_rows() == []


def test_limits_from_env():
    assert limits_from_env({}) == (DEFAULT_HISTORY, DEFAULT_HISTORY)
    assert limits_from_env({"EMBER_TASK_HISTORY": "5", "EMBER_ACTOR_HISTORY": " 0 "}) == (5, 0)
    with pytest.raises(ValueError, match="EMBER_TASK_HISTORY='lots' is not a whole number"):
        limits_from_env({"EMBER_TASK_HISTORY": "lots"})
    with pytest.raises(ValueError, match="negative"):
        limits_from_env({"EMBER_ACTOR_HISTORY": "-1"})


def test_error_text_is_read_without_unpickling():
    class Boom(Exception):
        def __reduce__(self):  # would run code if loaded
            raise AssertionError("unpickled")

    blob = serialize(ValueError("plain message")).to_bytes()
    assert error_message(blob) == "plain message"
    assert "plain message" in pickle_strings(blob[:len(blob) - 3])  # cut short: what was read
    assert pickle_strings(b"not a value") == [] and error_message(None) == ""
    assert short_error("Traceback\n  x\nKeyError: 'k'\n\n") == "KeyError: 'k'"


def test_filters_parse_and_match():
    assert parse_filter("state=RUNNING") == ("state", "=", "RUNNING")
    assert parse_filter("name!=f") == ("name", "!=", "f")
    with pytest.raises(ValueError, match="key=value"):
        parse_filter("state")
    with pytest.raises(ValueError, match="'=' or '!='"):
        check_filters([("state", ">", 1)])
    assert check_filters(["worker_pid=12", ("attempt", "!=", 0)]) == [
        ("worker_pid", "=", "12"), ("attempt", "!=", "0")]
    row = {"state": "FINISHED", "worker_pid": 12, "name": "f"}
    assert matches(row, [("state", "=", "finished"), ("worker_pid", "=", "12")])
    assert not matches(row, [("name", "!=", "f")])
    assert matches(row, [("node_id", "=", "")])  # absent compares as empty


def test_select_limits_and_counts():
    rows = [{"state": "FINISHED" if i % 2 else "FAILED", "i": i} for i in range(10)]
    picked, total = select(rows, [("state", "=", "FAILED")], 2)
    assert [r["i"] for r in picked] == [0, 2] and total == 5
    assert select(rows, [], None)[1] == 10 and select(rows, [], 0) == ([], 10)


def test_summaries():
    tasks = [{"name": "f", "state": "FINISHED"}, {"name": "f", "state": "FAILED"},
             {"name": "g", "state": "RUNNING"}]
    s = summarize("tasks", tasks)
    assert s["total"] == 3 and s["by_state"] == {"FINISHED": 1, "FAILED": 1, "RUNNING": 1}
    assert s["by_name"] == {"f": {"FINISHED": 1, "FAILED": 1}, "g": {"RUNNING": 1}}
    assert summarize("actors", [{"class_name": "A", "state": "DEAD"}])["by_name"] == {"A": {"DEAD": 1}}
    o = summarize("objects", [{"state": "READY", "kind": "STORE", "size": 10}, {"state": "PENDING", "size": 0}])
    assert o["total_bytes"] == 10 and o["by_kind"] == {"STORE": 1, "": 1}


def test_chrome_trace_has_complete_events_per_worker():
    tasks = [{"task_id": "a", "name": "f", "state": "FINISHED", "node_id": "n1", "worker_pid": 7,
              "start_time_ms": 1000.0, "end_time_ms": 1002.5, "type": "NORMAL_TASK"},
             {"task_id": "b", "name": "g", "state": "FAILED", "node_id": "n2", "worker_pid": 8,
              "start_time_ms": 1001.0, "end_time_ms": 1001.0, "error_message": "x"},
             {"task_id": "c", "name": "never", "state": "FAILED", "start_time_ms": None,
              "end_time_ms": 5.0}]
    events = json.loads(json.dumps(chrome_trace(tasks)))
    complete = [e for e in events if e["ph"] == "X"]
    assert [e["name"] for e in complete] == ["f", "g"]
    f = complete[0]
    assert f["ts"] == 1_000_000.0 and f["dur"] == 2500.0 and f["tid"] == 7
    assert {e["pid"] for e in complete} == {1, 2}
    for e in events:
        assert {"name", "ph", "pid", "tid"} <= e.keys()
    names = {(e["pid"], e["args"]["name"]) for e in events if e["name"] == "process_name"}
    assert names == {(1, "node n1"), (2, "node n2")}
