"""``kubernetesProvider``: the objects ``lookup`` finds, without a cluster.

The plugin answers ``lookup`` from a fake client holding the suite's and the
test's ``kubernetesProvider.objects``. ``helm template`` has no such hook and
``lookup`` is a built-in function, so in the chart copy every call
``lookup API KIND NAMESPACE NAME`` is rewritten to
``(fromJson (include "<ours>" (list API KIND NAMESPACE NAME)))``, and a partial
defining ``<ours>`` answers from the objects: the object (or ``{}``) for a
name, a ``<Kind>List`` of the matching objects for an empty name. A kind the
``scheme`` marks ``namespaced: false`` ignores the namespace.
"""

from __future__ import annotations

import json
import re
from typing import Any

TEMPLATE_NAME = "__ember_unittest_lookup__"
PARTIAL_FILE = "_ember_unittest_lookup.tpl"
_ACTION_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LOOKUP_RE = re.compile(r"(?<![.$\w])lookup(?![\w.])")


def _skip_string(text: str, pos: int) -> int:
    quote = text[pos]
    pos += 1
    while pos < len(text) and text[pos] != quote:
        pos += 2 if quote == '"' and text[pos] == "\\" else 1
    return pos + 1


def _strings_mask(body: str) -> list[bool]:
    """Which characters of an action are inside a string literal."""
    mask = [False] * len(body)
    pos = 0
    while pos < len(body):
        if body[pos] in "\"`'":
            end = _skip_string(body, pos)
            for index in range(pos, min(end, len(body))):
                mask[index] = True
            pos = end
        else:
            pos += 1
    return mask


def _argument(body: str, pos: int) -> int:
    """The end of one argument starting at ``pos``."""
    if body[pos] in "\"`'":
        return _skip_string(body, pos)
    if body[pos] == "(":
        depth = 0
        while pos < len(body):
            if body[pos] in "\"`'":
                pos = _skip_string(body, pos)
                continue
            depth += {"(": 1, ")": -1}.get(body[pos], 0)
            pos += 1
            if depth == 0:
                return pos
        return pos
    match = re.compile(r"[^\s|()]+").match(body, pos)
    return match.end() if match else pos + 1


def _rewrite_action(body: str) -> str:
    out = []
    pos = 0
    mask = _strings_mask(body)
    for match in _LOOKUP_RE.finditer(body):
        if match.start() < pos or mask[match.start()]:
            continue
        cursor = last = match.end()
        args = []
        while True:
            while cursor < len(body) and body[cursor] in " \t\n":
                cursor += 1
            if cursor >= len(body) or body[cursor] in "|)" or body[cursor:].strip() == "-":
                break
            end = _argument(body, cursor)
            args.append(body[cursor:end])
            cursor = last = end
        out.append(body[pos : match.start()])
        out.append(f'(fromJson (include "{TEMPLATE_NAME}" (list {" ".join(args)})))')
        pos = last
    out.append(body[pos:])
    return "".join(out)


def rewrite(text: str) -> str:
    """A template's text with every ``lookup`` call answered by the fake objects."""
    if "lookup" not in text:
        return text
    return _ACTION_RE.sub(lambda m: "{{" + _rewrite_action(m.group(1)) + "}}", text)


def partial(objects: list[dict[str, Any]], cluster_scoped: set[str]) -> str:
    """The partial that answers the rewritten calls."""
    data = json.dumps(json.dumps(objects))
    scoped = json.dumps(json.dumps(sorted(cluster_scoped)))
    return (
        f'{{{{- define "{TEMPLATE_NAME}" -}}}}\n'
        "{{- $api := index . 0 -}}{{- $kind := index . 1 -}}"
        "{{- $ns := index . 2 -}}{{- $name := index . 3 -}}\n"
        f'{{{{- $global := has (printf "%s/%s" $api $kind) (fromJsonArray {scoped}) -}}}}\n'
        "{{- $items := list -}}\n"
        f"{{{{- range (fromJsonArray {data}) -}}}}\n"
        "{{- $meta := default dict .metadata -}}\n"
        "{{- if and (eq (toString .apiVersion) $api) (eq (toString .kind) $kind)"
        ' (or $global (eq $ns "") (eq (toString (default "" $meta.namespace)) $ns))'
        ' (or (eq $name "") (eq (toString (default "" $meta.name)) $name)) -}}\n'
        "{{- $items = append $items . -}}\n"
        "{{- end -}}\n"
        "{{- end -}}\n"
        '{{- if ne $name "" -}}{{- if $items -}}{{- first $items | toJson -}}{{- else -}}{}{{- end -}}\n'
        '{{- else -}}{{- $meta := dict "continue" "" "resourceVersion" "" -}}'
        '{{- dict "apiVersion" $api "kind" (printf "%sList" $kind) "metadata" $meta "items" $items'
        " | toJson -}}{{- end -}}\n"
        "{{- end -}}\n"
    )


def objects_and_scope(providers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], set[str]]:
    """The objects (suite's then test's) and the cluster-scoped ``apiVersion/kind`` of the schemes."""
    objects: list[dict[str, Any]] = []
    cluster_scoped: set[str] = set()
    for provider in providers:
        objects += list(provider.get("objects") or [])
        for key, entry in (provider.get("scheme") or {}).items():
            if isinstance(entry, dict) and entry.get("namespaced") is False:
                cluster_scoped.add(str(key))
    for obj in objects:  # kinds the scheme does not name: Namespace-like kinds are cluster-wide
        if obj.get("kind") in {
            "Namespace",
            "Node",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "PersistentVolume",
            "StorageClass",
        }:
            cluster_scoped.add(f"{obj.get('apiVersion')}/{obj.get('kind')}")
    return objects, cluster_scoped
