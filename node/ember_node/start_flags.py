"""Which ``ember start`` flags exist, which of Ray's ``ray start`` flags mean the same, and
which Ray flags have no meaning here. Pure: the command line and the operator share it.

- :data:`EMBER_FLAGS`: every flag ``ember start`` takes, with the kind of value it wants;
- :data:`RAY_ALIASES`: Ray's name for a flag ember takes under another name
  (``--metrics-export-port`` is ``--metrics-port``);
- :data:`RAY_IGNORED`: Ray flags ``ember start`` accepts and ignores with a warning,
  each with the reason (a port ember does not open, Redis, resource isolation...).

:func:`check_start_params` tells, for a ``{flag: value}`` map as a RayCluster's start
params give it, which flags would be refused (problems) and which would be ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "SWITCH",
    "INT",
    "NUMBER",
    "TEXT",
    "JSON_OBJECT",
    "BOOL",
    "EMBER_FLAGS",
    "RAY_ALIASES",
    "RAY_IGNORED",
    "ParamCheck",
    "check_start_params",
    "parse_bool",
    "parse_resources",
]

SWITCH = "switch"  # no value (``--block``); "true"/"" in start params
INT = "int"
NUMBER = "number"
TEXT = "text"
JSON_OBJECT = "json-object"
BOOL = "bool"  # an optional true/false value (``--include-dashboard false``)

EMBER_FLAGS: Mapping[str, str] = {
    "head": SWITCH,
    "address": TEXT,
    "port": INT,
    "host": TEXT,
    "node-ip-address": TEXT,
    "num-cpus": NUMBER,
    "num-gpus": NUMBER,
    "memory": INT,
    "resources": JSON_OBJECT,
    "object-store-memory": INT,
    "metrics-port": INT,
    "heartbeat-timeout": NUMBER,
    "dashboard-host": TEXT,
    "dashboard-port": INT,
    "include-dashboard": BOOL,
    "token-file": TEXT,
    "state-dir": TEXT,
    "tls-cert": TEXT,
    "tls-key": TEXT,
    "tls-ca": TEXT,
    "block": SWITCH,
}

RAY_ALIASES: Mapping[str, str] = {"metrics-export-port": "metrics-port"}

_PORT = "ember opens no such port"
RAY_IGNORED: Mapping[str, str] = {
    "object-manager-port": _PORT,
    "node-manager-port": _PORT,
    "gcs-server-port": "the head's gRPC port (--port) is the cluster directory",
    "min-worker-port": _PORT,
    "max-worker-port": _PORT,
    "worker-port-list": _PORT,
    "ray-client-server-port": "drivers connect to the head's gRPC port",
    "dashboard-agent-listen-port": _PORT,
    "dashboard-agent-grpc-port": _PORT,
    "runtime-env-agent-port": _PORT,
    "redis-password": "ember uses no Redis (the cluster token authenticates)",
    "redis-username": "ember uses no Redis",
    "redis-shard-ports": "ember uses no Redis",
    "enable-resource-isolation": "no cgroup resource isolation",
    "system-reserved-cpu": "no cgroup resource isolation",
    "system-reserved-memory": "no cgroup resource isolation",
    "cgroup-path": "no cgroup resource isolation",
    "labels": "ember nodes have no labels",
    "labels-file": "ember nodes have no labels",
    "node-name": "a node is named by EMBER_NODE_NAME",
    "temp-dir": "sessions live under $TMPDIR",
    "plasma-directory": "the object store lives in /dev/shm",
    "object-spilling-directory": "spill files live in the session directory",
    "storage": "no cluster storage",
    "system-config": "no Ray system config",
    "autoscaling-config": "no autoscaler",
    "include-log-monitor": "no log monitor",
    "log-style": "ember logs plainly",
    "log-color": "ember logs plainly",
    "disable-usage-stats": "ember collects no usage stats",
    "ray-debugger-external": "no Ray debugger",
    "no-redirect-output": "agent output goes to its log",
    "verbose": "ember logs plainly",
    "tracing-startup-hook": "no tracing hook",
    "runtime-env-agent-port-range": _PORT,
}

_TRUE = ("", "1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(value: str | None) -> bool:
    """A Ray-style boolean flag value: absent/empty/true/1/yes/on, or false/0/no/off."""
    text = "" if value is None else str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not true or false")


def parse_resources(value: str) -> dict[str, float]:
    """``--resources``: a JSON object of custom resource amounts, as Ray takes it.

    Surrounding single or double quotes (left by a shell-minded manifest, e.g. KubeRay's
    ``'{"TPU": 4}'``) are removed first.
    """
    text = value.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    try:
        parsed = json.loads(text.replace('\\"', '"')) if text else {}
    except ValueError as exc:
        raise ValueError(f'--resources {value!r} is not a JSON object such as \'{{"gpu_type_a": 1}}\'') from exc
    if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
            for k, v in parsed.items()):
        raise ValueError(f"--resources {value!r} must map resource names to non-negative numbers")
    return {k: float(v) for k, v in parsed.items()}


_WANTS = {INT: "a whole number", NUMBER: "a number", SWITCH: "true or false", BOOL: "true or false"}


def _value_problem(flag: str, kind: str, value: str) -> str | None:
    try:
        if kind == JSON_OBJECT:
            parse_resources(value)
        elif kind in (SWITCH, BOOL):
            parse_bool(value)
        elif kind in (INT, NUMBER):
            number = int(value) if kind == INT else float(value)
            if number < 0:
                return f"--{flag} must not be negative, not {value!r}"
    except ValueError as exc:
        return str(exc) if kind == JSON_OBJECT else f"--{flag} wants {_WANTS[kind]}, not {value!r}"
    return None


@dataclass(frozen=True)
class ParamCheck:
    """What ``ember start`` would make of a map of start params."""

    problems: tuple[str, ...] = ()  # flags it would refuse (unknown, or a bad value)
    ignored: Mapping[str, str] = field(default_factory=dict)  # Ray flags it would ignore: why
    flags: Mapping[str, str] = field(default_factory=dict)  # the rest, by ember's flag name


def check_start_params(params: Mapping[str, str]) -> ParamCheck:
    """Sort ``{flag: value}`` start params (flag names without dashes) as ``ember start`` would."""
    problems: list[str] = []
    ignored: dict[str, str] = {}
    flags: dict[str, str] = {}
    for key, value in params.items():
        name = RAY_ALIASES.get(key, key)
        if name in EMBER_FLAGS:
            problem = _value_problem(key, EMBER_FLAGS[name], str(value))
            if problem:
                problems.append(problem)
            else:
                flags[name] = str(value)
        elif key in RAY_IGNORED:
            ignored[key] = RAY_IGNORED[key]
        else:
            problems.append(f"--{key} is neither an `ember start` flag nor a `ray start` flag")
    return ParamCheck(tuple(problems), ignored, flags)
