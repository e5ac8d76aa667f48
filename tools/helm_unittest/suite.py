"""helm-unittest suite files: finding, reading and checking them.

A suite file may hold several suites separated by ``---``. Every key of a
suite, a test and an assertion is checked against the plugin's documented
keys; a key the plugin does not know, or one this runner does not implement,
raises ``UnsupportedError`` naming it.
"""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path
from typing import Any

from . import yamlcore
from .assertions import ASSERT_TYPES, validate_params
from .errors import UnsupportedError

SUITE_KEYS = {
    "suite", "values", "set", "templates", "excludeTemplates", "includeCrds", "release",
    "capabilities", "chart", "kubernetesProvider", "skip", "postRenderer", "tests",
}  # fmt: skip
TEST_KEYS = {
    "it", "values", "set", "template", "templates", "documentIndex", "documentSelector",
    "release", "capabilities", "chart", "kubernetesProvider", "skip", "postRenderer", "asserts",
}  # fmt: skip
ASSERT_KEYS = {"not", "template", "documentIndex", "documentSelector"}
RELEASE_KEYS = {"name", "namespace", "revision", "upgrade"}
CAPABILITIES_KEYS = {"majorVersion", "minorVersion", "apiVersions"}
CHART_KEYS = {"version", "appVersion"}
SKIP_KEYS = {"reason", "minimumVersion"}
POST_RENDERER_KEYS = {"cmd", "args"}
SELECTOR_KEYS = {"path", "value", "matchMany", "skipEmptyTemplates"}
# Documented keys this runner cannot honour with `helm template`: they fail the run.
NOT_IMPLEMENTED: set[str] = set()
PROVIDER_KEYS = {"scheme", "objects"}
DEFAULT_GLOB = "tests/*_test.yaml"


@dataclasses.dataclass
class Case:
    """One test of one suite of one chart."""

    chart: Path
    suite_file: Path
    suite: dict[str, Any]
    test: dict[str, Any]
    suite_index: int = 0

    @property
    def name(self) -> str:
        where = (
            self.suite_file.name
            if not self.suite_index
            else f"{self.suite_file.name}#{self.suite_index}"
        )
        return f"{self.chart.name}/{where}::{self.test.get('it', '?')}"


