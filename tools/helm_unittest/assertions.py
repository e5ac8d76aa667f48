"""The 36 helm-unittest assertion types, checked against the documents of one template.

Each check follows the plugin's documented meaning (its ``DOCUMENT.md``):

* a check runs on every selected document of a template and passes when it
  holds for each of them; a path reaching several values must hold for each;
* a path that reaches nothing fails a positive assertion ("unknown path") and
  passes a negated one (``not: true`` or the ``not...`` antonym);
* a template that rendered no document fails a positive assertion and passes
  a negated one;
* values compare as decoded YAML compares in Go: ``true`` is not ``1``.

``check`` returns (passed, messages). A parameter an assertion type does not
have raises ``UnsupportedError`` naming it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import json
import re
from collections.abc import Callable
from typing import Any

from . import jsonpath, yamlcore
from .errors import UnsupportedError
from .render import RAW


@dataclasses.dataclass
class Context:
    """What one check of one template sees."""

    docs: list[Any]  # every document the template rendered
    selected: list[Any]  # those the documentIndex/documentSelector kept
    negative: bool
    snapshot: Callable[[Any], tuple[bool, str, str]] | None = (
        None  # content -> (match, cached, new)
    )


@dataclasses.dataclass(frozen=True)
class AssertType:
    """One assertion type: its parameters and whether it is the negated form."""

    name: str
    check: Callable[[dict, Context], tuple[bool, list[str]]]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    antonym: bool = False
    needs_render_success: bool = True


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "\n" + yamlcore.dump(value).rstrip()
    return json.dumps(value)


def _uniform(text: str) -> str:
    return text.replace("\r\n", "\n").lstrip("\n")


def _decode(value: Any, spec: dict) -> Any:
    if spec.get("decodeBase64") and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise ValueError(f"unable to decode base64 content {value!r}") from error
    return value


def go_regex(pattern: str) -> re.Pattern[str]:
    """A Go RE2 pattern as a Python one (the common syntax is shared)."""
    return re.compile(pattern.replace(r"\z", r"\Z"))


def _per_value(
    spec: dict, ctx: Context, holds: Callable[[Any], tuple[bool, str]], *, path_key: str = "path"
) -> tuple[bool, list[str]]:
    """Run ``holds`` on every value the path reaches in every selected document."""
    path = spec.get(path_key, "")
    if not ctx.selected:
        return ctx.negative, [] if ctx.negative else ["no manifest found"]
    passed = True
    messages: list[str] = []
    for number, doc in enumerate(ctx.selected):
        values = [doc] if path in ("", None) else jsonpath.find(doc, str(path))
        if not values:
            if not ctx.negative:
                passed = False
                messages.append(f"DocumentIndex {number}: unknown path {path}")
            continue
        for value in values:
            try:
                ok, detail = holds(value)
            except ValueError as error:
                passed = False
                messages.append(f"DocumentIndex {number}: {error}")
                continue
            if ok == ctx.negative:
                passed = False
                expectation = "NOT " if ctx.negative else ""
                messages.append(
                    f"DocumentIndex {number}: path {path}: expected {expectation}{detail}"
                )
    return passed, messages


def _equal(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    def holds(actual: Any) -> tuple[bool, str]:
        actual = _decode(actual, spec)
        if isinstance(actual, str):
            actual = _uniform(actual)
        return yamlcore.same(
            spec["value"], actual
        ), f"to equal {_show(spec['value'])}, got {_show(actual)}"

    return _per_value(spec, ctx, holds)


def _compare(kind: str) -> Callable[[dict, Context], tuple[bool, list[str]]]:
    def check(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
        expected = spec["value"]

        def holds(actual: Any) -> tuple[bool, str]:
            if type(actual) is not type(expected) or not isinstance(expected, (int, float, str)):
                raise ValueError(
                    f"actual {_show(actual)} and expected {_show(expected)} types do not match"
                )
            # The plugin's verdicts (pkg/unittest/validators/operator_validator.go, 1.x):
            # notGreaterOrEqual always holds and notLessOrEqual holds when actual >= value,
            # unlike what DOCUMENT.md says; users get those verdicts, so this runner too.
            if kind == "greater":
                ok = actual >= expected if not ctx.negative else False
            else:
                ok = actual <= expected if not ctx.negative else not actual >= expected
            return ok, f"to be {kind} than or equal to {_show(expected)}, got {_show(actual)}"

        return _per_value(spec, ctx, holds)

    return check


def _raw_values(ctx: Context) -> list[Any]:
    return [doc.get(RAW) if isinstance(doc, dict) else None for doc in ctx.selected]


def _equal_raw(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    if not ctx.selected:
        return ctx.negative, [] if ctx.negative else ["no manifest found"]
    messages = []
    for raw in _raw_values(ctx):
        actual = _uniform(raw) if isinstance(raw, str) else raw
        if (actual == spec["value"]) == ctx.negative:
            messages.append(
                f"expected {'NOT ' if ctx.negative else ''}to equal {spec['value']!r}, got {actual!r}"
            )
    return not messages, messages


def _match_regex_raw(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    if not ctx.selected:
        return ctx.negative, [] if ctx.negative else ["no manifest found"]
    pattern = go_regex(spec["pattern"])
    messages = []
    for raw in _raw_values(ctx):
        if not isinstance(raw, str):
            messages.append(f"expected raw text to match /{spec['pattern']}/, got {raw!r}")
        elif bool(pattern.search(raw)) == ctx.negative:
            messages.append(
                f"expected raw text {'NOT ' if ctx.negative else ''}to match /{spec['pattern']}/, got {raw!r}"
            )
    return not messages, messages


def _exists(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    if not ctx.selected:
        return ctx.negative, [] if ctx.negative else ["no manifest found"]
    messages = []
    for number, doc in enumerate(ctx.selected):
        found = jsonpath.find(doc, str(spec["path"]))
        if bool(found) == ctx.negative:
            state = "not to exist, got " + _show(found[0]) if ctx.negative else "to exist"
            messages.append(f"DocumentIndex {number}: path {spec['path']}: expected {state}")
    return not messages, messages


def _match_regex(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    pattern = go_regex(spec["pattern"])

    def holds(actual: Any) -> tuple[bool, str]:
        actual = _decode(actual, spec)
        if not isinstance(actual, str):
            raise ValueError(f"expected {spec['path']} to be a string, got {_show(actual)}")
        return bool(pattern.search(actual)), f"to match /{spec['pattern']}/, got {actual!r}"

    return _per_value(spec, ctx, holds)


def _is_subset_of(content: Any, actual: Any) -> bool:
    return all(
        key in actual and yamlcore.same(actual[key], value) for key, value in content.items()
    )


def _contains(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    content, count, any_ = spec["content"], spec.get("count"), bool(spec.get("any"))

    def holds(actual: Any) -> tuple[bool, str]:
        if not isinstance(actual, list):
            raise ValueError(f"expect {spec['path']} to be an array, got {_show(actual)}")
        found = 0
        for item in actual:
            if any_ and isinstance(item, dict) and isinstance(content, dict):
                found += _is_subset_of(content, item)
            elif yamlcore.same(item, content):
                found += 1
        ok = found > 0 if count is None else (found > 0 and found == count)
        times = "" if count is None else f" {count} time(s) (found {found})"
        return ok, f"to contain {_show(content)}{times} in {_show(actual)}"

    return _per_value(spec, ctx, holds)


def _is_subset(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    def holds(actual: Any) -> tuple[bool, str]:
        if not isinstance(actual, dict) or not isinstance(spec["content"], dict):
            raise ValueError(f"expect {spec['path']} to be an object, got {_show(actual)}")
        return _is_subset_of(
            spec["content"], actual
        ), f"to include {_show(spec['content'])}, got {_show(actual)}"

    return _per_value(spec, ctx, holds)


def _field_is(field: str) -> Callable[[dict, Context], tuple[bool, list[str]]]:
    def check(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
        if not ctx.selected:
            return ctx.negative, [] if ctx.negative else ["no manifest found"]
        messages = []
        for number, doc in enumerate(ctx.selected):
            actual = doc.get(field) if isinstance(doc, dict) else None
            if yamlcore.same(actual, spec["of"]) == ctx.negative:
                messages.append(
                    f"DocumentIndex {number}: expected {field} {'NOT ' if ctx.negative else ''}to be {spec['of']}, got {actual}"
                )
        return not messages, messages

    return check


def _is_empty_value(value: Any) -> bool:
    return (
        value is None
        or value in ("", 0, 0.0, False)
        or (isinstance(value, (list, dict)) and not value)
    )


def _null_or_empty(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    return _per_value(
        spec,
        ctx,
        lambda actual: (_is_empty_value(actual), f"to be null or empty, got {_show(actual)}"),
    )


_GO_TYPES = {
    bool: "bool",
    int: "int",
    float: "float64",
    str: "string",
    dict: "map[string]interface {}",
    list: "[]interface {}",
}


def go_type(value: Any) -> str:
    """The Go type name of a decoded YAML value, as ``isType`` names it."""
    if value is None:
        return ""
    return _GO_TYPES.get(type(value), type(value).__name__)


def _is_type(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    return _per_value(
        spec,
        ctx,
        lambda actual: (
            go_type(actual) == spec["type"],
            f"to be of type {spec['type']}, got {go_type(actual)}",
        ),
    )


def _length_equal(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    path, paths, count = spec.get("path"), spec.get("paths"), spec.get("count")
    if path and count is None:
        return False, ["'count' field must be set if 'path' is used"]
    if path and paths:
        return False, ["'paths' couldn't be used with 'path'"]
    if not ctx.selected:
        return ctx.negative, [] if ctx.negative else ["no manifest found"]
    messages = []
    for number, doc in enumerate(ctx.selected):
        lengths = {}
        for one in [path] if path else list(paths or []):
            values = jsonpath.find(doc, str(one))
            if not values:
                if not ctx.negative:
                    messages.append(f"DocumentIndex {number}: unknown path {one}")
                continue
            for value in values:
                if not isinstance(value, list) and count is None:
                    messages.append(f"DocumentIndex {number}: {one} is not array")
                    continue
                length = len(value) if isinstance(value, list) else 0  # as the plugin: null has 0
                lengths[one] = length
                if count is not None and (length == count) == ctx.negative:
                    messages.append(
                        f"DocumentIndex {number}: expected {one} {'NOT ' if ctx.negative else ''}to have {count} item(s), got {length}"
                    )
        if count is None and lengths and (len(set(lengths.values())) == 1) == ctx.negative:
            messages.append(f"DocumentIndex {number}: lengths of {sorted(lengths)}: {lengths}")
    return not messages, messages


def _has_documents(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    length = len(ctx.selected if spec.get("filterAware") else ctx.docs)
    if (length == spec["count"]) != ctx.negative:
        return True, []
    return False, [
        f"expected documents count {'NOT ' if ctx.negative else ''}to be {spec['count']}, got {length}"
    ]


def _contains_document(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    def matches(doc: Any) -> bool:
        if not isinstance(doc, dict):
            return False
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        return (
            doc.get("kind") == spec["kind"]
            and doc.get("apiVersion") == spec["apiVersion"]
            and ("name" not in spec or metadata.get("name") == spec["name"])
            and ("namespace" not in spec or metadata.get("namespace") == spec["namespace"])
        )

    wanted = ", ".join(
        f"{key} = {spec[key]}" for key in ("kind", "apiVersion", "name", "namespace") if key in spec
    )
    if not ctx.selected:
        return ctx.negative, [] if ctx.negative else [f"expected to contain a document {wanted}"]
    found = [matches(doc) for doc in ctx.selected]
    if ctx.negative:
        ok = not any(found)
    else:
        ok = any(found) if spec.get("any") else all(found)
    return ok, [] if ok else [
        f"expected {'NOT ' if ctx.negative else ''}to contain a document {wanted}"
    ]


def _snapshot(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    if ctx.snapshot is None:
        raise UnsupportedError("matchSnapshot needs a snapshot store")
    if not ctx.selected:
        return True, []  # nothing rendered: nothing to compare (as the plugin)
    path = spec.get("path", "")
    messages = []
    for number, doc in enumerate(ctx.selected):
        for content in [doc] if not path else jsonpath.find(doc, str(path)):
            matched, cached, new = ctx.snapshot(content)
            if matched == ctx.negative:
                diff = difflib.unified_diff(
                    cached.splitlines(), new.splitlines(), "snapshot", "rendered", lineterm=""
                )
                messages.append(
                    f"DocumentIndex {number}: differs from the snapshot:\n" + "\n".join(diff)
                )
            for key, negate in (("matchRegex", False), ("notMatchRegex", True)):
                if key in spec:
                    if not isinstance(spec[key], dict) or set(spec[key]) - {"pattern"}:
                        raise UnsupportedError(f"matchSnapshot.{key} takes only `pattern`")
                    if bool(go_regex(spec[key]["pattern"]).search(new)) == negate:
                        messages.append(
                            f"DocumentIndex {number}: snapshot {'does' if negate else 'does not'} match /{spec[key]['pattern']}/"
                        )
    return not messages, messages


def _snapshot_raw(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    # The snapshot of a .txt template is its raw text.
    return _snapshot({}, Context(ctx.docs, _raw_values(ctx), ctx.negative, ctx.snapshot))


def _error_matches(pattern: str, error: str) -> bool:
    """The plugin's errorPattern: a regex, also tried as a literal text when it has
    metacharacters (or is not a valid regex)."""
    try:
        if go_regex(pattern).search(error):
            return True
    except re.error:
        pass
    return pattern in error


def _failed_template(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    """``ctx.selected`` holds {raw: message} documents of the failure blamed on this template."""
    if "errorMessage" in spec and "errorPattern" in spec:
        return False, [
            "single attribute 'errorMessage' or 'errorPattern' supported at the same time"
        ]
    if not ctx.selected:
        return ctx.negative, [] if ctx.negative else [
            "expected the template to fail: no failed document"
        ]
    messages = []
    for doc in ctx.selected:
        actual = doc.get(RAW, "")
        if "errorPattern" in spec:
            ok = _error_matches(spec["errorPattern"], actual)
            what = f"to match /{spec['errorPattern']}/"
        elif "errorMessage" in spec:
            ok = actual == spec["errorMessage"]
            what = f"to equal {spec['errorMessage']!r}"
        else:
            continue
        if ok == ctx.negative:
            messages.append(
                f"expected the error {'NOT ' if ctx.negative else ''}{what}, got {actual!r}"
            )
    return not messages, messages


def _not_failed_template(spec: dict, ctx: Context) -> tuple[bool, list[str]]:
    return True, []  # reached only when rendering succeeded


def _types() -> dict[str, AssertType]:
    table = [
        ("equal", _equal, ("path", "value"), ("decodeBase64",)),
        ("greaterOrEqual", _compare("greater"), ("path", "value"), ()),
        ("lessOrEqual", _compare("less"), ("path", "value"), ()),
        ("equalRaw", _equal_raw, ("value",), ()),
        ("exists", _exists, ("path",), ()),
        ("matchRegex", _match_regex, ("path", "pattern"), ("decodeBase64",)),
        ("matchRegexRaw", _match_regex_raw, ("pattern",), ()),
        ("contains", _contains, ("path", "content"), ("count", "any")),
        ("isSubset", _is_subset, ("path", "content"), ()),
        ("isNullOrEmpty", _null_or_empty, ("path",), ()),
        ("lengthEqual", _length_equal, (), ("path", "paths", "count")),
        ("isType", _is_type, ("path", "type"), ()),
    ]
    types: dict[str, AssertType] = {}
    antonyms = {
        "equal": "notEqual", "greaterOrEqual": "notGreaterOrEqual", "lessOrEqual": "notLessOrEqual",
        "equalRaw": "notEqualRaw", "exists": "notExists", "matchRegex": "notMatchRegex",
        "matchRegexRaw": "notMatchRegexRaw", "contains": "notContains", "isSubset": "isNotSubset",
        "isNullOrEmpty": "isNotNullOrEmpty", "lengthEqual": "notLengthEqual", "isType": "isNotType",
    }  # fmt: skip
    for name, check, required, optional in table:
        types[name] = AssertType(name, check, required, optional)
        opt = tuple(o for o in optional if not (name == "contains" and o == "count"))
        types[antonyms[name]] = AssertType(antonyms[name], check, required, opt, antonym=True)
    aliases = {
        "isNotNull": ("exists", False),
        "isNull": ("exists", True),
        "isEmpty": ("isNullOrEmpty", False),
        "isNotEmpty": ("isNullOrEmpty", True),
    }
    for alias, (base, antonym) in aliases.items():
        original = types[base]
        types[alias] = AssertType(
            alias, original.check, original.required, original.optional, antonym=antonym
        )
    types["isKind"] = AssertType("isKind", _field_is("kind"), ("of",), ())
    types["isAPIVersion"] = AssertType("isAPIVersion", _field_is("apiVersion"), ("of",), ())
    types["hasDocuments"] = AssertType("hasDocuments", _has_documents, ("count",), ("filterAware",))
    types["containsDocument"] = AssertType(
        "containsDocument", _contains_document, ("kind", "apiVersion"), ("name", "namespace", "any")
    )
    types["matchSnapshot"] = AssertType(
        "matchSnapshot", _snapshot, (), ("path", "matchRegex", "notMatchRegex")
    )
    types["matchSnapshotRaw"] = AssertType("matchSnapshotRaw", _snapshot_raw, (), ())
    types["failedTemplate"] = AssertType(
        "failedTemplate",
        _failed_template,
        (),
        ("errorMessage", "errorPattern"),
        needs_render_success=False,
    )
    types["notFailedTemplate"] = AssertType("notFailedTemplate", _not_failed_template, (), ())
    return types


ASSERT_TYPES: dict[str, AssertType] = _types()


def validate_params(kind: AssertType, spec: Any, where: str) -> dict:
    """The parameters of an assertion, refusing unknown and missing ones."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise UnsupportedError(
            f"{where}: `{kind.name}` takes a mapping of parameters, got {spec!r}"
        )
    unknown = set(spec) - set(kind.required) - set(kind.optional)
    if unknown:
        raise UnsupportedError(
            f"{where}: `{kind.name}` has no parameter(s) {sorted(unknown)} "
            f"(it takes {sorted(kind.required + kind.optional)})"
        )
    missing = [key for key in kind.required if key not in spec]
    if missing:
        raise UnsupportedError(f"{where}: `{kind.name}` needs {missing}")
    return spec
