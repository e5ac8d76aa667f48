"""Run one helm-unittest test: values, release and templates as the plugin sets them, then the assertions."""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path
from typing import Any

from . import jsonpath, lookup, yamlcore
from .assertions import ASSERT_TYPES, Context
from .errors import UnsupportedError
from .render import (
    RAW,
    Capabilities,
    PostRenderer,
    Release,
    Rendered,
    RenderError,
    RenderRequest,
    is_partial,
    normalize_pattern,
    post_render,
    render,
)
from .snapshot import SnapshotStore
from .suite import Case, assertion_type
from .values import SetPathError, user_values

# The plugin version whose documented behaviour this runner follows (for `skip.minimumVersion`).
PLUGIN_VERSION = "1.1.0"


@dataclasses.dataclass
class TestResult:
    """The verdict on one test."""

    case: Case
    status: str  # "passed", "failed" or "skipped"
    failures: list[str]
    skip_reason: str = ""


def _version(text: str) -> tuple[int, ...]:
    return tuple(
        int(part) for part in str(text).lstrip("v").split("-")[0].split(".") if part.isdigit()
    )


def skip_reason(case: Case) -> str | None:
    """Why the test is skipped (suite ``skip`` or test ``skip``), or None."""
    suite_skip = case.suite.get("skip") or {}
    if suite_skip.get("reason"):
        return str(suite_skip["reason"])
    if suite_skip.get("minimumVersion") and _version(suite_skip["minimumVersion"]) > _version(
        PLUGIN_VERSION
    ):
        return f"needs plugin version {suite_skip['minimumVersion']} (this runner follows {PLUGIN_VERSION})"
    test_skip = case.test.get("skip") or {}
    if test_skip.get("reason"):
        return str(test_skip["reason"])
    return None