def check_keys(where: str, mapping: Any, allowed: set[str]) -> dict[str, Any]:
    """``mapping`` itself; raises when it is not a mapping or has a key not in ``allowed``."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise UnsupportedError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    unknown = set(mapping) - allowed
    if unknown:
        raise UnsupportedError(
            f"{where}: unknown key(s) {sorted(unknown)} (known: {sorted(allowed)})"
        )
    for key in sorted(set(mapping) & NOT_IMPLEMENTED):
        if mapping[key]:
            raise UnsupportedError(f"{where}: `{key}` is not implemented by tools/helm_unittest")
    return mapping


def assertion_type(where: str, assertion: Any) -> tuple[str, dict[str, Any]]:
    """The type name and parameters of an assertion, checked."""
    if not isinstance(assertion, dict):
        raise UnsupportedError(f"{where}: an assertion must be a mapping, got {assertion!r}")
    types = [key for key in assertion if key not in ASSERT_KEYS]
    if len(types) != 1:
        raise UnsupportedError(
            f"{where}: an assertion needs exactly one assertion type, got {types}"
        )
    name = types[0]
    if name not in ASSERT_TYPES:
        raise UnsupportedError(
            f"{where}: assertion type `{name}` is invalid (known: {sorted(ASSERT_TYPES)})"
        )
    if "documentSelector" in assertion:
        check_keys(f"{where}: documentSelector", assertion["documentSelector"], SELECTOR_KEYS)
    return name, validate_params(ASSERT_TYPES[name], assertion[name], where)


def _check_suite(where: str, suite: Any) -> None:
    check_keys(where, suite, SUITE_KEYS)
    for key, allowed in (
        ("release", RELEASE_KEYS),
        ("capabilities", CAPABILITIES_KEYS),
        ("chart", CHART_KEYS),
        ("skip", SKIP_KEYS),
        ("postRenderer", POST_RENDERER_KEYS),
        ("kubernetesProvider", PROVIDER_KEYS),
    ):
        check_keys(f"{where}: {key}", suite.get(key), allowed)
    if not isinstance(suite.get("tests"), list) or not suite["tests"]:
        raise UnsupportedError(f"{where}: `tests` must be a non-empty list")
    for index, test in enumerate(suite["tests"]):
        test_where = (
            f"{where} test #{index} ({test.get('it', '?') if isinstance(test, dict) else test!r})"
        )
        check_keys(test_where, test, TEST_KEYS)
        for key, allowed in (
            ("release", RELEASE_KEYS),
            ("capabilities", CAPABILITIES_KEYS),
            ("chart", CHART_KEYS),
            ("skip", {"reason"}),
            ("documentSelector", SELECTOR_KEYS),
            ("postRenderer", POST_RENDERER_KEYS),
            ("kubernetesProvider", PROVIDER_KEYS),
        ):
            check_keys(f"{test_where}: {key}", test.get(key), allowed)
        if not isinstance(test.get("asserts"), list) or not test["asserts"]:
            raise UnsupportedError(f"{test_where}: `asserts` must be a non-empty list")
        for number, assertion in enumerate(test["asserts"]):
            assertion_type(f"{test_where} assert #{number}", assertion)


def load_suites(chart: Path, suite_file: Path) -> list[Case]:
    """Every test of every suite in one file (suites separated by ``---``)."""
    cases = []
    documents = [doc for doc in yamlcore.load_all(suite_file.read_text()) if doc is not None]
    for index, suite in enumerate(documents):
        where = str(suite_file) if len(documents) == 1 else f"{suite_file} suite #{index}"
        _check_suite(where, suite)
        for test in suite["tests"]:
            cases.append(Case(chart, suite_file, suite, test, index))
    return cases


def suite_files(chart: Path, patterns: list[str] | None = None) -> list[Path]:
    """The suite files of a chart: ``-f`` globs relative to the chart (``**`` allowed)."""
    found: set[Path] = set()
    for pattern in patterns or [DEFAULT_GLOB]:
        for match in glob.glob(str(chart / pattern), recursive=True):
            path = Path(match)
            if path.is_file():
                found.add(path)
    return sorted(found)


def _value_at(values: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(values, dict) or key not in values:
            return None
        values = values[key]
    return values


def enabled_by_parent(parent: Path, sub: Path) -> bool:
    """Whether the parent's default values enable the subchart (its ``condition``, else its
    ``tags``); the plugin does not run the suites of a subchart the parent disables."""
    meta = yamlcore.load((parent / "Chart.yaml").read_text()) or {}
    values_file = parent / "values.yaml"
    values = (yamlcore.load(values_file.read_text()) if values_file.exists() else None) or {}
    name = (yamlcore.load((sub / "Chart.yaml").read_text()) or {}).get("name", sub.name)
    deps = [d for d in meta.get("dependencies") or [] if d.get("name") == name]
    if not deps:
        return True
    for dep in deps:
        for path in str(dep.get("condition") or "").split(","):
            decided = _value_at(values, path.strip()) if path.strip() else None
            if isinstance(decided, bool):
                if decided:
                    return True
                break
        else:
            tags = dep.get("tags") or []
            settings = [_value_at(values, f"tags.{tag}") for tag in tags]
            if not tags or any(s is True for s in settings) or all(s is None for s in settings):
                return True
    return False


def subchart_suite_files(chart: Path, patterns: list[str] | None = None) -> list[tuple[Path, Path]]:
    """(subchart, suite file) of the suites of the chart's unpacked subcharts, at any depth,
    as the plugin runs them by default (``--with-subchart``): each tests its own chart,
    rendered on its own (so also a subchart the parent disables)."""
    found = []
    charts = chart / "charts"
    if charts.is_dir():
        for sub in sorted(charts.iterdir()):
            if sub.is_dir() and (sub / "Chart.yaml").exists() and enabled_by_parent(chart, sub):
                found += [(sub, path) for path in suite_files(sub, patterns)]
                found += subchart_suite_files(sub, patterns)
    return found


def collect(chart: Path, patterns: list[str] | None = None) -> list[Case]:
    """All tests of all suites of a chart, in file order."""
    return [
        case
        for suite_file in suite_files(chart, patterns)
        for case in load_suites(chart, suite_file)
    ]
