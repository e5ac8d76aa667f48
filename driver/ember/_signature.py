"""Arguments checked against a function's signature when a task or actor call is submitted,
as Ray does: a wrong number of arguments or an unknown keyword raises ``TypeError`` at
``.remote()``, not later inside a worker. Pure, no I/O.

A ``CallShape`` keeps only parameter names and kinds (no default values), so it pickles with
an actor handle whatever the defaults are.
"""

from __future__ import annotations

import inspect
from typing import Any

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NO_DEFAULT = inspect.Parameter.empty


class CallShape:
    """The parameters of one function (or method, without ``self``)."""

    __slots__ = ("name", "params", "min_pos", "max_pos", "_sig")

    def __init__(self, name: str, params: tuple[tuple[str, int, bool], ...]) -> None:
        self.name = name
        self.params = params  # (name, inspect kind as int, has a default)
        kinds = [inspect._ParameterKind(k) for _, k, _ in params]
        positional = [p for p, kind in zip(params, kinds, strict=True) if kind in _POSITIONAL]
        self.min_pos = sum(1 for _, _, has_default in positional if not has_default)
        self.max_pos = -1 if inspect.Parameter.VAR_POSITIONAL in kinds else len(positional)
        # required keyword-only parameters make even the positional fast path bind fully
        if any(kind == inspect.Parameter.KEYWORD_ONLY and not d for (_, _, d), kind in zip(params, kinds, strict=True)):
            self.max_pos = -2
        self._sig: inspect.Signature | None = None

    def __reduce__(self):
        return (CallShape, (self.name, self.params))

    def signature(self) -> inspect.Signature:
        if self._sig is None:
            self._sig = inspect.Signature([
                inspect.Parameter(n, inspect._ParameterKind(k), default=None if d else _NO_DEFAULT)
                for n, k, d in self.params])
        return self._sig


def shape_of(fn: Any, name: str, drop_first: bool = False) -> CallShape | None:
    """The call shape of ``fn`` (``drop_first``: a method's ``self``); None when it cannot be
    inspected (some builtins), in which case nothing is checked."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if drop_first and params and params[0].kind in _POSITIONAL:
        params = params[1:]
    return CallShape(name, tuple((p.name, int(p.kind), p.default is not _NO_DEFAULT) for p in params))


def check(shape: CallShape | None, args: tuple, kwargs: dict) -> None:
    """Raise TypeError, as calling the function would, if ``args``/``kwargs`` do not fit."""
    if shape is None:
        return
    if not kwargs and shape.min_pos <= len(args) and (len(args) <= shape.max_pos or shape.max_pos == -1):
        return
    try:
        shape.signature().bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{shape.name}(): {exc}") from None
