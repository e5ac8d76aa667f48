"""Progress bars drawn on the driver (ember._progress), without processes: the state line a
task sends, how the driver's printer tells it from output, and how bars are drawn on a
terminal (in place) and elsewhere (a line per update)."""

from __future__ import annotations

import io

from ember._progress import PROGRESS_MARK, BarState, ProgressBars, format_bar, parse_line, route


def test_a_state_line_round_trips_and_garbage_is_ignored():
    state = BarState(uuid="b1", desc="load", x=3, total=10, unit="file", closed=False)
    line = state.to_line()
    assert line.startswith(PROGRESS_MARK) and "\n" not in line
    assert parse_line(line) == state
    assert parse_line("plain output") is None
    assert parse_line(PROGRESS_MARK + "{not json") is None
    assert parse_line(PROGRESS_MARK + '{"desc": "no uuid"}') is None


def test_route_keeps_output_and_takes_out_bar_states():
    a = BarState(uuid="a", x=1).to_line()
    text, states = route(["hello", a, "world", PROGRESS_MARK + "broken"])
    assert text == ["hello", "world"]  # a malformed state line is dropped, not shown
    assert [s.uuid for s in states] == ["a"]
    same = ["x", "y"]
    assert route(same) == (same, [])


def test_format_bar_with_and_without_a_total():
    half = format_bar(BarState(uuid="u", desc="train", x=5, total=10), "f pid=7", width=60)
    assert half.startswith("train:  50%|") and half.endswith("| 5/10 (f pid=7)")
    assert len(half) <= 60
    bar = half[half.index("|") + 1: half.rindex("|")]
    assert bar.count("#") == len(bar) // 2
    assert format_bar(BarState(uuid="u", desc="read", x=42, unit="rows")) == "read: 42 rows"
    assert format_bar(BarState(uuid="u", x=12, total=10)).startswith("100%|")  # capped


def test_not_a_terminal_each_update_is_a_line():
    out = io.StringIO()
    bars = ProgressBars(out, interactive=False)
    bars.update(1, BarState(uuid="a", desc="A", x=0, total=2))
    bars.update(2, BarState(uuid="a", desc="B", x=0, total=2))  # same id, another process
    bars.update(1, BarState(uuid="a", desc="A", x=2, total=2, closed=True))
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["A", "B", "A"]
    assert "2/2" in lines[-1] and "\x1b" not in out.getvalue()
    assert [s.desc for s in bars.open_bars()] == ["B"]


def test_on_a_terminal_bars_are_redrawn_in_place_below_the_output():
    err, out = io.StringIO(), io.StringIO()
    bars = ProgressBars(err, interactive=True)
    bars.update(1, BarState(uuid="a", desc="A", x=1, total=4))
    bars.update(2, BarState(uuid="b", desc="B", x=1, total=4))
    assert err.getvalue().count("\x1b[1F\x1b[J") == 1  # B's arrival redrew A's one line
    bars.update(1, BarState(uuid="a", desc="A", x=2, total=4))
    assert "\x1b[2F\x1b[J" in err.getvalue()  # both bars' lines were erased, then redrawn
    last = err.getvalue().split("\x1b[2F\x1b[J")[-1].splitlines()
    assert [line.split(":")[0] for line in last] == ["A", "B"] and "2/4" in last[0]
    bars.write(out, "(f pid=1) hello\n")  # output goes above the bars, which come back
    assert out.getvalue() == "(f pid=1) hello\n"
    assert err.getvalue().endswith("\n".join(last) + "\n")
    bars.update(1, BarState(uuid="a", desc="A", x=4, total=4, closed=True))
    tail = err.getvalue().split("\x1b[2F\x1b[J")[-1].splitlines()
    assert tail[0].startswith("A: 100%") and [line.split(":")[0] for line in tail[1:]] == ["B"]
    assert [s.desc for s in bars.open_bars()] == ["B"]
