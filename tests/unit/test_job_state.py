"""The head's job table and state rules (``ember_node.job_state``), and the packing rules of
a job's working directory (``ember._job_package``): pure, no process started."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
from ember._job_package import WorkingDirTooLarge, excluded, pack, split_runtime_env, unpack
from ember.job_submission import JobStatus
from ember_node.job_state import (
    JobConflict,
    JobNotFound,
    JobRecord,
    JobTable,
    check_submission_id,
    entrypoint_argv,
    exit_description,
    new_submission_id,
    output_tail,
)


def table_with(sid: str = "job1") -> JobTable:
    t = JobTable()
    t.add(JobRecord(sid, "python x.py"))
    return t


def test_a_job_that_exits_zero_succeeds():
    t = table_with()
    assert t.get("job1").status == JobStatus.PENDING
    t.started("job1", pid=42, now_ms=1000)
    r = t.get("job1")
    assert (r.status, r.driver_pid, r.start_time_ms) == (JobStatus.RUNNING, 42, 1000)
    assert t.running() == ["job1"]
    assert t.exited("job1", 0, now_ms=2000) == JobStatus.SUCCEEDED
    r = t.get("job1")
    assert (r.driver_exit_code, r.end_time_ms, r.error_type) == (0, 2000, "")
    assert t.running() == []


def test_a_nonzero_exit_fails_with_the_code_and_the_output_tail():
    t = table_with()
    t.started("job1", 7, 1)
    assert t.exited("job1", 3, 2, output_tail="Traceback\nValueError: boom") == JobStatus.FAILED
    r = t.get("job1")
    assert r.driver_exit_code == 3
    assert "exit code 3" in r.message and "ValueError: boom" in r.message
    assert r.error_type == "JOB_ENTRYPOINT_COMMAND_ERROR"


def test_a_killed_entrypoint_names_the_signal():
    assert exit_description(-9) == "signal SIGKILL"
    assert exit_description(2) == "exit code 2"
    t = table_with()
    t.started("job1", 7, 1)
    t.exited("job1", -9, 2)
    assert "signal SIGKILL" in t.get("job1").message


def test_stop_makes_a_running_job_stopped_whatever_its_exit_code():
    t = table_with()
    t.started("job1", 7, 1)
    assert t.request_stop("job1", 5) is True
    assert t.get("job1").status == JobStatus.RUNNING  # until its process exits
    assert t.exited("job1", -15, 6) == JobStatus.STOPPED
    assert t.request_stop("job1", 7) is False  # already ended
    assert t.exited("job1", 0, 8) == JobStatus.STOPPED  # ended jobs never change


def test_stopping_a_pending_job_stops_it_at_once_and_it_never_starts():
    t = table_with()
    assert t.request_stop("job1", 5)
    assert t.get("job1").status == JobStatus.STOPPED
    with pytest.raises(JobConflict):
        t.started("job1", 7, 6)


def test_a_job_that_cannot_start_fails_with_the_reason():
    t = table_with()
    t.start_failed("job1", "the uploaded working directory cannot be unpacked", 3)
    r = t.get("job1")
    assert r.status == JobStatus.FAILED and "cannot be unpacked" in r.message
    assert r.error_type == "JOB_SETUP_FAILED"


def test_ids_are_unique_valid_and_only_ended_jobs_are_deleted():
    t = table_with()
    with pytest.raises(JobConflict, match="already exists"):
        t.add(JobRecord("job1", "true"))
    with pytest.raises(ValueError, match="not valid"):
        t.add(JobRecord("../etc", "true"))
    t.started("job1", 7, 1)
    with pytest.raises(JobConflict, match="stop it first"):
        t.delete("job1")
    t.exited("job1", 0, 2)
    t.delete("job1")
    with pytest.raises(JobNotFound, match="ember job list"):
        t.get("job1")
    assert t.list() == []


def test_records_handed_out_are_copies():
    t = table_with()
    t.get("job1").status = JobStatus.FAILED
    assert t.get("job1").status == JobStatus.PENDING


def test_new_submission_ids_are_valid():
    sid = new_submission_id(bytes(range(16)))
    check_submission_id(sid)
    assert sid.startswith("embersubmit_") and len(sid) == len("embersubmit_") + 16


def test_output_tail_keeps_the_last_lines():
    text = "".join(f"line {i}\n" for i in range(100))
    assert output_tail(text, lines=2) == "line 98\nline 99"
    assert len(output_tail("x" * 5000, chars=100)) == 100


def test_status_is_terminal():
    assert [s for s in JobStatus if s.is_terminal()] == [JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED]
    assert str(JobStatus.RUNNING) == "RUNNING" and JobStatus("FAILED") is JobStatus.FAILED


@pytest.mark.parametrize(("path", "is_dir", "patterns", "expected"), [
    ("a/b/run.log", False, ["*.log"], True),          # a name pattern matches at any depth
    ("a/b/run.txt", False, ["*.log"], False),
    ("data", True, ["data/"], True),                  # trailing /: directories only
    ("data", False, ["data/"], False),
    ("build", True, ["/build"], True),                # a path from the top
    ("src/build", True, ["/build"], False),
    ("tests/fixtures/x.bin", False, ["tests/fixtures/*.bin"], True),
    ("x.py", False, ["", "# comment"], False),
])
def test_excludes(path, is_dir, patterns, expected):
    assert excluded(path, is_dir, patterns) is expected


def test_split_runtime_env_keeps_what_the_head_needs():
    wd, excludes, kept = split_runtime_env({"working_dir": ".", "excludes": ["*.log"], "env_vars": {"A": "1"}})
    assert (wd, excludes, kept) == (".", ["*.log"], {"env_vars": {"A": "1"}})
    assert split_runtime_env(None) == (None, [], {})
    with pytest.raises(ValueError, match="'conda' is not supported"):
        split_runtime_env({"conda": "env.yaml"})
    assert split_runtime_env({"pip": ["b", "a"]})[2] == {
        "pip": {"packages": ["a", "b"], "pip_check": False, "pip_install_options": []}}
    with pytest.raises(ValueError, match="local directory"):
        split_runtime_env({"working_dir": "s3://bucket/code.zip"})
    with pytest.raises(TypeError, match="str to str"):
        split_runtime_env({"env_vars": {"A": 1}})


def test_pack_leaves_out_excludes_and_refuses_too_much(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB, compresses badly enough
    (tmp_path / "run.log").write_text("noise")
    data = pack(str(tmp_path), ["*.log", "big.bin"])
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == ["pkg/mod.py"]

    (tmp_path / "rand.bin").write_bytes(os.urandom(64 << 10))
    with pytest.raises(WorkingDirTooLarge, match="rand.bin") as err:
        pack(str(tmp_path), ["*.log"], limit=16 << 10)
    assert "excludes" in str(err.value)
    out = tmp_path / "out"
    out.mkdir()
    unpack(data, str(out))
    assert (out / "pkg" / "mod.py").read_text() == "X = 1\n"


def test_unpack_refuses_names_outside_the_directory(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.py", "x")
    with pytest.raises(ValueError, match="outside"):
        unpack(buf.getvalue(), str(tmp_path))
    assert not (tmp_path.parent / "evil.py").exists()


def test_plain_entrypoints_run_directly_the_rest_through_a_shell():
    assert entrypoint_argv("python script.py --n 3") == ["python", "script.py", "--n", "3"]
    assert entrypoint_argv("python script.py 'two words'") == ["python", "script.py", "two words"]
    for cmd in ("python a.py && echo done", "A=1 python a.py", "python a.py > out", "echo $HOME",
                "python *.py", "python 'unclosed"):
        assert entrypoint_argv(cmd) == ["/bin/sh", "-c", cmd], cmd
