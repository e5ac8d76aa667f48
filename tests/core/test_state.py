"""State and history on a real embedded cluster: ``ember.util.state`` (Ray's names) and
``ember.timeline`` read the head's running/pending tasks and its bounded history of ended
tasks and dead actors (issue 16)."""

from __future__ import annotations

import json
import os

import pytest
from ember_testkit import wait_until


def _rows_named(state, name, **kw):
    """Tasks of a function defined in a test (its name is the qualified name)."""
    return [r for r in state.list_tasks(limit=None, **kw) if r["name"].endswith("." + name)]


def test_running_pending_finished_failed_and_dead_actors(new_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_TASK_HISTORY", "50")
    ember = new_cluster(num_cpus=2)
    from ember.util import state

    gate = tmp_path / "go"

    @ember.remote
    def hold(path):
        import time
        while not os.path.exists(path):
            time.sleep(0.02)
        return 1

    @ember.remote
    def quick(i):
        return i

    @ember.remote
    def bad():
        raise KeyError("no such key")

    @ember.remote
    class Box:
        def get(self):
            return 1

    ember.get([quick.remote(i) for i in range(5)])
    with pytest.raises(KeyError):
        ember.get(bad.remote())
    held = [hold.remote(str(gate)) for _ in range(3)]

    def held_states():
        rows = _rows_named(state, "hold")
        return sorted(r["state"] for r in rows) if len(rows) == 3 else []

    wait_until(lambda: held_states().count("RUNNING") == 2, 60, 0.1)
    waiting = [r for r in _rows_named(state, "hold") if r["state"] != "RUNNING"]
    assert len(waiting) == 1 and waiting[0]["pending_reason"], waiting
    running = state.list_tasks(filters=[("state", "=", "RUNNING")])
    assert all(r["name"].endswith(".hold") for r in running) and all(r["worker_pid"] for r in running)

    done = _rows_named(state, "quick", detail=True)
    assert len(done) == 5 and {r["state"] for r in done} == {"FINISHED"}
    for r in done:
        assert r["node_id"] and r["worker_pid"] and r["duration_s"] >= 0
        assert r["end_time_ms"] >= r["start_time_ms"]
    (failed,) = state.list_tasks(filters=[("state", "=", "FAILED")], detail=True)
    assert failed["name"].endswith(".bad") and failed["error"] == "KeyError: 'no such key'"
    assert "Traceback" in failed["error_message"]
    assert "error_message" not in state.list_tasks(filters=[("name", "=", failed["name"])])[0]
    assert state.get_task(failed["task_id"])["error_message"] == failed["error_message"]
    assert state.get_task("00" * 16) is None
    assert len(state.list_tasks(limit=2)) == 2

    gate.write_text("")
    assert ember.get(held, timeout=60) == [1, 1, 1]

    def by_name():
        # (a result may reach the driver straight from its worker before the agent has
        # recorded the task as finished: the state API catches up, as Ray's does)
        return {k.rsplit(".", 1)[-1]: v for k, v in state.summarize_tasks()["by_name"].items()}

    wait_until(lambda: by_name()["hold"] == {"FINISHED": 3}, 60, 0.05)
    assert by_name()["hold"] == {"FINISHED": 3} and by_name()["bad"] == {"FAILED": 1}

    box = Box.remote()
    assert ember.get(box.get.remote(), timeout=30) == 1
    aid = box._actor_id.hex() if hasattr(box, "_actor_id") else None
    ember.kill(box)
    wait_until(lambda: state.list_actors(filters=[("state", "=", "DEAD")]), 60, 0.1)
    (dead,) = state.list_actors(filters=[("state", "=", "DEAD")])
    assert dead["class_name"].endswith("Box") and "ember.kill()" in dead["death_cause"]
    if aid is not None:
        assert state.get_actor(aid)["state"] == "DEAD"
    assert state.summarize_actors()["by_name"][dead["class_name"]] == {"DEAD": 1}

    ref = ember.put(b"x" * 200_000)
    objs = state.list_objects(filters=[("object_id", "=", ref.hex())])
    assert objs and objs[0]["size"] >= 200_000
    assert state.summarize_objects()["total_bytes"] >= 200_000
    assert state.list_nodes()[0]["Alive"]

    # the history is bounded by EMBER_TASK_HISTORY=50: the oldest ended tasks drop out
    ember.get([quick.remote(i) for i in range(80)])
    ended = [r for r in state.list_tasks(limit=None) if r["state"] in ("FINISHED", "FAILED")]
    assert len(ended) == 50
    assert not state.list_tasks(filters=[("name", "=", failed["name"])])

    with pytest.raises(ValueError, match="'=' or '!='"):
        state.list_tasks(filters=[("state", "~", "x")])


def test_timeline_writes_a_chrome_trace(new_cluster, tmp_path):
    ember = new_cluster(num_cpus=2)

    @ember.remote
    def work(i):
        return i * 2

    ember.get([work.remote(i) for i in range(20)])

    def complete_events():
        return [e for e in ember.timeline() if e["ph"] == "X"]

    # results travel straight from the worker: the head records the last tasks a moment later
    assert wait_until(lambda: len(complete_events()) == 20, 60, 0.05)
    complete = complete_events()
    assert len(complete) == 20 and all(e["name"].endswith(".work") for e in complete)
    for e in complete:
        assert e["dur"] >= 0 and e["ts"] > 0 and e["tid"] > 0 and e["pid"] >= 1
    path = tmp_path / "trace.json"
    assert ember.timeline(str(path)) is None
    loaded = json.loads(path.read_text())
    assert isinstance(loaded, list) and len([e for e in loaded if e["ph"] == "X"]) == 20
    for e in loaded:
        assert {"name", "ph", "ts" if e["ph"] == "X" else "args", "pid", "tid"} <= e.keys()
