"""``@remote(max_calls=N)``: a worker process runs such a function at most N times, then exits
and a fresh worker takes over (Ray's remedy for leaks in libraries a task uses, and for
resources such as GPU memory that only a process exit gives back).

The function is shipped wrapped in a :class:`CallLimit`. The wrapper lives once per worker
process (workers unpickle a function once and keep it), counts the calls it runs there, and
after the Nth asks the worker to retire once that call's result is sent (:func:`take_retire`):
the worker hands the tasks queued behind it back to its agent and exits cleanly
(``ember.worker``). As in Ray, 0 means no limit, the default for tasks that use no GPU; a
task given GPUs defaults to 1, so each such task starts from a fresh process.
"""

from __future__ import annotations

from typing import Any

_retire = False


def default_max_calls(max_calls: Any, num_gpus: Any) -> int:
    """The limit a task gets: ``max_calls`` as given, else Ray's default (1 with GPUs, else 0).
    Raises ValueError for anything but a non-negative integer."""
    if max_calls is None:
        return 1 if num_gpus else 0
    if not isinstance(max_calls, int) or isinstance(max_calls, bool) or max_calls < 0:
        raise ValueError(f"max_calls must be a non-negative integer (0: no limit), got {max_calls!r}")
    return max_calls


class CallLimit:
    """``fn``, which a worker process may run ``limit`` times before it retires."""

    __slots__ = ("fn", "limit", "calls")

    def __init__(self, fn: Any, limit: int) -> None:
        self.fn = fn
        self.limit = limit
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        global _retire
        self.calls += 1
        if self.calls >= self.limit:
            _retire = True  # even if the call raises: it counted
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple:
        return (CallLimit, (self.fn, self.limit))  # a fresh count in every process


def take_retire() -> bool:
    """True (once) when a function's call limit was reached in this process."""
    global _retire
    hit, _retire = _retire, False
    return hit
