"""The RayCluster status, computed from the spec and the objects that exist. Pure.

Conditions have the ``metav1.Condition`` shape (type, status, reason, message,
lastTransitionTime, observedGeneration); a condition's ``lastTransitionTime`` only
moves when its status changes, so recomputing an unchanged cluster yields an equal
status and :func:`status_changed` tells the reconciler it need not write anything.
"""

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from ember_operator import constants as c
from ember_operator.builders import container_resources
from ember_operator.planner import PodInfo
from ember_operator.quantities import format_bytes, format_cpu
from ember_operator.spec import ClusterSpec

__all__ = [
    "set_condition",
    "get_condition",
    "desired_resources",
    "compute_status",
    "invalid_status",
    "status_changed",
    "provisioned_just_now",
    "ENDPOINTS",
]

#: The head Service's ports by name, keyed as KubeRay's (plus ember's own ``grpc``).
ENDPOINTS: Mapping[str, str] = {
    c.PORT_NAME_GCS: str(c.GCS_PORT),
    c.PORT_NAME_CLIENT: str(c.CLIENT_PORT),
    c.PORT_NAME_DASHBOARD: str(c.DASHBOARD_PORT),
    c.PORT_NAME_METRICS: str(c.METRICS_PORT),
    c.PORT_NAME_GRPC: str(c.GRPC_PORT),
}


