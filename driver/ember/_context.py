"""The process-wide runtime: set by ``init`` in a driver and at start-up in a worker."""

from __future__ import annotations

from typing import Any

_runtime: Any = None


def current_runtime() -> Any:
    return _runtime


def set_runtime(rt: Any) -> None:
    global _runtime
    _runtime = rt


def require_runtime() -> Any:
    rt = _runtime
    if rt is None:
        from ember.api import _auto_init

        rt = _auto_init()
    return rt
