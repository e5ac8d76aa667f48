"""Ask a cluster's head for its pending demand and which worker pods have joined it.

The head's gRPC ``ClusterInfo`` lists the work no node fits and the work that waits for
room (per resource shape, a count) and the live nodes with what they have free, each worker node under the name of its pod (``EMBER_NODE_NAME``) with
the resources it reports. The call carries the cluster's token, read from its Secret. Any
failure (head not ready, unreachable, refused) means "unknown": the autoscaler then adds
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from ember._proto import node_pb2 as pb
from ember._proto import node_pb2_grpc as pb_grpc

from ember_operator import constants as c
from ember_operator.autoscaler import PendingShape
from ember_operator.idleness import TIMEOUT_S, head_endpoint

__all__ = ["HeadReport", "cluster_report", "HeadDemand"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadReport:
    """What the head says of its cluster: pending demand and the joined worker nodes."""

    demand: tuple[PendingShape, ...]  # work no node fits
    #: advertised node name (a worker pod's name) -> the resources that node reports
    workers: Mapping[str, Mapping[str, float]]
    waiting: tuple[PendingShape, ...] = ()  # work some node fits, waiting for room
    free: tuple[Mapping[str, float], ...] = ()  # what each live node (the head too) has free now


def cluster_report(address: str, token: str, timeout: float = TIMEOUT_S) -> HeadReport:
    """The head at ``address``'s pending demand and live worker nodes."""
    channel = grpc.insecure_channel(address)
    try:
        reply = pb_grpc.NodeStub(channel).ClusterInfo(
            pb.ClusterInfoRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=timeout)
    finally:
        channel.close()
    demand = tuple(PendingShape(dict(d.resources), int(d.count)) for d in reply.demand if d.count)
    waiting = tuple(PendingShape(dict(d.resources), int(d.count)) for d in reply.waiting if d.count)
    workers = {node.address: dict(node.resources) for node in reply.nodes if node.alive and not node.is_head}
    free = tuple(dict(node.available) for node in reply.nodes if node.alive)
    return HeadReport(demand, workers, waiting, free)


class HeadDemand:
    """A demand probe (see ``reconciler.DemandProbe``) backed by the cluster's head.

    ``read_secret(namespace, name)`` returns the Secret object or None; ``address(cluster,
    namespace)`` the head's gRPC address (its Service DNS name by default).
    """

    def __init__(self, read_secret: Callable[[str, str], Mapping[str, Any] | None],
                 address: Callable[[str, str], str] = c.head_address) -> None:
        self._read_secret = read_secret
        self._address = address

    def __call__(self, cluster: Mapping[str, Any]) -> HeadReport | None:
        meta = cluster.get("metadata") or {}
        try:
            endpoint = head_endpoint(cluster, self._read_secret, self._address)
            return None if endpoint is None else cluster_report(*endpoint)
        except Exception as exc:  # noqa: BLE001 - unknown demand is a normal answer
            logger.info("no pending demand from the head of %s/%s: %s",
                        meta.get("namespace", "default"), meta.get("name", ""), exc)
            return None
