"""The user values of one helm-unittest test: values files, then ``set``, deep-merged.

As in the plugin, every values file (the suite's, then the test's) and every
``set`` entry (the suite's, then the test's) is merged over what came before:
maps merge key by key at every depth, anything else replaces. So a ``set``
whose value is a map adds to (and overrides inside) the map it lands on
instead of replacing it. The result is handed to ``helm template`` as one
values file, over the chart's own defaults.
"""

from __future__ import annotations

import re
from typing import Any

_SEGMENT_RE = re.compile(
    r"""\[(?P<index>\d+)\]|\[(?P<q>["'])(?P<qkey>.*?)(?P=q)\]|(?P<key>(?:\\.|[^.\[\\])+)"""
)


class SetPathError(ValueError):
    """A ``set`` key that is not a valid value path."""


def parse_set_path(path: str) -> list[str | int]:
    """``a.b[0]["c.d"]`` or ``a\\.b.c`` -> the keys and list indexes it names."""
    tokens: list[str | int] = []
    position = 0
    while position < len(path):
        if path[position] == "." and tokens:
            position += 1
        match = _SEGMENT_RE.match(path, position)
        if not match or match.end() == position:
            raise SetPathError(f"set: cannot parse the path {path!r} at {path[position:]!r}")
        if match.group("index") is not None:
            tokens.append(int(match.group("index")))
        elif match.group("qkey") is not None:
            tokens.append(match.group("qkey"))
        else:
            tokens.append(re.sub(r"\\(.)", r"\1", match.group("key")))
        position = match.end()
    if not tokens or not isinstance(tokens[0], str):
        raise SetPathError(f"set: the path {path!r} must start with a key")
    return tokens


def build(path: str, value: Any) -> dict[str, Any]:
    """The values tree that ``set: {path: value}`` stands for."""
    tokens = parse_set_path(path)
    built: Any = value
    for token in reversed(tokens):
        if isinstance(token, int):
            items: list[Any] = [None] * (token + 1)
            items[token] = built
            built = items
        else:
            built = {token: built}
    return built


def merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``: maps merge recursively; anything else, lists too, replaces.

    So ``set: {hosts[1]: x}`` makes ``hosts`` the list ``[null, x]``, as in the plugin."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


def user_values(files: list[Any], sets: list[dict[str, Any]]) -> dict[str, Any]:
    """Values files (already loaded, in order) then ``set`` mappings (in order), merged."""
    result: dict[str, Any] = {}
    for loaded in files:
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            raise SetPathError(f"a values file must hold a mapping, got {type(loaded).__name__}")
        result = merge(result, loaded)
    for entries in sets:
        for path, value in entries.items():
            result = merge(result, build(str(path), value))
    return result
