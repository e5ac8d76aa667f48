"""``ember.util.placement_group`` (Ray's ``ray.util.placement_group``): reserve bundles of
resources on the cluster's nodes and run tasks and actors inside them.

The head's agent reserves the bundles (``ember_node.placement_groups``); work scheduled into a
group asks for the group's renamed resources (``bundle_resources``), so it runs on the
bundle's node and within what the bundle reserved. A group that cannot be placed yet stays
pending (``ready()`` does not resolve) until nodes with room join or other groups go.
"""

from __future__ import annotations

import os
from typing import Any

from ember import _context
from ember import _messages as M

__all__ = [
    "PlacementGroup", "get_current_placement_group", "placement_group", "placement_group_table",
    "remove_placement_group",
]

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
BUNDLE_SHARE = 0.001  # of a bundle's marker resource (1000 units) each task or actor takes
_REQUEST_TIMEOUT_S = 60


class PlacementGroupID:
    """A placement group's id (``.hex()`` as in Ray)."""

    __slots__ = ("_hex",)

    def __init__(self, hex_id: str) -> None:
        self._hex = hex_id

    def hex(self) -> str:
        return self._hex

    def binary(self) -> bytes:
        return bytes.fromhex(self._hex)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupID) and other._hex == self._hex

    def __hash__(self) -> int:
        return hash(self._hex)

    def __repr__(self) -> str:
        return f"PlacementGroupID({self._hex})"


class PlacementGroup:
    """A handle to a placement group (it can be passed to tasks and actors)."""

    def __init__(self, id: PlacementGroupID, bundles: list[dict[str, float]] | None = None) -> None:  # noqa: A002
        self.id = id
        self._bundles = bundles

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        """The bundles as they were asked for."""
        if self._bundles is None:
            info = placement_group_table(self)
            self._bundles = [dict(b) for _, b in sorted(info.get("bundles", {}).items())]
        return [dict(b) for b in self._bundles]

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> Any:
        """An ObjectRef that resolves (to True) once every bundle is reserved."""
        from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return _ready.options(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(self)).remote()

    def wait(self, timeout_seconds: float | None = 30) -> bool:
        """Wait up to ``timeout_seconds`` for the group to be placed; whether it is."""
        import ember

        done, _ = ember.wait([self.ready()], timeout=timeout_seconds)
        return bool(done)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self):
        return (PlacementGroup, (self.id, self._bundles))

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id.hex()})"


def _ready_fn() -> bool:
    return True


_ready_remote: Any = None


class _Ready:
    """The ready() task, made on first use (ember.remote_function imports this package)."""

    def options(self, **options: Any) -> Any:
        global _ready_remote
        if _ready_remote is None:
            from ember.remote_function import RemoteFunction

            _ready_remote = RemoteFunction(_ready_fn, {"max_retries": 0})
        return _ready_remote.options(**options)


_ready = _Ready()


def check(bundles: Any, strategy: Any) -> list[dict[str, float]]:
    """The bundles as plain dicts, or ValueError saying what is wrong and how to fix it."""
    if strategy not in STRATEGIES:
        raise ValueError(f"placement group strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not isinstance(bundles, list | tuple) or not bundles:
        raise ValueError("placement_group needs a non-empty list of bundles, e.g. [{'CPU': 1}, {'CPU': 1}]")
    out = []
    for b in bundles:
        if not isinstance(b, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                for k, v in b.items()):
            raise ValueError(f"a bundle must map resource names to non-negative numbers, got {b!r}")
        if not any(b.values()):
            raise ValueError(f"a bundle must ask for some resource (all amounts are 0 in {b!r})")
        out.append({k: float(v) for k, v in b.items()})
    return out


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: str | None = None, _max_cpu_fraction_per_node: float | None = None,
                    _soft_target_node_id: str | None = None,
                    bundle_label_selector: list[dict[str, str]] | None = None) -> PlacementGroup:
    """Reserve ``bundles`` on the cluster with ``strategy`` (PACK, SPREAD, STRICT_PACK,
    STRICT_SPREAD); returns at once, ``.ready()``/``.wait()`` tell when it is placed.
    ``lifetime="detached"`` keeps it after the job ends (otherwise it goes with the job)."""
    specs = check(bundles, strategy)
    if lifetime not in (None, "detached"):
        raise ValueError(f"lifetime must be None or 'detached', got {lifetime!r}")
    if bundle_label_selector:
        raise NotImplementedError("placement_group(bundle_label_selector=...) is not supported by ember yet")
    rt = _context.require_runtime()
    pg_hex = os.urandom(18).hex()
    rt.request(M.REQUEST, "pg_create", (pg_hex, specs, strategy, name or "", lifetime == "detached"),
               timeout=_REQUEST_TIMEOUT_S)
    return PlacementGroup(PlacementGroupID(pg_hex), specs)


