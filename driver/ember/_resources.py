"""Resource arithmetic: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping

EPS = 1e-9


def fits(request: Mapping[str, float], available: Mapping[str, float]) -> bool:
    """True when every requested amount is available."""
    for name, amount in request.items():
        if amount > available.get(name, 0.0) + EPS:
            return False
    return True


def acquire(available: dict[str, float], request: Mapping[str, float]) -> None:
    for name, amount in request.items():
        available[name] = available.get(name, 0.0) - amount


def release(available: dict[str, float], request: Mapping[str, float]) -> None:
    for name, amount in request.items():
        available[name] = available.get(name, 0.0) + amount


def shape_key(request: Mapping[str, float]) -> tuple:
    """A hashable key for a resource request (tasks of one shape share workers)."""
    if not request:
        return ()  # actor calls (their actor holds the resources) and zero-resource tasks
    return tuple(sorted((k, v) for k, v in request.items() if v))


def unmet(request: Mapping[str, float], totals: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Resources that the node can never provide: name -> (requested, node total)."""
    return {
        name: (amount, totals.get(name, 0.0))
        for name, amount in request.items()
        if amount > totals.get(name, 0.0) + EPS
    }


def describe_unmet(what: str, request: Mapping[str, float], totals: Mapping[str, float]) -> str | None:
    """A user-facing sentence when ``request`` can never run on a node with ``totals``."""
    missing = unmet(request, totals)
    if not missing:
        return None
    parts = [f"{_fmt(req)} {name} but the largest node has {_fmt(have)}" for name, (req, have) in missing.items()]
    return (
        f"{what} needs " + "; ".join(parts) + ". Lower the request in @ember.remote/.options(), "
        "or give the cluster more (ember.init(num_cpus=..., num_gpus=..., resources={...}), "
        "or a node started with `ember start --num-cpus/--num-gpus/--resources`)."
    )


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def validate_request(num_cpus: float | None, num_gpus: float | None, resources: Mapping[str, float] | None,
                     memory: float | None = None, default_cpus: float = 1.0) -> dict[str, float]:
    """Build a resource request from task options, rejecting bad values with clear errors."""
    req: dict[str, float] = {}
    cpus = default_cpus if num_cpus is None else num_cpus
    for name, value in (("num_cpus", cpus), ("num_gpus", num_gpus), ("memory", memory)):
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if cpus:
        req["CPU"] = float(cpus)
    if num_gpus:
        req["GPU"] = float(num_gpus)
    if memory:
        req["memory"] = float(memory)
    for name, value in (resources or {}).items():
        if name in ("CPU", "GPU"):
            raise ValueError(f"use num_cpus/num_gpus instead of resources={{'{name}': ...}}")
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"resource {name!r} must be a non-negative number, got {value!r}")
        if value:
            req[name] = float(value)
    return req