def get_condition(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """The condition of this type in a status, if any."""
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def set_condition(
    previous: Mapping[str, Any] | None,
    kind: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int,
) -> dict[str, Any]:
    """A condition, keeping the previous ``lastTransitionTime`` unless the status flipped."""
    text = "True" if status else "False"
    old = get_condition(previous, kind)
    since = old.get("lastTransitionTime") if old and old.get("status") == text else None
    return {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
        "observedGeneration": generation,
    }


def desired_resources(cluster: ClusterSpec) -> dict[str, str]:
    """``desiredCPU``/``desiredMemory``/``desiredGPU``: the sum over every desired pod's containers."""
    totals = {"cpu": Decimal(0), "memory": Decimal(0), "gpu": Decimal(0)}
    if not cluster.suspend:
        for group in cluster.groups:
            for container in group.template["spec"]["containers"]:
                for key, value in container_resources(container).items():
                    totals[key] += value * group.desired_pods
    return {
        "desiredCPU": format_cpu(totals["cpu"]),
        "desiredMemory": format_bytes(totals["memory"]),
        "desiredGPU": str(int(totals["gpu"])),
    }


def _head_status(cluster: ClusterSpec, pods: Sequence[PodInfo], service: Mapping[str, Any] | None) -> dict[str, str]:
    head: dict[str, str] = {}
    live = [p for p in pods if p.node_type == c.NODE_TYPE_HEAD and p.alive]
    if live:
        head["podName"] = live[0].name
        if live[0].ip:
            head["podIP"] = live[0].ip
    if service is not None:
        head["serviceName"] = service["metadata"]["name"]
        cluster_ip = (service.get("spec") or {}).get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            head["serviceIP"] = cluster_ip
    return head


def compute_status(
    cluster: ClusterSpec,
    pods: Sequence[PodInfo],
    *,
    service: Mapping[str, Any] | None,
    previous: Mapping[str, Any] | None,
    now: str,
    replica_failure: str | None = None,
) -> dict[str, Any]:
    """The full status of a valid cluster given its live pods and head Service.

    ``replica_failure`` carries the last pod-creation error of this pass, if any.
    """
    gen = cluster.generation
    live = [p for p in pods if p.alive]
    head_ready = any(p.node_type == c.NODE_TYPE_HEAD and p.ready for p in live)
    workers = [p for p in live if p.node_type == c.NODE_TYPE_WORKER]
    desired_workers = 0 if cluster.suspend else sum(g.desired_pods for g in cluster.workers)
    short = []
    for group in cluster.workers:
        ready = sum(1 for p in workers if p.group == group.name and p.ready)
        if not cluster.suspend and ready < group.desired_pods:
            short.append(f"{group.name}: {ready}/{group.desired_pods} workers ready")
    if not cluster.suspend and not head_ready:
        short.insert(0, "head pod not ready")
    provisioned = not cluster.suspend and not short

    # RayClusterProvisioned: every pod ready for the first time; once True it stays True
    old_provisioned = get_condition(previous, c.COND_PROVISIONED)
    if provisioned or (old_provisioned is not None and old_provisioned.get("status") == "True"):
        prov = (True, c.REASON_PROVISIONED, "the head and every desired worker were ready")
    else:
        prov = (False, c.REASON_PROVISIONING,
                "the cluster is suspended" if cluster.suspend else "; ".join(short))

    if cluster.suspend:
        suspending = (bool(live), "Suspending" if live else "Suspended",
                      f"{len(live)} pods still running" if live else "")
        suspended = (not live, "Suspended" if not live else "Suspending",
                     "all pods deleted" if not live else f"{len(live)} pods still running")
        head = (False, "Suspended", "the cluster is suspended")
    else:
        suspending = (False, "NotSuspended", "")
        suspended = (False, "NotSuspended", "")
        head = (head_ready, "HeadPodRunningAndReady" if head_ready else "HeadPodNotReady",
                "" if head_ready else "waiting for the head pod to become ready")
    failure = (replica_failure is not None, "PodCreationFailed" if replica_failure else "NoFailure",
               replica_failure or "")

    unsupported = (bool(cluster.unsupported),
                   "FieldsNotActedOn" if cluster.unsupported else "AllFieldsActedOn",
                   "not acted on: " + "; ".join(cluster.unsupported) if cluster.unsupported else "")

    def cond(kind: str, triple: tuple[bool, str, str]) -> dict[str, Any]:
        return set_condition(previous, kind, *triple, now=now, generation=gen)

    state = c.STATE_SUSPENDED if cluster.suspend else c.STATE_READY if provisioned else c.STATE_PROVISIONING
    return {
        "state": state,
        "reason": "" if provisioned or cluster.suspend else "; ".join(short),
        "conditions": [
            cond(c.COND_HEAD_POD_READY, head),
            cond(c.COND_PROVISIONED, prov),
            cond(c.COND_SUSPENDING, suspending),
            cond(c.COND_SUSPENDED, suspended),
            cond(c.COND_REPLICA_FAILURE, failure),
            cond(c.COND_UNSUPPORTED, unsupported),
        ],
        "readyWorkerReplicas": sum(1 for p in workers if p.ready),
        "availableWorkerReplicas": sum(1 for p in workers if p.phase == "Running"),
        "desiredWorkerReplicas": desired_workers,
        "minWorkerReplicas": sum(g.min_replicas * g.num_of_hosts for g in cluster.workers),
        "maxWorkerReplicas": min(sum(g.max_replicas * g.num_of_hosts for g in cluster.workers), 2**31 - 1),
        **desired_resources(cluster),
        "endpoints": dict(ENDPOINTS),
        "head": _head_status(cluster, pods, service),
        "observedGeneration": gen,
        "lastUpdateTime": now,
    }


def invalid_status(
    problems: Sequence[str], *, previous: Mapping[str, Any] | None, generation: int, now: str
) -> dict[str, Any]:
    """The status of a cluster whose spec the operator refuses: ``failed``, with the reasons."""
    message = "; ".join(problems)
    conditions = [dict(cond) for cond in (previous or {}).get("conditions") or []
                  if cond.get("type") != c.COND_REPLICA_FAILURE]
    conditions.append(set_condition(previous, c.COND_REPLICA_FAILURE, True, "InvalidSpec", message,
                                    now=now, generation=generation))
    return {
        "state": c.STATE_FAILED,
        "reason": message,
        "conditions": conditions,
        "observedGeneration": generation,
        "lastUpdateTime": now,
    }


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether merge-patching ``new`` onto ``old`` would change anything but ``lastUpdateTime``.

    Keys absent from ``new`` are left alone by a merge patch, so they do not count.
    """
    old = old or {}
    return any(old.get(key) != value for key, value in new.items() if key != "lastUpdateTime")


def provisioned_just_now(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether this status is the cluster's first ever ``RayClusterProvisioned=True``.

    Used to observe the provisioning-time histogram once per cluster, also across
    operator restarts: the condition never reverts once True.
    """
    before = get_condition(old, c.COND_PROVISIONED)
    after = get_condition(new, c.COND_PROVISIONED)
    return bool(after and after.get("status") == "True" and (before is None or before.get("status") != "True"))
