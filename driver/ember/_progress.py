"""Progress bars of tasks, drawn on the driver (``ember.experimental.tqdm_ray``).

A bar in a task reports its state as one line on the worker's stdout: ``PROGRESS_MARK``
followed by a JSON object (:class:`BarState`). That line travels as any other output does
(``ember._output``: worker file, agent, the driver's output connection); the driver's
:class:`~ember._output.OutputPrinter` recognizes it and hands it to :class:`ProgressBars`
instead of printing it. So bars need no channel of their own, and a bar's updates arrive in
order with what its task prints.

:class:`ProgressBars` keeps one bar per (worker pid, bar id), i.e. one per task's bar. On a
terminal the open bars are redrawn in place below the program's output (lines printed meanwhile
go above them); elsewhere (a file, a pipe) each update the task sent is written as a line, and
a task sends at most one per ``flush_interval_s``. A closed bar's last state stays on screen.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any, TextIO

PROGRESS_MARK = "\x00\x1fember-progress "  # starts a bar's state line (never shown as output)


@dataclass
class BarState:
    """What a bar shows at one moment (the record a task sends)."""

    uuid: str
    desc: str = ""
    x: float = 0
    total: float | None = None
    unit: str = "it"
    closed: bool = False

    def to_line(self) -> str:
        """The output line that carries this state to the driver."""
        return PROGRESS_MARK + json.dumps(asdict(self), separators=(",", ":"))


def parse_line(line: str) -> BarState | None:
    """The state in a bar's line (None when ``line`` is not one, or is malformed). Pure."""
    if not line.startswith(PROGRESS_MARK):
        return None
    try:
        data = json.loads(line[len(PROGRESS_MARK):])
        state = BarState(uuid=str(data["uuid"]), desc=str(data.get("desc") or ""), x=float(data.get("x", 0)),
                         total=None if data.get("total") is None else float(data["total"]),
                         unit=str(data.get("unit") or "it"), closed=bool(data.get("closed")))
    except (ValueError, KeyError, TypeError):
        return None
    return state


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def format_bar(state: BarState, label: str = "", width: int = 80) -> str:
    """One bar as text, at most ``width`` characters: ``desc: 42%|####      | 42/100 (label)``
    with a total, ``desc: 42 it (label)`` without. Pure."""
    head = f"{state.desc}: " if state.desc else ""
    tail = f" ({label})" if label else ""
    if state.total:
        frac = min(max(state.x / state.total, 0.0), 1.0)
        counts = f" {_num(state.x)}/{_num(state.total)}"
        room = max(width - len(head) - len(counts) - len(tail) - 6, 10)
        filled = int(round(frac * room))
        text = f"{head}{frac * 100:3.0f}%|{'#' * filled}{' ' * (room - filled)}|{counts}{tail}"
    else:
        text = f"{head}{_num(state.x)} {state.unit}{tail}"
    return text[:width]


class ProgressBars:
    """The bars of one driver, drawn on ``stream`` (stderr by default, as tqdm does)."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self._stream = stream
        self._interactive = interactive
        self._lock = threading.RLock()
        self._open: dict[tuple[int, str], tuple[BarState, str]] = {}  # in the order they opened
        self._drawn = 0  # lines of bars below the cursor's line (terminal mode)

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def _tty(self) -> bool:
        if self._interactive is not None:
            return self._interactive
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def update(self, pid: int, state: BarState, label: str = "") -> None:
        """Show ``state`` for the bar ``state.uuid`` of process ``pid``."""
        key = (pid, state.uuid)
        with self._lock:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            if not self._tty():
                self._write(format_bar(state, label, width) + "\n")
                if state.closed:
                    self._open.pop(key, None)
                else:
                    self._open[key] = (state, label)
                return
            self._clear()
            if state.closed:
                self._open.pop(key, None)
                self._write(format_bar(state, label, width) + "\n")  # stays above the open bars
            else:
                self._open[key] = (state, label)
            self._draw(width)

    def write(self, stream: TextIO, text: str) -> None:
        """Write program output to ``stream`` without tearing the bars (they are redrawn
        below it on a terminal)."""
        with self._lock:
            if not self._drawn or not self._tty():
                stream.write(text)
                stream.flush()
                return
            self._clear()
            stream.write(text)
            stream.flush()
            self._draw(shutil.get_terminal_size((100, 20)).columns - 1)

    def open_bars(self) -> list[BarState]:
        """The bars not closed yet, in the order they opened."""
        with self._lock:
            return [state for state, _ in self._open.values()]

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _clear(self) -> None:
        if self._drawn:
            # up to the first bar's line, and erase from there to the end of the screen
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self, width: int) -> None:
        lines = [format_bar(s, label, width) for s, label in self._open.values()]
        if lines:
            self._write("".join(line + "\n" for line in lines))
        self._drawn = len(lines)


_driver_bars: ProgressBars | None = None
_driver_lock = threading.Lock()


def driver_bars() -> ProgressBars:
    """This process's bars (one set per driver, shared by its output printer and the bars
    the driver itself makes)."""
    global _driver_bars
    if _driver_bars is None:
        with _driver_lock:
            if _driver_bars is None:
                _driver_bars = ProgressBars()
    return _driver_bars


def route(lines: list[str]) -> tuple[list[str], list[BarState]]:
    """Split output lines into those to print and the bar states among them. Pure."""
    if not any(line.startswith(PROGRESS_MARK) for line in lines):
        return lines, []
    text, states = [], []
    for line in lines:
        state = parse_line(line)
        if state is not None:
            states.append(state)
        elif not line.startswith(PROGRESS_MARK):
            text.append(line)
    return text, states


def describe(value: Any) -> str:
    """A bar's description as text (tqdm accepts any object)."""
    return "" if value is None else str(value)
