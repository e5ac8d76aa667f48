"""JSONPath over decoded YAML, for the ``path`` of helm-unittest assertions.

helm-unittest evaluates paths with the yaml-jsonpath syntax: a path may start
with ``$``; without it, ``a.b`` means ``$.a.b``. Supported here:

* child names ``.name`` and ``['name']`` / ``["name"]`` (for keys holding dots
  or slashes), a union ``['a','b']``;
* ``[N]`` (negative counts from the end), ``[N,M]``, slices ``[start:end:step]``;
* wildcards ``.*`` and ``[*]``, recursive descent ``..name`` / ``..*``;
* filters ``[?(@.x == 'y')]`` with ``== != < <= > >= =~``, ``&&``, ``||``,
  ``!``, parentheses, and existence ``[?(@.x)]``; literals are quoted
  strings, numbers, ``true``/``false``/``null``, and ``/regex/`` after ``=~``.

``find`` returns every value the path reaches (empty when it reaches none).
A path it cannot parse raises ``PathError`` naming the position.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from .yamlcore import same


class PathError(ValueError):
    """A path that is not valid JSONPath (or uses syntax not implemented here)."""


@dataclasses.dataclass(frozen=True)
class Child:
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Index:
    indexes: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Slice:
    start: int | None
    end: int | None
    step: int | None


@dataclasses.dataclass(frozen=True)
class Wildcard:
    pass


@dataclasses.dataclass(frozen=True)
class Recursive:
    then: Any  # the step applied at every depth


@dataclasses.dataclass(frozen=True)
class Filter:
    expr: Any


Step = Child | Index | Slice | Wildcard | Recursive | Filter

_NAME_RE = re.compile(r"[^.\[\]\s()=!<>&|,'\"]+")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> PathError:
        return PathError(f"path {self.text!r}: {why} at {self.text[self.pos :]!r}")

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def eat(self, literal: str) -> bool:
        self.skip_space()
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str) -> None:
        if not self.eat(literal):
            raise self.fail(f"expected {literal!r}")

    # --- steps

    def steps(self, *, relative: bool) -> list[Step]:
        steps: list[Step] = []
        if self.peek("$") or self.peek("@"):
            self.pos += 1
        elif not relative and not self.peek("[") and not self.peek("."):
            steps.append(Child((self.name(),)))
        while self.pos < len(self.text):
            if self.peek(".."):
                self.pos += 2
                if self.peek("*"):
                    self.pos += 1
                    steps.append(Recursive(Wildcard()))
                elif self.peek("["):
                    steps.append(Recursive(self.bracket()))
                else:
                    steps.append(Recursive(Child((self.name(),))))
            elif self.peek("."):
                self.pos += 1
                if self.peek("*"):
                    self.pos += 1
                    steps.append(Wildcard())
                else:
                    steps.append(Child((self.name(),)))
            elif self.peek("["):
                steps.append(self.bracket())
            elif relative:
                break
            else:
                raise self.fail("unexpected character")
        return steps

    def name(self) -> str:
        match = _NAME_RE.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a key name")
        self.pos = match.end()
        return match.group(0)

    def quoted(self) -> str:
        quote = self.text[self.pos]
        out = []
        self.pos += 1
        while self.pos < len(self.text) and self.text[self.pos] != quote:
            if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
            out.append(self.text[self.pos])
            self.pos += 1
        if self.pos >= len(self.text):
            raise self.fail("unterminated quote")
        self.pos += 1
        return "".join(out)

    def integer(self) -> int | None:
        self.skip_space()
        match = re.compile(r"-?\d+").match(self.text, self.pos)
        if not match:
            return None
        self.pos = match.end()
        return int(match.group(0))

    def bracket(self) -> Step:
        self.expect("[")
        self.skip_space()
        if self.eat("*"):
            self.expect("]")
            return Wildcard()
        if self.eat("?"):
            self.expect("(")
            expr = self.or_expr()
            self.expect(")")
            self.expect("]")
            return Filter(expr)
        if self.peek("'") or self.peek('"'):
            names = [self.quoted()]
            while self.eat(","):
                self.skip_space()
                if not (self.peek("'") or self.peek('"')):
                    raise self.fail("expected a quoted name")
                names.append(self.quoted())
            self.expect("]")
            return Child(tuple(names))
        first = self.integer()
        if self.eat(":"):
            end = self.integer()
            step = self.integer() if self.eat(":") else None
            self.expect("]")
            return Slice(first, end, step)
        if first is None:
            raise self.fail("expected an index, a quoted name, '*' or a filter")
        indexes = [first]
        while self.eat(","):
            value = self.integer()
            if value is None:
                raise self.fail("expected an index")
            indexes.append(value)
        self.expect("]")
        return Index(tuple(indexes))

    # --- filter expressions

    def or_expr(self) -> Any:
        left = self.and_expr()
        while self.eat("||"):
            left = ("or", left, self.and_expr())
        return left

    def and_expr(self) -> Any:
        left = self.unary()
        while self.eat("&&"):
            left = ("and", left, self.unary())
        return left

    def unary(self) -> Any:
        if self.eat("!"):
            return ("not", self.unary())
        if self.eat("("):
            inner = self.or_expr()
            self.expect(")")
            return inner
        left = self.operand()
        for op in ("==", "!=", "<=", ">=", "=~", "<", ">"):
            if self.eat(op):
                if op == "=~":
                    self.skip_space()
                    if not self.peek("/"):
                        raise self.fail("expected /regex/")
                    end = (
                        self.text.index("/", self.pos + 1)
                        if "/" in self.text[self.pos + 1 :]
                        else -1
                    )
                    if end < 0:
                        raise self.fail("unterminated regex")
                    pattern = self.text[self.pos + 1 : end]
                    self.pos = end + 1
                    return ("match", left, re.compile(pattern))
                return ("cmp", op, left, self.operand())
        return ("exists", left)

    def operand(self) -> Any:
        self.skip_space()
        if self.peek("@") or self.peek("$"):
            return ("path", tuple(self.steps(relative=True)), self.text[self.pos - 1] == "$")
        if self.peek("'") or self.peek('"'):
            return ("lit", self.quoted())
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.eat(word):
                return ("lit", value)
        match = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?").match(self.text, self.pos)
        if match:
            self.pos = match.end()
            text = match.group(0)
            return ("lit", float(text) if match.group(1) or match.group(2) else int(text))
        raise self.fail("expected a value in the filter")


def parse(path: str) -> list[Step]:
    """The steps of a path; raises ``PathError`` when it is not understood."""
    parser = _Parser(path.strip())
    if not parser.text:
        raise PathError("empty path")
    steps = parser.steps(relative=False)
    return steps


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from value.values()
    elif isinstance(value, list):
        yield from value


def _apply(step: Step, value: Any, root: Any) -> Iterator[Any]:
    if isinstance(step, Child):
        if isinstance(value, dict):
            for name in step.names:
                if name in value:
                    yield value[name]
    elif isinstance(step, Index):
        if isinstance(value, list):
            for index in step.indexes:
                if -len(value) <= index < len(value):
                    yield value[index]
    elif isinstance(step, Slice):
        if isinstance(value, list):
            yield from value[slice(step.start, step.end, step.step)]
    elif isinstance(step, Wildcard):
        yield from _children(value)
    elif isinstance(step, Recursive):
        yield from _apply(step.then, value, root)
        for child in _children(value):
            yield from _apply(step, child, root)
    elif isinstance(step, Filter):
        # On a list the filter keeps the matching items; on a mapping it keeps the
        # mapping itself when it matches, so `$[?(@.kind == "Pod")]` selects a document.
        for child in (
            value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        ):
            if _truthy(step.expr, child, root):
                yield child


def _evaluate(steps: tuple[Step, ...] | list[Step], value: Any, root: Any) -> list[Any]:
    current = [value]
    for step in steps:
        current = [found for item in current for found in _apply(step, item, root)]
    return current


def _operand(node: Any, current: Any, root: Any) -> list[Any]:
    if node[0] == "lit":
        return [node[1]]
    _, steps, from_root = node
    return _evaluate(steps, root if from_root else current, root)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return same(left, right) or (_is_number(left) and _is_number(right) and left == right)
    if op == "!=":
        return not _compare("==", left, right)
    if _is_number(left) and _is_number(right) or isinstance(left, str) and isinstance(right, str):
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _truthy(expr: Any, current: Any, root: Any) -> bool:
    kind = expr[0]
    if kind == "or":
        return _truthy(expr[1], current, root) or _truthy(expr[2], current, root)
    if kind == "and":
        return _truthy(expr[1], current, root) and _truthy(expr[2], current, root)
    if kind == "not":
        return not _truthy(expr[1], current, root)
    if kind == "exists":
        return bool(_operand(expr[1], current, root))
    if kind == "match":
        return any(
            isinstance(value, str) and expr[2].search(value)
            for value in _operand(expr[1], current, root)
        )
    _, op, left, right = expr
    lefts = _operand(left, current, root)
    rights = _operand(right, current, root)
    return any(_compare(op, a, b) for a in lefts for b in rights)


def find(document: Any, path: str) -> list[Any]:
    """Every value ``path`` reaches in ``document`` (in document order)."""
    return _evaluate(parse(path), document, document)
