"""Run helm-unittest suites (``charts/*/tests/*_test.yaml``) with the real ``helm template``.

The suites are written in the helm-unittest plugin's format, so that anyone
with the plugin can run ``helm unittest charts/ember-operator``. The plugin
cannot be installed on the machines this project is built on, so this module
runs the same files: each test renders the chart once with ``helm template``
(its values files, ``set`` values and release) and checks the assertions
against the rendered documents.

Only what the project's suites use is implemented. Anything else -- another
assertion type, an unknown key in a suite, a test or an assertion, a path
syntax that is not understood -- raises ``UnsupportedError`` rather than
passing silently. Supported:

* suite keys: ``suite``, ``templates``, ``values``, ``set``, ``release``, ``tests``
* test keys: ``it``, ``template``, ``templates``, ``values``, ``set``,
  ``release``, ``documentIndex``, ``asserts``
* assertion keys: one assertion type, plus ``template`` and ``documentIndex``
* assertion types: ``equal``, ``notEqual``, ``exists``, ``notExists``,
  ``contains`` (``content``, ``count``, ``any``),
  ``notContains``, ``isSubset``, ``matchRegex``, ``isKind``, ``isAPIVersion``,
  ``hasDocuments``, ``failedTemplate`` (``errorPattern``)
* paths: dotted keys, ``[N]`` list indexes and ``["key"]`` / ``['key']`` for
  keys holding dots or slashes, e.g. ``metadata.labels["app.kubernetes.io/name"]``

How documents are chosen, as in helm-unittest: the templates named by the
assertion's ``template``, else the test's ``template``/``templates``, else the
suite's ``templates`` (naming none is an error; ``templates/`` may be left
out, and shell wildcards work); within each template, the document at
``documentIndex`` (assertion, else test) or every document. ``hasDocuments``
counts the documents of each chosen template separately. Note that ``helm
template`` orders documents by kind across a template file; keep one kind per
template file when ``documentIndex`` matters.

Command line: ``python tools/helm_unittest.py [--helm PATH] CHART...`` runs every
suite of each chart and exits non-zero when a test fails.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

SUITE_KEYS = {"suite", "templates", "values", "set", "release", "tests"}
TEST_KEYS = {"it", "template", "templates", "values", "set", "release", "documentIndex", "asserts"}
ASSERT_MODIFIERS = {"template", "documentIndex"}
RELEASE_KEYS = {"name", "namespace"}
DEFAULT_RELEASE = {"name": "release-name", "namespace": "NAMESPACE"}

_MISSING = object()


class UnsupportedError(Exception):
    """The suite uses something this adapter does not implement."""


@dataclasses.dataclass
class Case:
    """One helm-unittest test of one suite of one chart."""

    chart: Path
    suite_file: Path
    suite: dict[str, Any]
    test: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.chart.name}/{self.suite_file.name}::{self.test.get('it', '?')}"


@dataclasses.dataclass
class Rendered:
    """What ``helm template`` produced: documents by template path, or an error."""

    documents: dict[str, list[Any]]
    error: str | None


# --- collecting -----------------------------------------------------------


def _check_keys(where: str, mapping: Any, allowed: set[str]) -> None:
    if not isinstance(mapping, dict):
        raise UnsupportedError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    unknown = set(mapping) - allowed
    if unknown:
        raise UnsupportedError(f"{where}: unsupported key(s) {sorted(unknown)}")


def collect(chart: Path) -> list[Case]:
    """All tests of all suites ``tests/*_test.yaml`` of a chart, in file order."""
    cases = []
    for suite_file in sorted((chart / "tests").glob("*_test.yaml")):
        suite = yaml.safe_load(suite_file.read_text())
        _check_keys(str(suite_file), suite, SUITE_KEYS)
        if not suite.get("tests"):
            raise UnsupportedError(f"{suite_file}: no tests")
        for index, test in enumerate(suite["tests"]):
            _check_keys(f"{suite_file} test #{index}", test, TEST_KEYS)
            if "it" not in test or "asserts" not in test:
                raise UnsupportedError(f"{suite_file} test #{index}: needs `it` and `asserts`")
            cases.append(Case(chart, suite_file, suite, test))
    return cases


# --- rendering --------------------------------------------------------------


def _release(case: Case) -> dict[str, str]:
    release = dict(DEFAULT_RELEASE)
    for source in (case.suite.get("release"), case.test.get("release")):
        if source:
            _check_keys(f"{case.name}: release", source, RELEASE_KEYS)
            release.update(source)
    return release


def _helm_args(case: Case) -> list[str]:
    release = _release(case)
    args = ["template", release["name"], str(case.chart), "--namespace", release["namespace"]]
    for source in (case.suite, case.test):
        for values_file in source.get("values") or []:
            args += ["--values", str((case.suite_file.parent / values_file).resolve())]
    for source in (case.suite, case.test):
        for key, value in (source.get("set") or {}).items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def split_documents(chart_name: str, output: str) -> dict[str, list[Any]]:
    """``helm template`` output as {"templates/x.yaml": [document, ...]}."""
    documents: dict[str, list[Any]] = {}
    source_re = re.compile(r"^# Source: " + re.escape(chart_name) + r"/(.+)$", re.MULTILINE)
    for chunk in re.split(r"^---\s*$", output, flags=re.MULTILINE):
        match = source_re.search(chunk)
        if not match:
            if chunk.strip():
                raise UnsupportedError(f"document without a '# Source:' line: {chunk[:200]!r}")
            continue
        document = yaml.safe_load(chunk)
        if document is not None:
            documents.setdefault(match.group(1), []).append(document)
    return documents


def render(helm: str, case: Case) -> Rendered:
    chart_name = yaml.safe_load((case.chart / "Chart.yaml").read_text())["name"]
    proc = subprocess.run(
        [helm, *_helm_args(case)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        return Rendered({}, proc.stderr.strip() or f"helm exited with {proc.returncode}")
    return Rendered(split_documents(chart_name, proc.stdout), None)


# --- paths ----------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""\.?(?P<key>[A-Za-z0-9_\-$/]+)|\[(?P<index>-?\d+)\]|\[(?P<q>["'])(?P<qkey>.*?)(?P=q)\]"""
)


def parse_path(path: str) -> list[str | int]:
    """``a.b[0]["c.d"]`` -> ["a", "b", 0, "c.d"]; anything else is unsupported."""
    tokens: list[str | int] = []
    position = 0
    if path.startswith("$."):
        position = 2
    while position < len(path):
        match = _TOKEN_RE.match(path, position)
        if not match or match.end() == position:
            raise UnsupportedError(f"path syntax not supported: {path!r} (at {path[position:]!r})")
        if match.group("key") is not None:
            tokens.append(match.group("key"))
        elif match.group("index") is not None:
            tokens.append(int(match.group("index")))
        else:
            tokens.append(match.group("qkey"))
        position = match.end()
    return tokens


def lookup(document: Any, path: str) -> Any:
    """The value at a path, or ``_MISSING``."""
    value = document
    for token in parse_path(path):
        if isinstance(token, int):
            if not isinstance(value, list) or not -len(value) <= token < len(value):
                return _MISSING
            value = value[token]
        else:
            if not isinstance(value, dict) or token not in value:
                return _MISSING
            value = value[token]
    return value


# --- assertions -------------------------------------------------------------


def _show(value: Any) -> str:
    if value is _MISSING:
        return "<missing>"
    return json.dumps(value, default=str)


def _is_subset(content: Any, value: Any) -> bool:
    return (
        isinstance(content, dict)
        and isinstance(value, dict)
        and all(key in value and value[key] == expected for key, expected in content.items())
    )


def _need(spec: Any, *keys: str, optional: tuple[str, ...] = ()) -> None:
    _check_keys("assertion", spec, set(keys) | set(optional))
    missing = [key for key in keys if key not in spec]
    if missing:
        raise UnsupportedError(f"assertion needs {missing}")


def _assert_equal(doc: Any, spec: dict) -> str | None:
    _need(spec, "path", "value")
    actual = lookup(doc, spec["path"])
    if actual is _MISSING or actual != spec["value"]:
        return f"{spec['path']}: expected {_show(spec['value'])}, got {_show(actual)}"
    return None


def _assert_not_equal(doc: Any, spec: dict) -> str | None:
    _need(spec, "path", "value")
    actual = lookup(doc, spec["path"])
    if actual is not _MISSING and actual == spec["value"]:
        return f"{spec['path']}: expected anything but {_show(spec['value'])}"
    return None


def _assert_exists(doc: Any, spec: dict) -> str | None:
    _need(spec, "path")
    if lookup(doc, spec["path"]) is _MISSING:
        return f"{spec['path']}: expected to exist"
    return None


def _assert_not_exists(doc: Any, spec: dict) -> str | None:
    _need(spec, "path")
    actual = lookup(doc, spec["path"])
    if actual is not _MISSING:
        return f"{spec['path']}: expected not to exist, got {_show(actual)}"
    return None


def _matches_in_list(doc: Any, spec: dict) -> tuple[Any, int | None]:
    actual = lookup(doc, spec["path"])
    if not isinstance(actual, list):
        return actual, None
    if spec.get("any"):
        return actual, sum(1 for item in actual if _is_subset(spec["content"], item))
    return actual, sum(1 for item in actual if item == spec["content"])


def _assert_contains(doc: Any, spec: dict) -> str | None:
    _need(spec, "path", "content", optional=("count", "any"))
    actual, found = _matches_in_list(doc, spec)
    if found is None:
        return f"{spec['path']}: expected a list, got {_show(actual)}"
    wanted = spec.get("count")
    if (wanted is None and found == 0) or (wanted is not None and found != wanted):
        times = "at least once" if wanted is None else f"{wanted} time(s)"
        return (
            f"{spec['path']}: expected to contain {_show(spec['content'])} {times}, "
            f"found {found} in {_show(actual)}"
        )
    return None


def _assert_not_contains(doc: Any, spec: dict) -> str | None:
    _need(spec, "path", "content", optional=("any",))
    actual, found = _matches_in_list(doc, spec)
    if found:
        return (
            f"{spec['path']}: expected not to contain {_show(spec['content'])}, got {_show(actual)}"
        )
    return None


def _assert_is_subset(doc: Any, spec: dict) -> str | None:
    _need(spec, "path", "content")
    actual = lookup(doc, spec["path"])
    if not _is_subset(spec["content"], actual):
        return f"{spec['path']}: expected to include {_show(spec['content'])}, got {_show(actual)}"
    return None


def _assert_match_regex(doc: Any, spec: dict) -> str | None:
    _need(spec, "path", "pattern")
    actual = lookup(doc, spec["path"])
    if not isinstance(actual, str) or not re.search(spec["pattern"], actual):
        return f"{spec['path']}: expected to match /{spec['pattern']}/, got {_show(actual)}"
    return None


def _assert_is_kind(doc: Any, spec: dict) -> str | None:
    _need(spec, "of")
    if doc.get("kind") != spec["of"]:
        return f"kind: expected {spec['of']}, got {doc.get('kind')}"
    return None


def _assert_is_api_version(doc: Any, spec: dict) -> str | None:
    _need(spec, "of")
    if doc.get("apiVersion") != spec["of"]:
        return f"apiVersion: expected {spec['of']}, got {doc.get('apiVersion')}"
    return None


DocumentAssertion = Callable[[Any, dict], "str | None"]

DOCUMENT_ASSERTIONS: dict[str, DocumentAssertion] = {
    "equal": _assert_equal,
    "notEqual": _assert_not_equal,
    "exists": _assert_exists,
    "notExists": _assert_not_exists,
    "contains": _assert_contains,
    "notContains": _assert_not_contains,
    "isSubset": _assert_is_subset,
    "matchRegex": _assert_match_regex,
    "isKind": _assert_is_kind,
    "isAPIVersion": _assert_is_api_version,
}
RENDER_ASSERTIONS = {"hasDocuments", "failedTemplate"}
SUPPORTED_ASSERTIONS = set(DOCUMENT_ASSERTIONS) | RENDER_ASSERTIONS


def _assertion_type(assertion: dict) -> tuple[str, Any]:
    if not isinstance(assertion, dict):
        raise UnsupportedError(f"assertion must be a mapping: {assertion!r}")
    types = [key for key in assertion if key not in ASSERT_MODIFIERS]
    if len(types) != 1:
        raise UnsupportedError(f"assertion needs exactly one type, got {types}")
    kind = types[0]
    if kind not in SUPPORTED_ASSERTIONS:
        raise UnsupportedError(
            f"assertion type {kind!r} is not implemented by tools/helm_unittest.py "
            f"(supported: {sorted(SUPPORTED_ASSERTIONS)})"
        )
    return kind, assertion[kind]


def _selected_templates(case: Case, assertion: dict) -> list[str]:
    if "template" in assertion:
        patterns = [assertion["template"]]
    elif "template" in case.test:
        patterns = [case.test["template"]]
    elif case.test.get("templates"):
        patterns = case.test["templates"]
    elif case.suite.get("templates"):
        patterns = case.suite["templates"]
    else:
        raise UnsupportedError(
            f"{case.name}: no template named by the assertion, the test or the suite"
        )
    # As in helm-unittest, the leading "templates/" may be left out.
    patterns = [p if p.startswith("templates/") else f"templates/{p}" for p in patterns]
    known = sorted(
        path.relative_to(case.chart).as_posix()
        for path in (case.chart / "templates").rglob("*")
        if path.is_file() and not path.name.startswith("_") and path.suffix in (".yaml", ".yml")
    )
    selected = [
        name for name in known if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
    ]
    for pattern in patterns:
        if not any(fnmatch.fnmatch(name, pattern) for name in known):
            raise UnsupportedError(f"{case.name}: no template file matches {pattern!r}")
    return selected


def check_assertion(case: Case, assertion: dict, rendered: Rendered) -> list[str]:
    """Failure messages of one assertion (empty when it holds)."""
    kind, spec = _assertion_type(assertion)
    if kind == "failedTemplate":
        _need(spec, "errorPattern")
        if rendered.error is None:
            return ["failedTemplate: expected rendering to fail, it succeeded"]
        if not re.search(spec["errorPattern"], rendered.error):
            return [f"failedTemplate: /{spec['errorPattern']}/ not in error: {rendered.error}"]
        return []
    if rendered.error is not None:
        return [f"{kind}: rendering failed: {rendered.error}"]
    templates = _selected_templates(case, assertion)
    if kind == "hasDocuments":
        _need(spec, "count")
        return [
            f"hasDocuments: {template}: expected {spec['count']}, got {len(rendered.documents.get(template, []))}"
            for template in templates
            if len(rendered.documents.get(template, [])) != spec["count"]
        ]
    index = assertion.get("documentIndex", case.test.get("documentIndex"))
    failures = []
    checked = 0
    for template in templates:
        documents = rendered.documents.get(template, [])
        if index is not None:
            if not 0 <= index < len(documents):
                failures.append(f"{template}: no document {index} (it has {len(documents)})")
                continue
            documents = [documents[index]]
        for number, document in enumerate(documents):
            checked += 1
            problem = DOCUMENT_ASSERTIONS[kind](document, spec)
            if problem:
                where = index if index is not None else number
                failures.append(f"{kind}: {template}[{where}] {problem}")
    if not checked and not failures:
        failures.append(f"{kind}: no document rendered by {templates}")
    return failures


def run_case(helm: str, case: Case) -> list[str]:
    """Render once and check every assertion; returns the failure messages."""
    asserts = case.test["asserts"]
    for assertion in asserts:  # refuse unsupported assertions before rendering
        _assertion_type(assertion)
    rendered = render(helm, case)
    failures = []
    for number, assertion in enumerate(asserts):
        for problem in check_assertion(case, copy.deepcopy(assertion), rendered):
            failures.append(f"assert #{number}: {problem}")
    return failures


def iter_results(helm: str, charts: list[Path]) -> Iterator[tuple[Case, list[str]]]:
    for chart in charts:
        for case in collect(chart):
            yield case, run_case(helm, case)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", default=os.environ.get("HELM", ".tools/bin/helm"))
    parser.add_argument("charts", nargs="+", type=Path)
    args = parser.parse_args(argv)
    passed = failed = 0
    for case, failures in iter_results(args.helm, args.charts):
        if failures:
            failed += 1
            print(f"FAIL {case.name}")
            for failure in failures:
                print(f"     {failure}")
        else:
            passed += 1
            print(f"ok   {case.name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
