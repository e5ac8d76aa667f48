"""YAML as helm-unittest reads it: YAML 1.2 core scalars and Go-like equality.

The plugin is written in Go and decodes suites and rendered manifests with
``gopkg.in/yaml.v3``. PyYAML follows YAML 1.1, where ``yes``/``on`` are booleans,
``010`` is octal with other rules and dates become ``datetime``; yaml.v3
decoding into ``interface{}`` gives strings for all of those except the
YAML 1.2 booleans ``true``/``false``. This module resolves plain scalars the
yaml.v3 way, and compares values the way Go's ``reflect.DeepEqual`` compares
decoded YAML: ``True`` is not ``1`` and ``1`` is not ``1.0``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULL = {"", "~", "null", "Null", "NULL"}
_INT_RE = re.compile(r"^[-+]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)$")
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOATS = {
    ".inf": math.inf, ".Inf": math.inf, ".INF": math.inf,
    "+.inf": math.inf, "+.Inf": math.inf, "+.INF": math.inf,
    "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
    ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
}  # fmt: skip


def resolve_plain(text: str) -> Any:
    """The value of a plain (unquoted) scalar, as yaml.v3 gives it to ``interface{}``."""
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    if _INT_RE.match(text) and "__" not in text and not text.endswith("_"):
        body = text.lstrip("+-")
        sign = -1 if text.startswith("-") else 1
        lowered = body.lower()
        try:
            if lowered.startswith("0x"):
                return sign * int(body[2:].replace("_", ""), 16)
            if lowered.startswith("0o"):
                return sign * int(body[2:].replace("_", ""), 8)
            if lowered.startswith("0b"):
                return sign * int(body[2:].replace("_", ""), 2)
            if "_" in body and body[0] == "0" and len(body) > 1:
                raise ValueError(text)
            if len(body) > 1 and body[0] == "0":  # Go's base-0 parsing: leading 0 is octal
                return sign * int(body, 8)
            return sign * int(body.replace("_", ""))
        except ValueError:
            pass
    if _FLOAT_RE.match(text):
        return float(text)
    return text


class CoreLoader(yaml.SafeLoader):
    """A safe loader resolving plain scalars as YAML 1.2 core / yaml.v3 does."""


# Drop every implicit resolver but the ones for merge keys; plain scalars are
# resolved by ``construct_scalar_value`` instead.
CoreLoader.yaml_implicit_resolvers = {}
CoreLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
_PLAIN_TAG = "tag:ember.dev,2026:plain"
CoreLoader.add_implicit_resolver(_PLAIN_TAG, re.compile(r"^.*$", re.DOTALL), None)


def _construct_plain(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    return resolve_plain(loader.construct_scalar(node))


def _construct_tagged_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = resolve_plain(loader.construct_scalar(node))
    return value


CoreLoader.add_constructor(_PLAIN_TAG, _construct_plain)
# Explicitly tagged scalars keep their YAML meaning.
CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_tagged_int)
CoreLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def load(text: str) -> Any:
    """One YAML document, yaml.v3-style."""
    return yaml.load(text, Loader=CoreLoader)  # noqa: S506 - CoreLoader is a SafeLoader


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream, yaml.v3-style."""
    return list(yaml.load_all(text, Loader=CoreLoader))  # noqa: S506


def same(a: Any, b: Any) -> bool:
    """Go ``reflect.DeepEqual`` on decoded YAML: types must match, not just values."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, float) and isinstance(b, float):
        return a == b
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and a == b


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with two-space list indents and double quotes, as Go's yaml.v3 prints."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def choose_scalar_style(self) -> str:
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump(value: Any, *, sort_keys: bool = True) -> str:
    """A value as YAML text (used in messages and snapshots)."""
    return yaml.dump(
        value,
        Dumper=_Dumper,
        default_flow_style=False,
        sort_keys=sort_keys,
        allow_unicode=True,
        width=1 << 16,
    )