def _merged(case: Case, key: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source in (case.suite.get(key), case.test.get(key)):
        for name, value in (source or {}).items():
            if value is not None:
                merged[name] = value
    return merged


def _read_values(case: Case, path: str) -> Any:
    file = Path(path) if Path(path).is_absolute() else case.suite_file.parent / path
    if not file.exists():
        raise UnsupportedError(f"{case.name}: values file {path!r} not found (looked at {file})")
    return yamlcore.load(file.read_text())


def build_request(case: Case) -> RenderRequest:
    """What to render for this test."""
    files = [
        _read_values(case, str(p))
        for src in (case.suite, case.test)
        for p in src.get("values") or []
    ]
    sets = [src.get("set") or {} for src in (case.suite, case.test)]
    release = _merged(case, "release")
    caps = _merged(case, "capabilities")
    test_caps = case.test.get("capabilities") or {}
    if "apiVersions" in test_caps:
        # The plugin: a test's `apiVersions: []` keeps the suite's list, a null one drops it.
        if test_caps["apiVersions"] is None:
            caps.pop("apiVersions", None)
        elif not test_caps["apiVersions"]:
            caps["apiVersions"] = (case.suite.get("capabilities") or {}).get("apiVersions") or []
    chart = _merged(case, "chart")
    defaults = Release()
    providers = [
        p for p in (case.suite.get("kubernetesProvider"), case.test.get("kubernetesProvider")) if p
    ]
    objects, cluster_scoped = lookup.objects_and_scope(providers)
    return RenderRequest(
        chart=case.chart,
        templates=tuple(str(t) for t in case.suite.get("templates") or []),
        exclude=tuple(str(t) for t in case.suite.get("excludeTemplates") or []),
        values=user_values(files, sets),
        release=Release(
            name=str(release.get("name", defaults.name)),
            namespace=str(release.get("namespace", defaults.namespace)),
            revision=int(release.get("revision", defaults.revision)),
            upgrade=bool(release.get("upgrade", defaults.upgrade)),
        ),
        capabilities=Capabilities(
            major=str(caps["majorVersion"]) if "majorVersion" in caps else None,
            minor=str(caps["minorVersion"]) if "minorVersion" in caps else None,
            api_versions=tuple(str(a) for a in caps.get("apiVersions") or []),
        ),
        chart_version=str(chart["version"]) if "version" in chart else None,
        app_version=str(chart["appVersion"]) if "appVersion" in chart else None,
        include_crds=bool(case.suite.get("includeCrds")),
        lookup_objects=tuple(objects) if providers else None,
        cluster_scoped=frozenset(cluster_scoped),
    )


def _templates_for(case: Case, assertion: dict, rendered: Rendered) -> list[str] | str:
    """The templates an assertion looks at, or an error message."""
    if assertion.get("template"):
        patterns, defaults = [str(assertion["template"])], False
    elif case.test.get("templates"):
        patterns, defaults = [str(t) for t in case.test["templates"]], False
    elif case.test.get("template"):
        patterns, defaults = [str(case.test["template"])], False
    elif case.suite.get("templates"):
        patterns, defaults = [str(t) for t in case.suite["templates"]], True
    else:
        return sorted(rendered.selected)  # the plugin: no templates named means all of them
    known = rendered.selected
    if known == ["manifest.yaml"]:
        return known  # a post-renderer that dropped the file markers: one template (as the plugin)
    chosen: list[str] = []
    for pattern in patterns:
        normalized = normalize_pattern(pattern)
        if defaults and ("*" in pattern or "?" in pattern):
            chosen += [
                path
                for path in known
                if fnmatch.fnmatchcase(path, normalized) and path not in chosen
            ]
            continue
        if is_partial(normalized):
            continue
        if normalized not in known:
            if not defaults or "*" not in pattern:
                return f'template "{pattern}" not exists or not selected in test suite'
        chosen.append(normalized)
    return sorted(chosen)


def _select(docs: list[Any], index: int | None, selector: dict | None) -> list[Any] | str:
    if selector and selector.get("path"):
        matches = []
        for doc in docs:
            found = jsonpath.find(doc, str(selector["path"]))
            if any(
                "value" not in selector
                or selector["value"] is None
                or yamlcore.same(selector["value"], v)
                for v in found
            ):
                matches.append(doc)
        return matches
    if index is not None and index != -1:
        if index >= len(docs) or index < 0:
            return f"document index {index} is out of range"
        return [docs[index]]
    return docs


def _check(
    case: Case, number: int, assertion: dict, rendered: Rendered, store: SnapshotStore | None
) -> list[str]:
    where = f"assert #{number}"
    name, spec = assertion_type(where, assertion)
    kind = ASSERT_TYPES[name]
    negative = bool(assertion.get("not")) != kind.antonym
    failure = rendered.failure
    if failure is not None and kind.needs_render_success:
        return [f"{where} {name}: rendering failed: {failure.text}"]
    if failure is None and not kind.needs_render_success:
        return [f"{where} {name}: expected rendering to fail, it succeeded"]
    templates = _templates_for(case, assertion, rendered)
    if isinstance(templates, str):
        return [f"{where} {name}: {templates}"]
    index = case.test.get("documentIndex", assertion.get("documentIndex"))
    selector = assertion.get("documentSelector") or case.test.get("documentSelector")
    by_template: dict[str, list[Any]] = {}
    for template in templates:
        if failure is not None:
            blamed = failure.template
            hit = (
                blamed is None
                or blamed == template
                or is_partial(blamed)
                or blamed not in rendered.selected
            )
            by_template[template] = (
                [{RAW: failure.message if blamed else failure.text}] if hit else []
            )
        else:
            by_template[template] = rendered.documents.get(template, [])
    selected: dict[str, list[Any]] = {}
    total = 0
    for template, docs in by_template.items():
        picked = docs if failure is not None else _select(docs, index, selector)
        if isinstance(picked, str):
            return [f"{where} {name}: {picked}"]
        total += len(picked)
        if selector and selector.get("path") and failure is None:
            if not picked and not selector.get("skipEmptyTemplates"):
                return [f"{where} {name}: {template}: document not found by documentSelector"]
            if total > 1 and not selector.get("matchMany"):
                return [f"{where} {name}: multiple indexes found by documentSelector"]
            if not picked:
                continue
        selected[template] = picked
    messages: list[str] = []
    if not selected:
        if selector and selector.get("skipEmptyTemplates"):
            return []
        ok, info = kind.check(spec, Context([], [], negative, _snapshotter(case, store)))
        return [] if ok else [f"{where} {name}: {m}" for m in info]
    for template in sorted(selected):
        ctx = Context(
            by_template[template], selected[template], negative, _snapshotter(case, store)
        )
        try:
            ok, info = kind.check(spec, ctx)
        except jsonpath.PathError as error:
            ok, info = False, [str(error)]
        if not ok:
            messages += [f"{where} {name}: {template}: {m}" for m in info or ["failed"]]
    return messages


def _snapshotter(case: Case, store: SnapshotStore | None):  # noqa: ANN202
    if store is None:
        return None
    return lambda content: store.compare(str(case.test.get("it", "")), content)


def run_test(helm: str, case: Case, store: SnapshotStore | None = None) -> TestResult:
    """Render once and check every assertion of one test."""
    reason = skip_reason(case)
    if reason is not None:
        return TestResult(case, "skipped", [], reason)
    asserts = case.test["asserts"]
    parsed = [assertion_type(f"assert #{n}", a) for n, a in enumerate(asserts)]
    if store is None:
        store = SnapshotStore.load(case.suite_file)
    try:
        rendered = render(helm, build_request(case))
        post = case.test.get("postRenderer") or case.suite.get("postRenderer")
        if post and post.get("cmd"):
            args = tuple(str(a) for a in post.get("args") or [])
            rendered = post_render(rendered, PostRenderer(str(post["cmd"]), args))
    except (RenderError, SetPathError) as error:
        return TestResult(case, "failed", [str(error)])
    if rendered.failure is not None and all(
        ASSERT_TYPES[n].needs_render_success for n, _ in parsed
    ):
        return TestResult(case, "failed", [f"rendering failed: {rendered.failure.text}"])
    failures = []
    for number, assertion in enumerate(asserts):
        failures += _check(case, number, assertion, rendered, store)
    return TestResult(case, "failed" if failures else "passed", failures)


def run_case(helm: str, case: Case) -> list[str]:
    """The failure messages of one test (empty when it passes or is skipped)."""
    store = SnapshotStore.load(case.suite_file)
    result = run_test(helm, case, store)
    return result.failures
