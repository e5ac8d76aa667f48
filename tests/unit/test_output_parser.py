"""Splitting a worker's output into attributed lines (ember._output), without processes."""

from __future__ import annotations

from ember._output import MARK, MAX_LINE, OutputParser, display_name, format_lines, mark_line


def _flat(chunks):
    return [(c.job, c.name, line) for c in chunks for line in c.lines]


def test_lines_follow_the_last_mark():
    p = OutputParser()
    data = b"before\n" + mark_line("j1", "nap") + b"a\nb\n" + mark_line("j2", "Counter") + b"c\n"
    assert _flat(p.feed(data)) == [("", "", "before"), ("j1", "nap", "a"), ("j1", "nap", "b"),
                                   ("j2", "Counter", "c")]


def test_lines_shaped_like_control_messages_are_just_lines():
    p = OutputParser()
    lines = [b"P 1 2", b"X 3 4", b"F 5", b"loss is 0.5", b"42", b"", b"  ", b"\xe2\x9c\x93 done", b"\x00 nul"]
    out = _flat(p.feed(mark_line("j", "f") + b"\n".join(lines) + b"\n"))
    assert [line for _, _, line in out] == [x.decode(errors="replace") for x in lines]
    assert {(job, name) for job, name, _ in out} == {("j", "f")}


def test_partial_lines_wait_for_their_newline_or_the_end():
    p = OutputParser()
    assert _flat(p.feed(mark_line("j", "f") + b"hel")) == []
    assert _flat(p.feed(b"lo\nwor")) == [("j", "f", "hello")]
    assert _flat(p.feed(b"ld", final=True)) == [("j", "f", "world")]


def test_a_line_cut_by_the_next_mark_belongs_to_the_task_that_printed_it():
    p = OutputParser()
    data = mark_line("j", "first") + b"no newline" + mark_line("j", "second") + b"x\n"
    assert _flat(p.feed(data)) == [("j", "first", "no newline"), ("j", "second", "x")]


def test_a_mark_split_across_reads_is_still_a_mark():
    p = OutputParser()
    data = mark_line("j", "f") + b"line\n"
    out = []
    for i in range(len(data)):
        out += _flat(p.feed(data[i:i + 1]))
    assert out == [("j", "f", "line")]
    assert MARK not in b"".join(x[2].encode() for x in out)


def test_an_endless_line_is_passed_on_in_pieces():
    p = OutputParser()
    out = _flat(p.feed(b"y" * (3 * MAX_LINE + 10)))
    assert [len(line) for _, _, line in out] == [MAX_LINE] * 3
    assert _flat(p.feed(b"\n")) == [("", "", "y" * 10)]


def test_names_and_prefixes():
    assert display_name("test_x.<locals>.nap") == "nap"
    assert display_name("Counter.__init__") == "Counter"
    assert display_name("mod.<locals>.Counter.__init__") == "Counter"
    assert format_lines("nap", 42, ["a", "b"]) == "(nap pid=42) a\n(nap pid=42) b\n"



def test_worker_output_tails_files_from_where_it_stopped(tmp_path):
    """ember_node.worker_output over real files (no processes): a file that appears late,
    reads that continue where the last stopped, and the last partial line at forget()."""
    from ember_node.worker_output import WorkerOutput

    out = WorkerOutput(str(tmp_path))
    out.watch(7)
    assert out.poll() == []  # the worker has not created its files yet
    with open(tmp_path / "worker-7.out", "ab", buffering=0) as f, \
            open(tmp_path / "worker-7.err", "ab", buffering=0) as e:
        f.write(mark_line("job1", "nap") + b"one\ntw")
        e.write(mark_line("job1", "nap") + b"oops\n")
        batches = out.poll()
        assert [(b.job, b.pid, b.is_stderr, b.name, b.lines) for b in batches] == [
            ("job1", 7, False, "nap", ["one"]), ("job1", 7, True, "nap", ["oops"])]
        f.write(b"o\nthree")
        assert [b.lines for b in out.poll()] == [["two"]]
        assert [b.lines for b in out.forget(7)] == [["three"]]
    assert out.poll() == []
    out.close()
