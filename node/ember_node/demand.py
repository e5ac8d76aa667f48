"""Pending demand: the queued work no node of the cluster fits, counted by resource shape. Pure.

The head reports it in ``ClusterInfo`` so that the operator's autoscaler can add worker pods
that fit it, in two lists: the work that fits no node (the scheduler's ``INFEASIBLE``: it
waits for a node that fits to join) and the work that fits some node but waits for room
(the autoscaler first counts it against what the nodes have free). A default actor (one that asked for no CPUs) holds none while it runs but must go on a node
with CPUs, so on a cluster without one it is reported as needing one CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ember._resources import fits

__all__ = ["Demand", "WorkRequest", "unmet_demand", "waiting_demand"]

#: what a default actor needs of its node when the cluster has no node with CPUs
CPU_NODE = {"CPU": 1.0}


@dataclass(frozen=True)
class WorkRequest:
    """One queued task or actor creation, as far as placement goes."""

    resources: Mapping[str, float]
    needs_cpu_node: bool = False


@dataclass(frozen=True)
class Demand:
    """``count`` pending tasks or actors that each ask for ``resources``."""

    resources: Mapping[str, float]
    count: int


def _need(request: WorkRequest, largest: Mapping[str, float]) -> Mapping[str, float] | None:
    """What ``request`` needs that no node has (its whole shape), or None if some node fits it."""
    if request.resources and not fits(request.resources, largest):
        return request.resources
    if not request.resources and request.needs_cpu_node and largest.get("CPU", 0.0) < 1:
        return CPU_NODE
    return None


def _count(shapes: Iterable[Mapping[str, float]]) -> list[Demand]:
    counts: dict[tuple[tuple[str, float], ...], int] = {}
    for shape in shapes:
        key = tuple(sorted((name, float(amount)) for name, amount in shape.items() if amount > 0))
        if key:
            counts[key] = counts.get(key, 0) + 1
    return [Demand(dict(key), count) for key, count in counts.items()]


def unmet_demand(requests: Iterable[WorkRequest], largest: Mapping[str, float]) -> list[Demand]:
    """The shapes among ``requests`` that fit no node, with their counts.

    ``largest`` maps each resource to the most any one live node has of it (what one task can
    get). Shapes come out in the order first seen; zero amounts are left out of a shape.
    """
    return _count(need for request in requests if (need := _need(request, largest)) is not None)


def waiting_demand(requests: Iterable[WorkRequest], largest: Mapping[str, float]) -> list[Demand]:
    """The shapes among ``requests`` that some node fits (the rest of :func:`unmet_demand`)."""
    return _count(request.resources for request in requests if _need(request, largest) is None)
