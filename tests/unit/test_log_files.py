"""Pure helpers of ``ember logs`` (ember_node.log_files): naming, picking, tails, marks.
Only the tests of list_logs/path_in/tail_start touch a temporary directory; no process."""

from __future__ import annotations

import os

import pytest
from ember._output import mark_line
from ember_node import log_files as lf


def files(*names: str, node: str = "n1") -> list[lf.LogFile]:
    return [lf.LogFile(n, 1, 0.0, *lf.classify(n), node) for n in names]


def test_classify_names():
    assert lf.classify("worker-42.out") == ("worker", 42, "")
    assert lf.classify("worker-42.err") == ("worker", 42, "")
    assert lf.classify("job-raysubmit_x.log") == ("job", None, "raysubmit_x")
    assert lf.classify("agent.log")[0] == "agent"
    assert lf.classify("node.log")[0] == "agent"
    assert lf.classify("workers.log")[0] == "workers"
    assert lf.classify("worker-x.out")[0] == "other"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", ".", "x\x00"])
def test_check_name_refuses_paths(bad):
    with pytest.raises(ValueError, match="not a log file name"):
        lf.check_name(bad)


def test_pick_by_pid_job_name_and_node():
    fs = files("agent.log", "worker-7.out", "worker-7.err", "job-j1.log") + files("worker-8.out", node="n2")
    assert lf.pick(fs, worker_pid=7).name == "worker-7.out"
    assert lf.pick(fs, worker_pid=7, stderr=True).name == "worker-7.err"
    assert lf.pick(fs, job="j1").name == "job-j1.log"
    assert lf.pick(fs, name="agent.log").node == "n1"
    assert lf.pick(fs, worker_pid=8, node="n2").node == "n2"
    with pytest.raises(lf.LogNotFound, match="worker pid 8 on node n1"):
        lf.pick(fs, worker_pid=8, node="n1")
    with pytest.raises(lf.LogNotFound, match="several nodes"):
        lf.pick(fs + files("agent.log", node="n2"), name="agent.log")
    with pytest.raises(ValueError, match="say which log"):
        lf.pick(fs)


def test_worker_of_maps_actor_and_task_rows():
    actors = [{"actor_id": "abcd01", "pid": 11, "node_id": "nodeA"}, {"actor_id": "ffff", "pid": None}]
    tasks = [{"task_id": "t1", "worker_pid": 5, "attempt": 0, "node_id": "x"},
             {"task_id": "t1", "worker_pid": 6, "attempt": 1, "node_id": "y"}]
    assert lf.worker_of(actors, "actor_id", "abcd") == (11, "nodeA")
    assert lf.worker_of(tasks, "task_id", "t1") == (6, "y")  # the latest attempt
    with pytest.raises(lf.LogNotFound, match="has not run"):
        lf.worker_of(actors, "actor_id", "ffff")
    with pytest.raises(lf.LogNotFound, match="knows no task"):
        lf.worker_of(tasks, "task_id", "zz")
    with pytest.raises(lf.LogNotFound, match="several actor ids"):
        lf.worker_of(actors + [{"actor_id": "abce", "pid": 3}], "actor_id", "ab")


def test_tail_offset():
    data = b"a\nb\nc\n"
    assert data[lf.tail_offset(data, 2, True):] == b"b\nc\n"
    assert data[lf.tail_offset(data, 5, True):] == data
    assert lf.tail_offset(data, 5, False) == -1  # more of the file lies before
    assert b"a\nb\nc"[lf.tail_offset(b"a\nb\nc", 1, True):] == b"c"
    assert lf.tail_offset(data, 0, True) == len(data)


def test_tail_start_and_read(tmp_path):
    p = tmp_path / "worker-1.out"
    p.write_bytes(b"".join(b"line %d\n" % i for i in range(50_000)))
    start = lf.tail_start(str(p), 3)
    assert b"".join(lf.read_log(str(p), start, follow=False)) == b"line 49997\nline 49998\nline 49999\n"
    assert lf.tail_start(str(p), None) == 0


def test_list_logs_and_path_in_refuse_links(tmp_path):
    (tmp_path / "agent.log").write_text("x")
    (tmp_path / "worker-3.out").write_text("hello\n")
    os.symlink("/etc/passwd", tmp_path / "job-evil.log")
    (tmp_path / "sub").mkdir()
    names = [f.name for f in lf.list_logs(str(tmp_path))]
    assert names == ["agent.log", "worker-3.out"]  # no link, no directory
    assert lf.path_in(str(tmp_path), "worker-3.out").endswith("worker-3.out")
    with pytest.raises(ValueError, match="not a plain file"):
        lf.path_in(str(tmp_path), "job-evil.log")
    with pytest.raises(ValueError):
        lf.path_in(str(tmp_path), "../agent.log")
    with pytest.raises(lf.LogNotFound):
        lf.path_in(str(tmp_path), "worker-9.out")


def test_mark_renderer_across_chunks():
    data = b"before\n" + mark_line("01000000", "f") + b"in f\n"
    r = lf.MarkRenderer()
    out = b"".join(r.feed(data[i:i + 3]) for i in range(0, len(data), 3)) + r.feed(b"", final=True)
    assert out == b"before\n[ember] job 01000000: f\nin f\n"
    assert lf.MarkRenderer().feed(b"partial", final=True) == b"partial"


def test_format_size():
    assert lf.format_size(812) == "812 B"
    assert lf.format_size(4300) == "4.2 KiB"
