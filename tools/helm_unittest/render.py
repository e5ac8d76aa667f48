"""Render the templates one helm-unittest test selects, the way the plugin does, with ``helm template``.

The plugin renders a chart with Helm's engine itself: only the suite's
``templates`` (partials ``_*``/``*.tpl`` always included), each file's output
split at ``---`` in the order the template wrote it, ``.txt`` files kept as raw
text, and its own ``.Release`` defaults. ``helm template`` instead renders
every template, re-orders documents by kind, refuses release names such as
``RELEASE-NAME`` and fixes the revision at 1. So the chart is copied to a
temporary directory and prepared first:

* templates that are not selected are removed (so a fault in them cannot fail
  a test that does not look at them);
* each selected template is wrapped: its text becomes a named template of its
  own, and the file outputs one document holding that template's rendered text
  (base64), after setting ``.Release`` to the test's release. The rendered
  text is then split here, exactly as the plugin splits it. ``.Template.Name``
  and error positions are unchanged by the wrapping (same file, same lines);
* ``NOTES.txt``, which ``helm template`` never prints, is printed by a
  companion template;
* packaged subcharts (``charts/*.tgz``) are unpacked, and the suite's
  ``chart`` overrides are written into ``Chart.yaml``.

Template paths are relative to the chart: ``templates/x.yaml``,
``charts/sub/templates/y.yaml``, ``crds/z.yaml``.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import functools
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

from . import lookup, yamlcore

RAW = "raw"  # the key under which a .txt template's text (or a render error) is kept
_WRAP_PREFIX = "__ember_unittest__/"
_DEFINE_RE = re.compile(r"\{\{-?\s*(define|block)\b")
_SPLIT_RE = re.compile(r"(?m)^---[ \t]*(?:#.*)?$")


@dataclasses.dataclass(frozen=True)
class Release:
    """``.Release`` as the plugin sets it (its defaults)."""

    name: str = "RELEASE-NAME"
    namespace: str = "NAMESPACE"
    revision: int = 0
    upgrade: bool = False


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """``.Capabilities`` overrides; None keeps helm's default."""

    major: str | None = None
    minor: str | None = None
    api_versions: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RenderRequest:
    """Everything one render depends on."""

    chart: Path
    templates: tuple[str, ...]  # suite `templates` patterns; empty = all
    exclude: tuple[str, ...] = ()
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    release: Release = Release()
    capabilities: Capabilities = Capabilities()
    chart_version: str | None = None
    app_version: str | None = None
    include_crds: bool = False
    # kubernetesProvider: the objects `lookup` finds (None: `lookup` finds nothing, as helm's)
    lookup_objects: tuple[dict[str, Any], ...] | None = None
    cluster_scoped: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class RenderFailure:
    """helm failed: the template it blames (None when it names none) and the message."""

    template: str | None
    message: str
    text: str  # helm's whole error output


@dataclasses.dataclass
class Rendered:
    """The output of each rendered template (path -> raw text), or the failure."""

    raw: dict[str, str]
    documents: dict[str, list[Any]]
    failure: RenderFailure | None
    selected: list[str]  # every template path the suite selected and helm was asked to render
    chart_name: str = ""


@dataclasses.dataclass(frozen=True)
class PostRenderer:
    """A suite's or test's ``postRenderer``: a command reading and writing manifests."""

    cmd: str
    args: tuple[str, ...] = ()


_FILE_MARK = "#### file:"


