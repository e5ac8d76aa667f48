"""Ask a cluster's head which worker pods are idle, so scale-down removes the idlest first.

The head's gRPC ``ClusterInfo`` reports, per node, the seconds since any of its workers last
ran something; a worker node advertises its pod name (``EMBER_NODE_NAME``), which maps a
node to its pod. The call carries the cluster's token, read from its Secret. Any failure
(head not ready, unreachable, refused) means "unknown", and the planner falls back to
removing the newest pods first.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from ember._proto import node_pb2 as pb
from ember._proto import node_pb2_grpc as pb_grpc

from ember_operator import constants as c

logger = logging.getLogger(__name__)

TIMEOUT_S = 3.0


def idle_seconds_by_name(address: str, token: str, timeout: float = TIMEOUT_S) -> dict[str, float]:
    """{advertised node name: seconds idle} from the head at ``address``."""
    channel = grpc.insecure_channel(address)
    try:
        reply = pb_grpc.NodeStub(channel).ClusterInfo(
            pb.ClusterInfoRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=timeout)
    finally:
        channel.close()
    return {node.address: node.idle_seconds for node in reply.nodes if node.alive and not node.is_head}


class HeadIdleness:
    """An idleness probe (see ``reconciler.IdlenessProbe``) backed by the cluster's head.

    ``read_secret(namespace, name)`` returns the Secret object or None; ``address(cluster,
    namespace)`` the head's gRPC address (its Service DNS name by default).
    """

    def __init__(self, read_secret: Callable[[str, str], Mapping[str, Any] | None],
                 address: Callable[[str, str], str] = c.head_address) -> None:
        self._read_secret = read_secret
        self._address = address

    def __call__(self, cluster: Mapping[str, Any], group: str, pods: Sequence[str]) -> Mapping[str, float] | None:
        meta = cluster.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace", "default")
        try:
            endpoint = head_endpoint(cluster, self._read_secret, self._address)
            if endpoint is None:
                return None
            idle = idle_seconds_by_name(*endpoint)
        except Exception as exc:  # noqa: BLE001 - unknown idleness is a normal answer
            logger.info("no idleness from the head of %s/%s: %s", namespace, name, exc)
            return None
        return {pod: idle[pod] for pod in pods if pod in idle}


def head_endpoint(cluster: Mapping[str, Any], read_secret: Callable[[str, str], Mapping[str, Any] | None],
                  address: Callable[[str, str], str] = c.head_address) -> tuple[str, str] | None:
    """``(address, token)`` of the cluster's head gRPC port, or None while its Secret is missing.

    The address is the head Service's (``headService.metadata.name`` when set, else what
    ``address(name, namespace)`` gives); the token comes from the cluster's Secret.
    """
    meta = cluster.get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "default")
    secret = read_secret(namespace, c.secret_name(name))
    if not secret:
        return None
    token = base64.b64decode((secret.get("data") or {})[c.TOKEN_KEY]).decode()
    service = ((((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("headService") or {})
               .get("metadata") or {}).get("name")
    return (address(name, namespace) if not service else c.head_address(name, namespace, service)), token
