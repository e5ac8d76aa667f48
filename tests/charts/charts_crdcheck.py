"""Check custom resources against a CRD's openAPIV3Schema, the way an API server would.

There is no kube-apiserver on the machines these tests run on, so this module
does the API server's share of the work in Python:

1. defaulting: ``default`` values are filled in top-down (a parent's default
   first, then the defaults inside it), as structural defaulting does;
2. the OpenAPI value validations (types, enums, patterns, bounds, required
   fields), by converting the schema to a JSON Schema for ``jsonschema``;
   unknown fields are errors (like ``kubectl``'s strict field validation)
   except under ``x-kubernetes-preserve-unknown-fields``;
3. ``x-kubernetes-list-type: map`` key uniqueness and ``set`` item uniqueness;
4. the CEL rules of ``x-kubernetes-validations``, evaluated with ``cel-python``
   on the defaulted object, with ``self`` bound to the node that carries them.

Only the schema features the ember CRD uses are handled; ``unsupported()``
lists anything else found in a schema so a test can fail on it.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

CRD_PATH = (
    Path(__file__).resolve().parents[2] / "charts/ember-operator/crds/rayclusters.ember.dev.yaml"
)

# Keywords this module understands, and what each maps to in JSON Schema.
VALUE_KEYWORDS = {
    "type",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "required",
    "format",
}
STRUCTURE_KEYWORDS = {"properties", "items", "additionalProperties", "anyOf"}
IGNORED_KEYWORDS = {"description", "default"}
K8S_KEYWORDS = {
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
}


def load_crd(path: Path = CRD_PATH) -> dict:
    return yaml.safe_load(path.read_text())


def version_schema(crd: dict, version: str = "v1alpha1") -> dict:
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise KeyError(version)


@cache
def _default_schema() -> dict:
    return version_schema(load_crd())


def unsupported(schema: dict, where: str = "") -> list[str]:
    """Keywords in a schema that this module would silently ignore."""
    known = VALUE_KEYWORDS | STRUCTURE_KEYWORDS | IGNORED_KEYWORDS | K8S_KEYWORDS
    found = [f"{where or '.'}: {key}" for key in schema if key not in known]
    for name, child in schema.get("properties", {}).items():
        found += unsupported(child, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        found += unsupported(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += unsupported(schema["additionalProperties"], f"{where}{{}}")
    for index, option in enumerate(schema.get("anyOf", [])):
        found += unsupported(option, f"{where}<anyOf {index}>")
    return found


def to_json_schema(schema: dict) -> dict:
    """A JSON Schema (draft 2020-12 subset) enforcing the OpenAPI value validations."""
    out: dict[str, Any] = {key: schema[key] for key in VALUE_KEYWORDS if key in schema}
    out.pop("format", None)  # int32/int64/date-time: not checked here
    if "properties" in schema:
        out["properties"] = {
            name: to_json_schema(child) for name, child in schema["properties"].items()
        }
    if isinstance(schema.get("items"), dict):
        out["items"] = to_json_schema(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(schema["additionalProperties"])
    elif (
        schema.get("type") == "object"
        and "properties" in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if "anyOf" in schema:
        out["anyOf"] = [to_json_schema(option) for option in schema["anyOf"]]
    return out


def apply_defaults(value: Any, schema: dict) -> Any:
    """A copy of value with the schema's defaults filled in, parents before children."""
    value = copy.deepcopy(value)
    _default_in_place(value, schema)
    return value


def _default_in_place(value: Any, schema: dict) -> None:
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _default_in_place(value[name], child)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in set(value) - set(schema.get("properties", {})):
                _default_in_place(value[name], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(item, schema["items"])


def _walk(value: Any, schema: dict, path: str):
    """Yield (path, value, schema) for every node of value that the schema describes."""
    yield path, value, schema
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, child in value.items():
            if name in properties:
                yield from _walk(child, properties[name], f"{path}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from _walk(child, schema["additionalProperties"], f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _walk(item, schema["items"], f"{path}[{index}]")


def list_errors(value: Any, schema: dict) -> list[str]:
    """Duplicate keys in x-kubernetes-list-type map lists and duplicates in sets."""
    errors = []
    for path, node, node_schema in _walk(value, schema, ""):
        list_type = node_schema.get("x-kubernetes-list-type")
        if not isinstance(node, list) or list_type not in ("map", "set"):
            continue
        if list_type == "map":
            keys = node_schema["x-kubernetes-list-map-keys"]
            seen = [tuple(item.get(key) for key in keys) for item in node if isinstance(item, dict)]
        else:
            seen = [yaml.safe_dump(item) for item in node]
        duplicates = sorted({str(key) for key in seen if seen.count(key) > 1})
        if duplicates:
            errors.append(f"{path or '.'}: Duplicate value: {', '.join(duplicates)}")
    return errors


@cache
def _program(rule: str):
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def cel_errors(value: Any, schema: dict) -> list[str]:
    """Messages of the x-kubernetes-validations rules that the (defaulted) value breaks."""
    errors = []
    for path, node, node_schema in _walk(value, schema, ""):
        for validation in node_schema.get("x-kubernetes-validations", []):
            try:
                result = _program(validation["rule"]).evaluate({"self": celpy.json_to_cel(node)})
            except celpy.CELEvalError as error:
                result = error
            if isinstance(result, Exception) or not bool(result):
                message = validation.get("message") or f"failed rule: {validation['rule']}"
                errors.append(f"{path or '.'}: Invalid value: {message}")
    return errors


def validate(obj: dict, schema: dict | None = None) -> list[str]:
    """All reasons an API server would refuse obj ([] when it would accept it).

    The CEL rules only run when the value validations pass, as a CEL rule may
    rely on fields that the schema requires.
    """
    schema = schema or _default_schema()
    defaulted = apply_defaults(obj, schema)
    validator = jsonschema.Draft202012Validator(to_json_schema(schema))
    errors = [
        f".{'.'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(defaulted), key=lambda e: list(e.absolute_path))
    ]
    errors += list_errors(defaulted, schema)
    if not errors:
        errors += cel_errors(defaulted, schema)
    return errors