def _id_hex(pg: Any) -> str:
    if isinstance(pg, PlacementGroup):
        return pg.id.hex()
    raise TypeError(f"expected a PlacementGroup, got {type(pg).__name__}")


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Give back the group's resources; the actors in it die and its tasks are cancelled."""
    _context.require_runtime().request(M.REQUEST, "pg_remove", _id_hex(placement_group), timeout=_REQUEST_TIMEOUT_S)


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict:
    """The state of one group, or of all (id hex -> state), with Ray's keys."""
    arg = None if placement_group is None else _id_hex(placement_group)
    return _context.require_runtime().request(M.REQUEST, "pg_table", arg, timeout=_REQUEST_TIMEOUT_S)


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group with this name; ValueError if none."""
    info = _context.require_runtime().request(M.REQUEST, "pg_by_name", placement_group_name,
                                               timeout=_REQUEST_TIMEOUT_S)
    if not info:
        raise ValueError(f"no placement group named {placement_group_name!r} in this cluster")
    return PlacementGroup(PlacementGroupID(info["placement_group_id"]),
                          [dict(b) for _, b in sorted(info["bundles"].items())])


def group_of(resources: dict[str, float]) -> str | None:
    """The placement group id whose bundle ``resources`` (a task's, renamed) are in, or None."""
    for key in resources:
        if key.startswith("bundle_group_") or key.startswith(CAPTURE):
            return key.rsplit("_", 1)[1]
    return None


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the running task or actor is in; None in a driver or outside groups."""
    from ember.runtime_context import get_runtime_context

    pg_hex = group_of(get_runtime_context().get_assigned_resources())
    return PlacementGroup(PlacementGroupID(pg_hex)) if pg_hex else None


def bundle_resources(resources: dict[str, float], pg: PlacementGroup, index: int,
                     capture: bool = False) -> dict[str, float]:
    """``resources`` renamed into bundle ``index`` of ``pg`` (-1: any bundle). With ``capture``,
    a zero-amount marker ``capture_group_<pg>`` rides along: it costs nothing to schedule and
    tells the work, which sees its resources, to put its own children in the group too."""
    if not isinstance(index, int) or isinstance(index, bool) or index < -1:
        raise ValueError(f"placement_group_bundle_index must be -1 (any bundle) or a bundle index, got {index!r}")
    if pg._bundles is not None and index >= len(pg._bundles):
        raise ValueError(f"placement_group_bundle_index {index} is out of range: the group has "
                         f"{len(pg._bundles)} bundles (0..{len(pg._bundles) - 1})")
    return _renamed(resources, _id_hex(pg), index, capture)


CAPTURE = "capture_group_"


def _renamed(resources: dict[str, float], pg_hex: str, index: int, capture: bool) -> dict[str, float]:
    tag = f"_group_{pg_hex}" if index < 0 else f"_group_{index}_{pg_hex}"
    out = {f"{k}{tag}": v for k, v in resources.items() if v}
    out[f"bundle{tag}"] = BUNDLE_SHARE
    if capture:
        out[CAPTURE + pg_hex] = 0.0
    return out


def captured_resources(resources: dict[str, float], held: dict[str, float]) -> dict[str, float]:
    """``resources`` of a child task or actor, renamed into the placement group whose work
    (holding ``held``) captures its children; as they are when it does not."""
    for key in held:
        if key.startswith(CAPTURE):
            return _renamed(resources, key[len(CAPTURE):], -1, True)
    return resources
