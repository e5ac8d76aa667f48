"""Placement groups: bundles of resources reserved on nodes, as Ray's ``ray.util.placement_group``.

``place_bundles`` is the pure decision (which node takes each bundle, or None while they do
not all fit now). ``PlacementGroups`` keeps the groups of the cluster (on the head's agent,
which schedules everything) and carries decisions out on the nodes' resource views: a
reserved bundle ``i`` of group ``P`` takes its resources out of the node's ``available`` and
adds them back under the names ``<res>_group_<i>_<P>`` and ``<res>_group_<P>``, plus a marker
``bundle_group_<i>_<P>``/``bundle_group_<P>`` (``BUNDLE_UNITS`` each), so the usual scheduler
places the work of a group (whose requests the driver renames, ``ember.util.placement_group``)
on the bundle's node and inside its reservation. A group that cannot be placed stays pending
and is retried when resources change (``retry``); removing one gives its resources back and
asks the agent to end the work that uses them. The bundles a dead node held are placed
again on other nodes (the group is ``RESCHEDULING`` until then; STRICT_SPREAD keeps them off the
nodes holding its other bundles), so the work of the group restarted by retries waits for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ember._resources import fits

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
BUNDLE_UNITS = 1000.0  # marker units per bundle; a task or actor in a bundle asks for 0.001

PENDING = "PENDING"
CREATED = "CREATED"
RESCHEDULING = "RESCHEDULING"  # some bundles were lost with their node; they wait to be placed again
REMOVED = "REMOVED"


def group_resources(index: int, pg_hex: str, bundle: Mapping[str, float]) -> dict[str, float]:
    """The names a reserved bundle adds to its node (see the module docstring)."""
    out: dict[str, float] = {}
    for name, amount in bundle.items():
        if amount:
            out[f"{name}_group_{index}_{pg_hex}"] = amount
            out[f"{name}_group_{pg_hex}"] = amount
    out[f"bundle_group_{index}_{pg_hex}"] = BUNDLE_UNITS
    out[f"bundle_group_{pg_hex}"] = BUNDLE_UNITS
    return out


def in_placement_group(resources: Mapping[str, float]) -> bool:
    """Whether a request is for a placement group's bundle (renamed by the driver)."""
    return any(k.startswith("bundle_group_") for k in resources)


def _take(avail: dict[str, float], bundle: Mapping[str, float]) -> None:
    for k, v in bundle.items():
        avail[k] = avail.get(k, 0.0) - v