def post_render(rendered: Rendered, post: PostRenderer) -> Rendered:
    """Run the post-renderer as the plugin does: every file's output, in name order, each after a
    ``---`` / ``#### file: <chart>/<path>`` line, on its stdin; its output split at those lines.
    Output without them becomes the one template ``manifest.yaml``."""
    if rendered.failure is not None:
        return rendered
    prefix = rendered.chart_name + "/"
    merged = "".join(
        f"---\n{_FILE_MARK} {prefix}{path}\n{rendered.raw[path].strip()}\n"
        for path in sorted(rendered.raw, key=lambda p: prefix + p)
    )
    try:
        proc = subprocess.run(
            [post.cmd, *post.args],
            input=merged,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except OSError as error:
        raise RenderError(f"post-render failed: {post.cmd}: {error}") from error
    if proc.returncode != 0:
        raise RenderError(
            f"post-render failed: {post.cmd} exited with {proc.returncode}: {proc.stderr.strip()}"
        )
    raw: dict[str, str] = {}
    for block in re.split(r"(?m)^---\n(?=" + re.escape(_FILE_MARK) + ")", proc.stdout):
        match = re.match(re.escape(_FILE_MARK) + r" (.*)\n", block)
        if match:
            path = match.group(1).strip().removeprefix(prefix)
            raw[path] = block[match.end() :]
    if not raw:
        raw = {"manifest.yaml": proc.stdout}
    documents = {
        path: [{RAW: text}] if path.endswith(".txt") else split_documents(text)
        for path, text in raw.items()
    }
    return Rendered(raw, documents, None, sorted(raw), rendered.chart_name)


class RenderError(Exception):
    """The rendered output cannot be read (e.g. a template writes invalid YAML)."""


def normalize_pattern(pattern: str) -> str:
    """The plugin lets ``templates/`` be left out of a template path."""
    pattern = pattern.lstrip("./") if pattern.startswith("./") else pattern
    if pattern.startswith(("templates/", "charts/", "crds/")):
        return pattern
    return "templates/" + pattern


def is_partial(path: str) -> bool:
    """A partial (``_*``), rendered with every selection. (The plugin's DOCUMENT.md also names
    ``*.tpl``, but the plugin renders a ``.tpl`` file only when the suite selects it.)"""
    return path.rsplit("/", 1)[-1].startswith("_")


def _chart_meta(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "Chart.yaml").read_text()) or {}


def _chart_dirs(root: Path) -> list[tuple[Path, list[str]]]:
    """(directory, path prefixes) of the chart and of every unpacked subchart.

    A subchart renders as ``charts/<name>/``, or once per alias when the parent's
    dependencies give it aliases (``charts/<alias>/``)."""
    found: list[tuple[Path, list[str]]] = [(root, [""])]
    charts = root / "charts"
    if not charts.is_dir():
        return found
    dependencies = _chart_meta(root).get("dependencies") or []
    for sub in sorted(charts.iterdir()):
        if not (sub.is_dir() and (sub / "Chart.yaml").exists()):
            continue
        name = str(_chart_meta(sub).get("name", sub.name))
        names = [str(d.get("alias") or name) for d in dependencies if d.get("name") == name] or [
            name
        ]
        for directory, prefixes in _chart_dirs(sub):
            found.append((directory, [f"charts/{n}/{p}" for n in names for p in prefixes]))
    return found


def _file_paths(root: Path) -> list[tuple[Path, str, list[str]]]:
    """Every template file (partials left out): its path in its chart, the paths it renders under."""
    files = []
    for directory, prefixes in _chart_dirs(root):
        templates = directory / "templates"
        if templates.is_dir():
            for path in sorted(templates.rglob("*")):
                local = path.relative_to(directory).as_posix()
                if path.is_file() and not is_partial(local):
                    files.append((path, local, [prefix + local for prefix in prefixes]))
    return files


def template_files(root: Path) -> list[str]:
    """Every template path of a chart and its subcharts (partials left out)."""
    return sorted(rel for _, _, rels in _file_paths(root) for rel in rels)


