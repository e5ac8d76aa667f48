"""``ember.experimental.tqdm_ray`` (Ray's ``ray.experimental.tqdm_ray``): a tqdm-like progress
bar for tasks and actors, drawn on the driver, one bar per task's bar.

In a worker, a bar sends its state to the driver as an output line (``ember._progress``:
it rides the path worker output takes to the driver), when it opens, then at most once per
``flush_interval_s`` while it advances, and when it closes; the driver draws it (on a
terminal the open bars are redrawn in place, elsewhere each update is a line). In the driver
itself a bar is drawn directly. ``init(log_to_driver=False)`` shows no bars of tasks, as it
shows none of their output.
"""

from __future__ import annotations

import builtins
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from ember import _context
from ember._progress import BarState, describe, driver_bars

__all__ = ["safe_print", "tqdm"]


def _in_worker() -> bool:
    rt = _context.current_runtime()
    return rt is not None and getattr(rt, "mode", "") == "worker"


class tqdm:  # noqa: N801 - Ray's (and tqdm's) name
    """A progress bar: wrap an iterable (``for x in tqdm(range(100), desc="step")``) or
    advance it by hand with :meth:`update`; ``total`` defaults to ``len(iterable)``."""

    def __init__(self, iterable: Iterable | None = None, desc: Any = None, total: float | None = None,
                 unit: str | None = None, position: int | None = None, flush_interval_s: float = 1.0) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._state = BarState(uuid=uuid.uuid4().hex, desc=describe(desc), total=total, unit=unit or "it")
        self._position = position  # accepted as in Ray; bars are drawn in the order they open
        self._interval = float(flush_interval_s)
        self._last = 0.0
        self._pending = False
        self._emit()

    @property
    def n(self) -> float:
        """How far the bar is."""
        return self._state.x

    @property
    def total(self) -> float | None:
        return self._state.total

    def update(self, n: float = 1) -> None:
        """Advance the bar by ``n``."""
        self._state.x += n
        self._maybe_emit()

    def set_description(self, desc: Any) -> None:
        """Change the text before the bar."""
        self._state.desc = describe(desc)
        self._maybe_emit()

    def refresh(self) -> None:
        """Send the bar's current state now."""
        self._emit()

    def close(self) -> None:
        """End the bar (its last state stays shown). Closing twice does nothing."""
        if self._state.closed:
            return
        self._state.closed = True
        self._emit()

    def __iter__(self) -> Iterator:
        if self._iterable is None:
            raise TypeError("this tqdm bar wraps no iterable; call update() to advance it")
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._state.closed and self._pending:
                self._emit()  # the last update is not lost when a bar is dropped unclosed
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _maybe_emit(self) -> None:
        if time.monotonic() - self._last >= self._interval:
            self._emit()
        else:
            self._pending = True

    def _emit(self) -> None:
        self._last = time.monotonic()
        self._pending = False
        state = BarState(**vars(self._state))
        if _in_worker():
            import sys

            try:
                sys.stdout.write(state.to_line() + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
        else:
            driver_bars().update(os.getpid(), state)


def safe_print(*args: Any, **kwargs: Any) -> None:
    """``print`` that does not tear the bars drawn on the driver's terminal."""
    if _in_worker() or kwargs.get("file") is not None:
        builtins.print(*args, **kwargs)
        return
    import io
    import sys

    buf = io.StringIO()
    builtins.print(*args, **{**kwargs, "file": buf})
    driver_bars().write(sys.stdout, buf.getvalue())