def _total(bundles: Sequence[Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + v
    return out


def place_bundles(bundles: Sequence[Mapping[str, float]], strategy: str,
                  nodes: Sequence[Any]) -> list[Any] | None:
    """The node for each bundle (same order), or None if they cannot all be reserved now.

    ``nodes``: NodeRec-like (``alive``, ``available``), in the agent's order. PACK: as few
    nodes as possible (one if any fits them all); STRICT_PACK: all on one node; SPREAD: each
    on the node with the fewest of the group's bundles so far; STRICT_SPREAD: each on a
    different node (a small search, so that a big bundle is not crowded out by a small one).
    """
    live = [n for n in nodes if n.alive]
    if strategy == "STRICT_PACK" or strategy == "PACK":
        need = _total(bundles)
        for n in live:
            if fits(need, n.available):
                return [n] * len(bundles)
        if strategy == "STRICT_PACK":
            return None
    avail = {id(n): dict(n.available) for n in live}
    if strategy == "STRICT_SPREAD":
        return _distinct(list(bundles), live, avail, [])
    out: list[Any] = []
    used: dict[int, int] = {}
    for b in bundles:
        fitting = [n for n in live if fits(b, avail[id(n)])]
        if not fitting:
            return None
        if strategy == "PACK":  # the node already holding most of the group's bundles
            node = max(fitting, key=lambda n: used.get(id(n), 0))
        else:  # SPREAD: the one holding fewest
            node = min(fitting, key=lambda n: used.get(id(n), 0))
        _take(avail[id(node)], b)
        used[id(node)] = used.get(id(node), 0) + 1
        out.append(node)
    return out


def _distinct(bundles: list, live: list, avail: dict, chosen: list) -> list | None:
    if len(chosen) == len(bundles):
        return list(chosen)
    b = bundles[len(chosen)]
    for n in live:
        if any(c is n for c in chosen) or not fits(b, avail[id(n)]):
            continue
        chosen.append(n)
        found = _distinct(bundles, live, avail, chosen)
        if found is not None:
            return found
        chosen.pop()
    return None


def check_bundles(bundles: Any, strategy: Any) -> str | None:
    """Why a create request is malformed, or None (the driver checks first, with the same words)."""
    if strategy not in STRATEGIES:
        return f"placement group strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
    if not isinstance(bundles, list | tuple) or not bundles:
        return "a placement group needs a non-empty list of bundles (dicts of resource -> amount)"
    for b in bundles:
        if not isinstance(b, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                for k, v in b.items()):
            return f"a bundle must map resource names to non-negative numbers, got {b!r}"
        if not any(b.values()):
            return f"a bundle must ask for some resource, got {b!r}"
    return None


@dataclass
class Group:
    """One placement group as the agent keeps it."""

    pg_hex: str
    bundles: list[dict[str, float]]
    strategy: str
    name: str
    job: str
    detached: bool
    state: str = PENDING
    nodes: list[Any] = field(default_factory=list)  # per bundle, once CREATED (None: lost)
    created_at: float = field(default_factory=time.time)

    def info(self) -> dict[str, Any]:
        """The entry of ``placement_group_table`` (Ray's keys)."""
        return {
            "placement_group_id": self.pg_hex,
            "name": self.name,
            "bundles": {i: dict(b) for i, b in enumerate(self.bundles)},
            "bundles_to_node_id": {i: n.node_id for i, n in enumerate(self.nodes) if n is not None},
            "strategy": self.strategy,
            "state": self.state,
            "stats": {"scheduling_state": "FINISHED" if self.state == CREATED else self.state},
            "job_id": self.job,
            "lifetime": "detached" if self.detached else "non-detached",
        }


class PlacementGroups:
    """The cluster's placement groups; ``nodes`` is the agent's node table (id -> NodeRec),
    ``on_changed`` tells it that node resources changed (recompute views, schedule),
    ``end_work(pg_hex)`` ends the tasks and actors that use a removed group's resources."""

    def __init__(self, nodes: Mapping[str, Any], on_changed: Callable[[], None],
                 end_work: Callable[[str], None]) -> None:
        self.nodes = nodes
        self.on_changed = on_changed
        self.end_work = end_work
        self.groups: dict[str, Group] = {}
        self.pending: list[Group] = []

    def create(self, pg_hex: str, bundles: list, strategy: str, name: str, job: str, detached: bool) -> str:
        problem = check_bundles(bundles, strategy)
        if problem:
            raise ValueError(problem)
        if pg_hex in self.groups:
            raise ValueError(f"placement group {pg_hex} exists already")
        if name and any(g.name == name and g.state != REMOVED for g in self.groups.values()):
            raise ValueError(f"a placement group named {name!r} exists already; pick another name "
                             f"or remove it first (ember.util.remove_placement_group)")
        g = Group(pg_hex, [{k: float(v) for k, v in b.items() if v} for b in bundles], strategy, name, job, detached)
        self.groups[pg_hex] = g
        self.pending.append(g)
        self.retry()
        return g.state

    def retry(self) -> None:
        """Place the pending groups that fit now, oldest first."""
        placed = False
        for g in list(self.pending):
            todo = list(range(len(g.bundles))) if g.state == PENDING else [
                i for i, n in enumerate(g.nodes) if n is None]
            candidates = list(self.nodes.values())
            if g.strategy == "STRICT_SPREAD":
                candidates = [n for n in candidates if not any(n is m for m in g.nodes)]
            chosen = place_bundles([g.bundles[i] for i in todo], g.strategy, candidates)
            if chosen is None:
                continue
            if g.state == PENDING:
                g.nodes = [None] * len(g.bundles)
            for i, node in zip(todo, chosen, strict=True):
                b = g.bundles[i]
                _take(node.available, b)
                for k, v in group_resources(i, g.pg_hex, b).items():
                    node.totals[k] = node.totals.get(k, 0.0) + v
                    node.available[k] = node.available.get(k, 0.0) + v
                g.nodes[i] = node
            g.state = CREATED
            self.pending.remove(g)
            placed = True
        if placed:
            self.on_changed()

    def remove(self, pg_hex: str) -> None:
        g = self.groups.get(pg_hex)
        if g is None:
            raise ValueError(f"no placement group {pg_hex} in this cluster")
        if g.state == REMOVED:
            return
        was = g.state
        g.state = REMOVED
        if was != CREATED:
            self.pending.remove(g)
        if was != PENDING:
            for i, (b, node) in enumerate(zip(g.bundles, g.nodes, strict=True)):
                if node is None:
                    continue
                for k in group_resources(i, pg_hex, b):
                    node.totals.pop(k, None)
                    node.available.pop(k, None)
                if node.alive:
                    for k, v in b.items():
                        node.available[k] = node.available.get(k, 0.0) + v
        self.end_work(pg_hex)
        self.on_changed()
        self.retry()

    def why_waiting(self, what: str, resources: Mapping[str, float]) -> str:
        """Why work asking for a group's bundle resources waits (for ``ember status``)."""
        key = next(k for k in resources if k.startswith("bundle_group_"))
        g = self.groups.get(key.rsplit("_", 1)[1])
        if g is None or g.state == REMOVED:
            return f"{what} asks for a placement group that does not exist (any more)"
        if g.state != CREATED:
            return f"{what} waits for its placement group {g.pg_hex} ({g.state}: its bundles do not fit the nodes yet)"
        asks = ", ".join(f"{k.split('_group_')[0]}={v:g}" for k, v in resources.items()
                         if not k.startswith("bundle_group_"))
        return (f"{what} waits for room in its placement group {g.pg_hex} (it needs {asks or 'no resources'} "
                f"of a bundle; a bundle that reserved less can never run it)")

    def pending_shapes(self) -> list[dict[str, float]]:
        """What the groups waiting to be placed ask for, for the autoscaler's demand: each
        bundle not placed yet (a STRICT_PACK group's, together as one node's worth).
        Read from gRPC threads: works on copies."""
        out: list[dict[str, float]] = []
        for g in list(self.pending):
            nodes = list(g.nodes)
            todo = [b for i, b in enumerate(g.bundles) if g.state == PENDING or nodes[i] is None]
            out += [_total(todo)] if g.strategy == "STRICT_PACK" else [dict(b) for b in todo]
        return out

    def node_dead(self, node: Any) -> None:
        """``node`` is gone: the bundles it held are placed again elsewhere when they fit."""
        for g in self.groups.values():
            if g.state in (CREATED, RESCHEDULING) and any(n is node for n in g.nodes):
                g.nodes = [None if n is node else n for n in g.nodes]
                if g.state == CREATED:
                    g.state = RESCHEDULING
                    self.pending.append(g)
        if self.pending:
            self.retry()

    def remove_job(self, job: str) -> None:
        """A job ended: its groups that are not detached go (as Ray does)."""
        for g in list(self.groups.values()):
            if g.job == job and not g.detached and g.state != REMOVED:
                self.remove(g.pg_hex)

    def table(self, pg_hex: str | None) -> Any:
        if pg_hex is not None:
            g = self.groups.get(pg_hex)
            return g.info() if g is not None else {}
        return {h: g.info() for h, g in self.groups.items()}
