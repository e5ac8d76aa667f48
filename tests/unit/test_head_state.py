"""The head's persistent directory (ember_node.head_state): SQLite in a temp dir, no process."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest
from ember_node.head_state import (
    ActorRecord,
    HeadState,
    JobRecord,
    NodeRecord,
    StateVersionError,
    jobs_after_restart,
)


def test_records_survive_reopening(tmp_path):
    d = str(tmp_path / "state")
    st = HeadState(d)
    st.save_node(NodeRecord("n1", "10.0.0.2", "w1", {"CPU": 2.0}))
    st.save_actor(ActorRecord(b"a" * 28, "default", "counter", True, "Counter", b"\x00spec"))
    st.save_actor(ActorRecord(b"b" * 28, "ns", None, True, "Other", b"spec2"))
    st.save_function(b"f" * 20, b"body")
    st.save_function(b"f" * 20, b"other body")  # a function id names one body: the first stays
    st.save_job(JobRecord("raysubmit_1", "RUNNING", "python x.py", log_path="/tmp/x.log"))
    st.actor_restarted(b"a" * 28, 2, "n1")
    st.drop_actor(b"b" * 28)
    st.node_dead("n1")
    st.close()

    again = HeadState(d)
    assert again.nodes() == [NodeRecord("n1", "10.0.0.2", "w1", {"CPU": 2.0}, alive=False)]
    assert again.actors() == [ActorRecord(b"a" * 28, "default", "counter", True, "Counter", b"\x00spec", 2, "n1")]
    assert again.functions() == {b"f" * 20: b"body"}
    assert again.jobs() == [JobRecord("raysubmit_1", "RUNNING", "python x.py", log_path="/tmp/x.log")]
    again.close()


def test_directory_is_private_and_wal(tmp_path):
    d = tmp_path / "state"
    d.mkdir(mode=0o755)  # made with a loose umask: tightened, since it is ours
    st = HeadState(str(d))
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(st.path).st_mode) == 0o600
    with sqlite3.connect(st.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    st.close()


def test_newer_schema_is_refused(tmp_path):
    st = HeadState(str(tmp_path))
    st._run("UPDATE meta SET value='99' WHERE key='schema'")
    st.close()
    with pytest.raises(StateVersionError, match="newer ember"):
        HeadState(str(tmp_path))


def test_running_jobs_whose_driver_is_gone_fail():
    jobs = [JobRecord("a", "RUNNING", "x"), JobRecord("b", "SUCCEEDED", "y", 0), JobRecord("c", "RUNNING", "z")]
    out = jobs_after_restart(jobs, alive={"c"})
    assert [j.status for j in out] == ["FAILED", "SUCCEEDED", "RUNNING"]
    assert "head restarted" in out[0].message


def _submitted(max_restarts: int, deps: tuple = ()) -> tuple:
    spec = {"max_restarts": max_restarts, "name": "a", "detached": True, "meta": b"m"}
    return (b"t", b"f", "A.__init__", b"args", deps, (b"a" * 28,), {"CPU": 0.0}, 0, False, (),
            ("create", spec), "ns", None)


def test_restore_decisions_follow_max_restarts_and_lost_arguments():
    from ember_node.head_resume import decide

    rec = ActorRecord(b"a" * 28, "ns", "a", True, "A", b"", restarts=1)
    assert decide(rec, _submitted(2)).restore
    assert decide(rec, _submitted(-1)).restore
    out = decide(rec, _submitted(1))
    assert not out.restore and "out of restarts (1/1)" in out.reason
    assert "object refs" in decide(rec, _submitted(5, deps=(b"x",))).reason


def test_recorded_specs_load_as_plain_data_only():
    import pickle

    from ember_node.head_resume import load_submitted

    assert load_submitted(pickle.dumps(_submitted(1))) == _submitted(1)
    with pytest.raises(pickle.UnpicklingError, match="not plain data"):
        load_submitted(pickle.dumps(ActorRecord(b"", "", None, False, "", b"")))