def select(available: list[str], patterns: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    """The templates the suite's ``templates``/``excludeTemplates`` select (all when none named)."""
    wanted = [normalize_pattern(p) for p in patterns] or ["*"]
    unwanted = [normalize_pattern(p) for p in exclude]
    return [
        path
        for path in available
        if any(fnmatch.fnmatchcase(path, p) for p in wanted)
        and not any(fnmatch.fnmatchcase(path, p) for p in unwanted)
    ]


def _go_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def _release_setup(release: Release) -> str:
    settings = {
        "Name": release.name,
        "Namespace": release.namespace,
        "Revision": release.revision,
        "IsUpgrade": release.upgrade,
        "IsInstall": not release.upgrade,
    }
    return "".join(
        f"{{{{- $_ := set .Release {json.dumps(key)} {_go_literal(value)} -}}}}"
        for key, value in settings.items()
    )


def _emit(name: str, rel: str | None = None) -> str:
    where = json.dumps(rel) if rel else "{{ .Template.Name | quote }}"
    return (
        f"eut-file: {where}\n"
        f"eut-raw: {{{{ include {json.dumps(_WRAP_PREFIX + name)} . | b64enc | quote }}}}\n"
    )


def _unpack_subcharts(directory: Path) -> None:
    charts = directory / "charts"
    if not charts.is_dir():
        return
    for packed in sorted(charts.glob("*.tgz")):
        with tarfile.open(packed) as archive:
            archive.extractall(charts, filter="data")
        packed.unlink()
    for sub in charts.iterdir():
        if sub.is_dir():
            _unpack_subcharts(sub)


def _expand_aliases(directory: Path) -> None:
    """Give every aliased dependency a chart directory of its own, named after the alias.

    Helm 3's engine (the plugin's) renders a chart listed twice, once under an alias,
    twice; Helm 4 renders it once. A copy per alias gives Helm 3's result with both."""
    chart_file = directory / "Chart.yaml"
    meta = _chart_meta(directory)
    charts = directory / "charts"
    dependencies = meta.get("dependencies") or []
    if charts.is_dir() and any(d.get("alias") for d in dependencies):
        by_name = {
            str(_chart_meta(sub).get("name")): sub
            for sub in charts.iterdir()
            if sub.is_dir() and (sub / "Chart.yaml").exists()
        }
        plain = {d.get("name") for d in dependencies if not d.get("alias")}
        for dep in dependencies:
            alias, source = dep.get("alias"), by_name.get(str(dep.get("name")))
            if not alias or source is None or alias == dep.get("name"):
                continue
            target = charts / str(alias)
            if not target.exists():
                shutil.copytree(source, target)
                sub_meta = _chart_meta(target)
                sub_meta["name"] = str(alias)
                (target / "Chart.yaml").write_text(yaml.safe_dump(sub_meta, sort_keys=False))
            dep["name"] = str(alias)
            del dep["alias"]
        for name, source in by_name.items():
            if name not in plain and source.name not in {d.get("name") for d in dependencies}:
                shutil.rmtree(source)
        chart_file.write_text(yaml.safe_dump(meta, sort_keys=False))
    if charts.is_dir():
        for sub in charts.iterdir():
            if sub.is_dir() and (sub / "Chart.yaml").exists():
                _expand_aliases(sub)


def _override_chart(directory: Path, version: str | None, app_version: str | None) -> None:
    for chart_dir, _ in _chart_dirs(directory):  # the plugin overrides every dependency too
        chart_file = chart_dir / "Chart.yaml"
        meta = yaml.safe_load(chart_file.read_text())
        if version is not None:
            meta["version"] = str(version)
        if app_version is not None:
            meta["appVersion"] = str(app_version)
        chart_file.write_text(yaml.safe_dump(meta, sort_keys=False))


def prepare(request: RenderRequest, workdir: Path) -> tuple[Path, list[str], list[str]]:
    """Copy and prepare the chart; returns (copy, selected templates, wrapped templates)."""
    copy = workdir / "chart"
    shutil.copytree(request.chart, copy, symlinks=False, ignore=shutil.ignore_patterns(".git"))
    _unpack_subcharts(copy)
    _expand_aliases(copy)
    for lock in copy.rglob("Chart.lock"):
        lock.unlink()  # the dependencies were rewritten; helm would find the lock out of date
    root_name = yaml.safe_load((copy / "Chart.yaml").read_text())["name"]
    selected = select(template_files(copy), request.templates, request.exclude)
    wrapped = []
    setup = _release_setup(request.release)
    notes: dict[Path, list[tuple[str, str]]] = {}
    if request.lookup_objects is not None:
        for template in copy.rglob("templates/**/*"):
            if template.is_file():
                template.write_text(lookup.rewrite(template.read_text()))
        (copy / "templates").mkdir(exist_ok=True)
        (copy / "templates" / lookup.PARTIAL_FILE).write_text(
            lookup.partial(list(request.lookup_objects), set(request.cluster_scoped))
        )
    for path, local, rels in _file_paths(copy):
        if not any(rel in selected for rel in rels):
            path.unlink()
            continue
        text = path.read_text()
        if _DEFINE_RE.search(text):
            # A define cannot be nested: helm's own output is used for this file (its
            # documents then come in helm's kind order); it still sets the release first.
            path.write_text(setup + text)
            continue
        rel = rels[0]
        name = f"{root_name}/{rel}"
        # Rendered as itself, the file emits its output; included by another template
        # (e.g. for a checksum of it), it gives its original output.
        path.write_text(
            f"{{{{ define {json.dumps(_WRAP_PREFIX + name)} }}}}{text}{{{{ end }}}}"
            f"{{{{- if hasSuffix {json.dumps('/' + local)} .Template.Name -}}}}{setup}{_emit(name)}"
            f"{{{{- else -}}}}{{{{ include {json.dumps(_WRAP_PREFIX + name)} . }}}}{{{{- end -}}}}"
        )
        if path.name == "NOTES.txt":
            for one in rels:
                notes.setdefault(path.parent, []).append((name, one))
        wrapped += rels
    for templates, entries in notes.items():
        companion = "\n---\n".join(_emit(name, rel) for name, rel in entries)
        (templates / "zz-ember-unittest-notes.yaml").write_text(setup + companion)
    if request.chart_version is not None or request.app_version is not None:
        _override_chart(copy, request.chart_version, request.app_version)
    return copy, selected, wrapped


@functools.lru_cache(maxsize=8)
def default_kube_version(helm: str) -> tuple[str, str]:
    """(major, minor) of the Kubernetes version ``helm template`` assumes by default."""
    with tempfile.TemporaryDirectory(prefix="ember-unittest-kube-") as tmp:
        chart = Path(tmp)
        (chart / "templates").mkdir()
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
        (chart / "templates" / "v.yaml").write_text(
            "v: {{ .Capabilities.KubeVersion.Major }}.{{ .Capabilities.KubeVersion.Minor }}\n"
        )
        proc = subprocess.run(
            [helm, "template", "probe", str(chart)], capture_output=True, text=True, timeout=60
        )
    match = re.search(r"^v: (\d+)\.(\d+)", proc.stdout, re.MULTILINE)
    return (match.group(1), match.group(2)) if match else ("1", "20")


def helm_args(
    request: RenderRequest,
    chart_copy: Path,
    values_file: Path,
    default_kube: tuple[str, str] = ("1", "20"),
) -> list[str]:
    """The ``helm template`` command line (after the helm binary); a capability the test
    does not set keeps ``default_kube`` (helm's own default)."""
    args = ["template", "release-name", str(chart_copy), "--values", str(values_file)]
    args += ["--namespace", request.release.namespace or "default"]
    if request.release.upgrade:
        args.append("--is-upgrade")
    caps = request.capabilities
    if caps.major is not None or caps.minor is not None:
        major = caps.major if caps.major is not None else default_kube[0]
        minor = caps.minor if caps.minor is not None else default_kube[1]
        args += ["--kube-version", f"v{major}.{minor}.0"]
    for api in caps.api_versions:
        args += ["--api-versions", api]
    if request.include_crds:
        args.append("--include-crds")
    return args


_ERROR_AT_RE = re.compile(r"^(?:.+?: |.+? \()(?P<file>[^\s()]+?):\d+:\d+\)?.*?: (?P<message>.+)$")
_HELM4_AT_RE = re.compile(r"^(?P<file>[^\s]+?):\d+:\d+$")


_WRAPPER_CALL_RE = re.compile(
    r'[^\s:]+:\d+:\d+: executing "[^"]*" at <include "' + re.escape(_WRAP_PREFIX) + r'[^"]*" \.>: '
    r"error calling include: template: "
)


def _unwrap_error(lines: list[str]) -> list[str]:
    """Drop the layer the wrapping adds to helm's error ("error calling include" of the wrapper)."""
    out = list(lines)
    while (
        len(out) > 3
        and _HELM4_AT_RE.match(out[0])
        and f'<include "{_WRAP_PREFIX}' in out[1]
        and out[2].strip() == "error calling include:"
    ):
        out = out[3:]
    out = [_WRAPPER_CALL_RE.sub("", line) for line in out]
    return [line.replace(_WRAP_PREFIX, "") for line in out]


def parse_failure(stderr: str, root_name: str) -> RenderFailure:
    """helm's error output -> the template blamed and the human-readable message."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if lines and lines[-1].startswith("Use --debug flag"):
        lines.pop()
    if lines and lines[0].startswith("Error: "):
        lines[0] = lines[0][len("Error: ") :]
    lines = _unwrap_error(lines)
    text = "\n".join(lines)
    template = message = None
    if lines:
        helm4 = _HELM4_AT_RE.match(lines[0])
        if helm4 and len(lines) > 2:
            # Helm 4 breaks "file:l:c: executing ... at <...>: cause: cause" into lines.
            template = helm4.group("file")
            message = " ".join(line.strip() for line in lines[2:])
        elif helm4 and len(lines) > 1:
            template, message = helm4.group("file"), lines[-1].strip()
        else:
            match = _ERROR_AT_RE.match(lines[0])
            if match:
                template, message = match.group("file"), match.group("message")
                if len(lines) > 1:
                    message = "\n".join(lines[1:])
    if template is not None:
        template = template.removeprefix(_WRAP_PREFIX)
        template = template.split("/", 1)[1] if template.startswith(root_name + "/") else template
    return RenderFailure(template, message if message is not None else text, text)


def split_documents(raw: str) -> list[Any]:
    """A template's output as the plugin reads it: YAML documents, empty ones dropped."""
    documents = []
    for chunk in _SPLIT_RE.split(raw):
        try:
            loaded = yamlcore.load_all(chunk)
        except yaml.YAMLError as error:
            raise RenderError(f"the rendered output is not valid YAML: {error}") from error
        documents.extend(doc for doc in loaded if doc not in (None, {}, [], ""))
    return documents


def _read_output(stdout: str, root_name: str) -> tuple[dict[str, str], dict[str, list[Any]]]:
    raw: dict[str, str] = {}
    unwrapped: dict[str, list[Any]] = {}
    source_re = re.compile(r"^# Source: (.+)$", re.MULTILINE)
    for chunk in _SPLIT_RE.split(stdout):
        if not chunk.strip():
            continue
        document = yamlcore.load(chunk)
        if isinstance(document, dict) and "eut-raw" in document:
            text = base64.b64decode(document["eut-raw"] or "").decode()
            where = str(document["eut-file"])
            where = where.split("/", 1)[1] if where.startswith(root_name + "/") else where
            # Helm's engine drops every "<no value>" from a template's output.
            raw[where] = text.replace("<no value>", "")
            continue
        match = source_re.search(chunk)
        if match is None:
            continue
        source = match.group(1)
        source = source.split("/", 1)[1] if source.startswith(root_name + "/") else source
        if document not in (None, {}):
            unwrapped.setdefault(source, []).append(document)
    return raw, unwrapped


def render(helm: str, request: RenderRequest) -> Rendered:
    """Render the selected templates with ``helm template`` (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="ember-unittest-") as tmp:
        workdir = Path(tmp)
        chart_copy, selected, wrapped = prepare(request, workdir)
        root_name = yaml.safe_load((chart_copy / "Chart.yaml").read_text())["name"]
        values_file = workdir / "values.yaml"
        values_file.write_text(yaml.safe_dump(request.values, sort_keys=False))
        proc = subprocess.run(
            [helm, *helm_args(request, chart_copy, values_file, default_kube_version(helm))],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if proc.returncode != 0:
        return Rendered(
            {},
            {},
            parse_failure(proc.stderr or f"helm exited with {proc.returncode}", root_name),
            selected,
        )
    raw, unwrapped = _read_output(proc.stdout, root_name)
    documents: dict[str, list[Any]] = {}
    for path in selected:
        if path in raw:
            if path.endswith(".txt"):
                documents[path] = [{RAW: raw[path]}]
            else:
                documents[path] = split_documents(raw[path])
        elif path not in wrapped:
            documents[path] = unwrapped.get(path, [])
    for path, docs in unwrapped.items():
        if path.startswith("crds/") or "/crds/" in path:
            documents[path] = docs
            selected.append(path)
    return Rendered(raw, documents, None, selected, root_name)
