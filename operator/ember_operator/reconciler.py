"""One level-triggered reconcile pass for a RayCluster, serialized per cluster.

Every trigger (the cluster created, changed or resumed, the periodic timer, an event
on one of its pods) ends in :meth:`Reconciler.reconcile`, which reads the cluster and
its pods afresh from the API server, decides with the pure planner, acts, and writes
the status if it changed. Passes for the same cluster never overlap (a lock per
cluster) and event-triggered passes coalesce: if one is already waiting for the lock,
it will read everything after the new event anyway, so the new one is dropped.
"""

import datetime
import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ember_operator import autoscaler, builders, planner
from ember_operator import constants as c
from ember_operator.demand import HeadReport
from ember_operator.kube import ApiError, KubeClient
from ember_operator.kuberay import managed_elsewhere
from ember_operator.metrics import OperatorMetrics
from ember_operator.planner import PodInfo
from ember_operator.spec import ClusterSpec, GroupSpec, parse_cluster, spec_problems
from ember_operator.status import (
    compute_status,
    get_condition,
    invalid_status,
    provisioned_just_now,
    status_changed,
)

__all__ = [
    "NotLeaderError",
    "IdlenessProbe",
    "no_idleness",
    "DemandProbe",
    "no_demand",
    "ReconcilerOptions",
    "Reconciler",
    "format_time",
]

logger = logging.getLogger(__name__)

#: Triggers that mean the spec may have changed (as opposed to a pod event or the timer).
SPEC_TRIGGERS = frozenset({"create", "update", "resume"})

#: ``(cluster object, group name, pod names) -> {pod name: seconds idle}`` or None if unknown.
IdlenessProbe = Callable[[Mapping[str, Any], str, Sequence[str]], Mapping[str, float] | None]


def no_idleness(cluster: Mapping[str, Any], group: str, pods: Sequence[str]) -> Mapping[str, float] | None:
    """An idleness probe that knows nothing (see ember_operator.idleness for the head's)."""
    return None


#: ``(cluster object) -> what its head reports (pending demand, joined workers)`` or None if unknown.
DemandProbe = Callable[[Mapping[str, Any]], HeadReport | None]


def no_demand(cluster: Mapping[str, Any]) -> HeadReport | None:
    """A demand probe that knows nothing (see ember_operator.demand for the head's)."""
    return None


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _shape_text(resources: Mapping[str, float]) -> str:
    """``{CPU: 2, GPU: 1, memory: 1Gi}``: a resource shape as users write it."""
    parts = []
    for name in sorted(resources):
        amount = float(resources[name])
        if name in ("memory", "object_store_memory") and amount >= 1 << 20:
            text = f"{amount / (1 << 30):g}Gi" if amount >= 1 << 30 else f"{amount / (1 << 20):g}Mi"
        else:
            text = f"{amount:g}"
        parts.append(f"{name}: {text}")
    return "{" + ", ".join(parts) + "}"


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ReconcilerOptions:
    """Injectable sources of randomness, time and outside knowledge (tests replace them)."""

    suffix: builders.SuffixFactory = builders.random_suffix
    token: Callable[[], str] = builders.new_token
    idleness: IdlenessProbe = no_idleness
    demand: DemandProbe = no_demand
    clock: Callable[[], datetime.datetime] = _utcnow


class NotLeaderError(Exception):
    """Leadership was lost during a pass: stop before the next write."""


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: bool = False


class Reconciler:
    """Brings RayClusters to their desired state. Thread-safe; calls block on the API."""

    def __init__(
        self,
        kube: KubeClient,
        metrics: OperatorMetrics,
        *,
        options: ReconcilerOptions | None = None,
        instance: str | None = None,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.instance = instance or socket.gethostname()
        self.options = options or ReconcilerOptions()
        #: whether this operator may write now (leader election); checked before every write
        self.may_act = may_act
        self._slots: dict[tuple[str, str], _Slot] = {}
        #: per cluster, the autoscaler warnings of its last pass (each is posted once while it holds)
        self._warned: dict[tuple[str, str], set[str]] = {}
        self._guard = threading.Lock()

    def event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post a Kubernetes Event about ``body``; failing to is logged, never fatal."""
        logger.log(logging.WARNING if type_ == "Warning" else logging.INFO, "%s/%s: %s: %s",
                   (body.get("metadata") or {}).get("namespace"), (body.get("metadata") or {}).get("name"),
                   reason, message)
        event = builders.build_event(body, type_, reason, message,
                                     now=format_time(self.options.clock()), instance=self.instance)
        try:
            self.kube.create(event["metadata"]["namespace"], "events", event)
        except ApiError as exc:
            logger.warning("Could not post the event %s: %s", reason, exc)

    def forget(self, namespace: str, name: str) -> None:
        """The cluster was deleted: drop its bookkeeping (its objects are garbage-collected)."""
        with self._guard:
            self._slots.pop((namespace, name), None)
            self._warned.pop((namespace, name), None)
        self.metrics.forget(namespace, name)

    def reconcile(self, namespace: str, name: str, *, trigger: str, coalesce: bool = False) -> str | None:
        """Run one pass for the cluster; returns its state, or None if skipped or gone.

        With ``coalesce``, the pass is skipped when another is already waiting to start;
        passes are skipped (None) while this operator is not the leader, and a pass stops
        before its next write when leadership is lost midway.
        """
        if not self.may_act():
            return None
        with self._guard:
            slot = self._slots.setdefault((namespace, name), _Slot())
            if coalesce and slot.pending:
                return None
            slot.pending = True
        with slot.lock:
            with self._guard:
                slot.pending = False
            self.metrics.reconciles.labels(trigger=trigger).inc()
            try:
                return self._reconcile(namespace, name, trigger)
            except NotLeaderError:
                logger.info("Stopped a pass of %s/%s: no longer the leader", namespace, name)
                return None
            except Exception:
                self.metrics.reconcile_errors.labels(trigger=trigger).inc()
                raise

    # --- one pass ----------------------------------------------------------------------------
    def _reconcile(self, namespace: str, name: str, trigger: str) -> str | None:
        try:
            body = self.kube.get_cluster(namespace, name)
        except ApiError as exc:
            if exc.not_found:
                self.forget(namespace, name)
                return None
            raise
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None
        spec = body.get("spec")
        if isinstance(spec, Mapping) and managed_elsewhere(spec) is not None:
            return None  # spec.managedBy names another controller: leave the cluster to it
        previous = body.get("status") or {}
        now = format_time(self.options.clock())
        problems = spec_problems(name, body.get("spec"))
        if problems:
            status = invalid_status(problems, previous=previous, now=now,
                                    generation=int(meta.get("generation") or 0))
            if status_changed(previous, status):
                self.kube.patch_cluster_status(namespace, name, status)
                self.event(body, "Warning", "InvalidSpec", status["reason"])
            self.metrics.set_state(namespace, name, c.STATE_FAILED)
            return c.STATE_FAILED

        cluster = parse_cluster(body)
        if trigger in SPEC_TRIGGERS:
            self._report_clamped(cluster, body)
        self._ensure_secret(cluster, body)
        service = self._ensure_service(cluster, body)
        pods = [PodInfo.from_pod(pod) for pod in self._owned_pods(cluster)]
        pods, failure = self._scale(cluster, body, pods)
        status = compute_status(cluster, pods, service=service, previous=previous, now=now,
                                replica_failure=failure)
        if status_changed(previous, status):
            self.kube.patch_cluster_status(namespace, name, status)
            self._report_unsupported(body, previous, status)
            if provisioned_just_now(previous, status):
                self._observe_provisioning(body)
        self.metrics.set_state(namespace, name, status["state"])
        return str(status["state"])

    def _report_clamped(self, cluster: ClusterSpec, body: Mapping[str, Any]) -> None:
        for group in cluster.workers:
            if group.clamped:
                self.event(body, "Warning", "ReplicasClamped",
                           f"worker group {group.name}: replicas {group.requested_replicas} is outside "
                           f"minReplicas..maxReplicas ({group.min_replicas}..{group.max_replicas}); "
                           f"using {group.replicas}")

    def _autoscale_down(
        self, cluster: ClusterSpec, body: Mapping[str, Any], group: GroupSpec, pods: list[PodInfo]
    ) -> bool:
        """With in-tree autoscaling, lower replicas and name the idle pods (as KubeRay's
        autoscaler does); True when the spec was changed."""
        if not cluster.autoscaling or cluster.suspend:
            return False
        alive = [p.name for p in pods if p.alive]
        idleness = self.options.idleness(body, group.name, alive) if alive else None
        change = autoscaler.plan_scale_down(cluster, group, alive, idleness)
        if change is None:
            return False
        groups = (body.get("spec") or {}).get("workerGroupSpecs") or []
        index = next((i for i, raw in enumerate(groups) if raw.get("groupName") == group.name), None)
        if index is None:
            return False
        path = f"/spec/workerGroupSpecs/{index}"
        raw = groups[index]
        self._check_leader()
        operations: list[Mapping[str, Any]] = [{"op": "test", "path": f"{path}/groupName", "value": group.name}]
        if "replicas" in raw:
            operations.append({"op": "test", "path": f"{path}/replicas", "value": raw["replicas"]})
        operations += [
            {"op": "add", "path": f"{path}/replicas", "value": change.new_replicas},
            {"op": "add", "path": f"{path}/scaleStrategy", "value": {"workersToDelete": list(change.pods)}},
        ]
        try:
            self.kube.json_patch_cluster(cluster.namespace, cluster.name, operations)
        except ApiError as exc:
            logger.info("Autoscaling of %s/%s group %s left for the next pass: %s",
                        cluster.namespace, cluster.name, group.name, exc)
            return False
        self.event(body, "Normal", "ScaledDown",
                   f"worker group {group.name}: {change.replicas} -> {change.new_replicas} replicas; "
                   f"removing idle {', '.join(change.pods)}")
        return True

    def _autoscale_up(self, cluster: ClusterSpec, body: Mapping[str, Any], pods: list[PodInfo]) -> set[str]:
        """With in-tree autoscaling, raise the replicas of the groups whose pods fit the head's
        pending demand (as KubeRay's autoscaler does); the names of the groups changed."""
        if not cluster.autoscaling or cluster.suspend or not cluster.workers:
            return set()
        report = self.options.demand(body)
        if report is None:
            return set()
        current = {}
        for group in cluster.workers:
            joined = [report.workers[p.name] for p in pods
                      if p.node_type == c.NODE_TYPE_WORKER and p.group == group.name and p.alive
                      and p.name in report.workers]
            current[group.name] = autoscaler.GroupState(len(joined), joined[0] if joined else None)
        plan = autoscaler.plan_scale_up(cluster, report.demand, current, waiting=report.waiting, free=report.free)
        self._report_unschedulable(cluster, body, plan)
        if plan.deferred:
            logger.info("%s/%s: upscalingMode Conservative holds back %d pod(s) until the pending ones join",
                        cluster.namespace, cluster.name, plan.deferred)
        raised = set()
        for change in plan.scale:
            if self._patch_replicas(cluster, body, change.group, change.new_replicas):
                raised.add(change.group)
                what = "; ".join(_shape_text(shape) for shape in change.shapes)
                self.event(body, "Normal", "ScaledUp",
                           f"worker group {change.group}: {change.replicas} -> {change.new_replicas} replicas "
                           f"for pending work ({what})")
        return raised

    def _report_unschedulable(self, cluster: ClusterSpec, body: Mapping[str, Any],
                              plan: autoscaler.ScaleUpPlan) -> None:
        warnings: list[tuple[str, str, str]] = []  # reason, what it is about, message
        for unfit in plan.unfit:
            if unfit.largest_group is None:
                where = "the cluster has no worker groups"
            else:
                where = (f"the largest, {unfit.largest_group}, offers {_shape_text(unfit.largest or {})} "
                         "per pod")
            warnings.append((
                "UnschedulableDemand", _shape_text(unfit.resources),
                f"{unfit.count} pending task(s)/actor(s) need {_shape_text(unfit.resources)}, which no "
                f"worker group's pods fit ({where}): add a worker group whose pods have that much "
                f"(num-cpus/num-gpus/resources in startParams, or container limits), or ask for less"))
        for name in plan.at_max:
            warnings.append(("AtMaxReplicas", name,
                             f"worker group {name} is at maxReplicas and pending work that fits its pods "
                             f"waits: raise its maxReplicas to let the autoscaler add pods"))
        key = (cluster.namespace, cluster.name)
        with self._guard:
            before = self._warned.get(key, set())
            self._warned[key] = {f"{reason} {about}" for reason, about, _ in warnings}
        for reason, about, message in warnings:
            if f"{reason} {about}" not in before:
                self.event(body, "Warning", reason, message)

    def _patch_replicas(self, cluster: ClusterSpec, body: Mapping[str, Any], name: str, new: int) -> bool:
        # guarded like the scale-down patch: a spec changed meanwhile is left for the next pass
        groups = (body.get("spec") or {}).get("workerGroupSpecs") or []
        index = next((i for i, raw in enumerate(groups) if raw.get("groupName") == name), None)
        if index is None:
            return False
        path = f"/spec/workerGroupSpecs/{index}"
        operations: list[Mapping[str, Any]] = [{"op": "test", "path": f"{path}/groupName", "value": name}]
        if "replicas" in groups[index]:
            operations.append({"op": "test", "path": f"{path}/replicas", "value": groups[index]["replicas"]})
        operations.append({"op": "add", "path": f"{path}/replicas", "value": new})
        self._check_leader()
        try:
            self.kube.json_patch_cluster(cluster.namespace, cluster.name, operations)
        except ApiError as exc:
            logger.info("Scaling up %s/%s group %s left for the next pass: %s",
                        cluster.namespace, cluster.name, name, exc)
            return False
        return True

    def _clear_workers_to_delete(self, cluster: ClusterSpec, body: Mapping[str, Any], group: GroupSpec) -> None:
        # Done with the list: empty it (as KubeRay does), guarded so that a spec changed
        # meanwhile (groups reordered, the list rewritten) is left alone for the next pass.
        groups = (body.get("spec") or {}).get("workerGroupSpecs") or []
        index = next((i for i, raw in enumerate(groups) if raw.get("groupName") == group.name), None)
        if index is None:
            return
        path = f"/spec/workerGroupSpecs/{index}"
        try:
            self.kube.json_patch_cluster(cluster.namespace, cluster.name, [
                {"op": "test", "path": f"{path}/groupName", "value": group.name},
                {"op": "test", "path": f"{path}/scaleStrategy/workersToDelete", "value": list(group.workers_to_delete)},
                {"op": "replace", "path": f"{path}/scaleStrategy/workersToDelete", "value": []},
            ])
        except ApiError as exc:
            logger.info("Left workersToDelete of %s/%s group %s for the next pass: %s",
                        cluster.namespace, cluster.name, group.name, exc)

    def _report_unsupported(
        self, body: Mapping[str, Any], previous: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        # once per change of the list: a Warning naming what the spec asks and nothing does
        before = get_condition(previous, c.COND_UNSUPPORTED) or {}
        after = get_condition(status, c.COND_UNSUPPORTED) or {}
        if after.get("status") == "True" and after.get("message") != before.get("message"):
            self.event(body, "Warning", c.COND_UNSUPPORTED, str(after.get("message")))

    def _owned_pods(self, cluster: ClusterSpec) -> list[dict[str, Any]]:
        pods = self.kube.list(cluster.namespace, "pods", {c.LABEL_CLUSTER: cluster.name})
        return [
            pod for pod in pods
            if any(ref.get("uid") == cluster.uid and ref.get("controller")
                   for ref in (pod.get("metadata") or {}).get("ownerReferences") or [])
        ]

    def _ensure_secret(self, cluster: ClusterSpec, body: Mapping[str, Any]) -> None:
        # A Secret of that name made beforehand (say, to choose the token) is used as it is.
        if self.kube.get(cluster.namespace, "secrets", c.secret_name(cluster.name)) is not None:
            return
        secret = builders.build_token_secret(cluster, self.options.token())
        try:
            self.kube.create(cluster.namespace, "secrets", secret)
        except ApiError as exc:
            if not exc.conflict:
                raise
        else:
            self.event(body, "Normal", "CreatedSecret", f"Created token Secret {secret['metadata']['name']}")

    def _ensure_service(self, cluster: ClusterSpec, body: Mapping[str, Any]) -> dict[str, Any]:
        name = cluster.service_name
        service = self.kube.get(cluster.namespace, "services", name)
        if service is None:
            service = self.kube.create(cluster.namespace, "services", builders.build_head_service(cluster))
            self.event(body, "Normal", "CreatedService", f"Created head Service {name}")
        elif (service.get("spec") or {}).get("type", "ClusterIP") != cluster.service_type:
            service = self.kube.patch(cluster.namespace, "services", name,
                                      {"spec": {"type": cluster.service_type}})
            self.event(body, "Normal", "UpdatedService",
                        f"Changed head Service {name} to type {cluster.service_type}")
        return service

    def _scale(
        self, cluster: ClusterSpec, body: Mapping[str, Any], pods: list[PodInfo]
    ) -> tuple[list[PodInfo], str | None]:
        failure: str | None = None
        known = {(group.node_type, group.name) for group in cluster.groups}
        for pod in pods:
            if (pod.node_type, pod.group) not in known and not pod.deleting:
                self._delete(cluster, body, planner.Deletion(pod.name, "group-removed"))
        pods = [pod for pod in pods if (pod.node_type, pod.group) in known]
        raised = self._autoscale_up(cluster, body, pods)
        for group in cluster.groups:
            mine = [p for p in pods if p.node_type == group.node_type and p.group == group.name]
            if group.node_type == c.NODE_TYPE_WORKER and group.name in raised:
                continue  # the spec changed: the pass its update triggers creates the pods
            if group.node_type == c.NODE_TYPE_WORKER and self._autoscale_down(cluster, body, group, mine):
                continue  # the spec changed: the pass its update triggers deletes the idle pods
            plan = self._plan(cluster, body, group, mine)
            gone = set()
            for deletion in plan.delete:
                self._delete(cluster, body, deletion)
                gone.add(deletion.name)
            if group.workers_to_delete:
                self._clear_workers_to_delete(cluster, body, group)
            pods = [p for p in pods if p.name not in gone]
            for _ in range(plan.create):
                try:
                    pods.append(PodInfo.from_pod(self._create(cluster, body, group)))
                except ApiError as exc:
                    failure = f"creating a {group.name} pod failed: {exc}"
                    self.event(body, "Warning", "PodCreationFailed", failure)
                    break
        return pods, failure

    def _plan(
        self, cluster: ClusterSpec, body: Mapping[str, Any], group: GroupSpec, pods: list[PodInfo]
    ) -> planner.ScalePlan:
        desired = 0 if cluster.suspend else group.desired_pods
        alive = [p.name for p in pods if p.alive]
        idleness = self.options.idleness(body, group.name, alive) if len(alive) > desired else None
        return planner.plan_group(
            desired,
            pods,
            template_hash=builders.template_hash(group),
            recreate_outdated=cluster.upgrade_strategy == c.UPGRADE_RECREATE,
            workers_to_delete=group.workers_to_delete,
            idleness=idleness,
        )

    def _check_leader(self) -> None:
        if not self.may_act():
            raise NotLeaderError()

    def _create(self, cluster: ClusterSpec, body: Mapping[str, Any], group: GroupSpec) -> dict[str, Any]:
        self._check_leader()
        name = builders.pod_name(cluster, group, self.options.suffix())
        created = self.kube.create(cluster.namespace, "pods", builders.build_pod(cluster, group, name))
        self.event(body, "Normal", "CreatedPod", f"Created {group.node_type} pod {name}")
        return created

    def _delete(self, cluster: ClusterSpec, body: Mapping[str, Any], deletion: planner.Deletion) -> None:
        self._check_leader()
        if self.kube.delete(cluster.namespace, "pods", deletion.name):
            self.event(body, "Normal", "DeletedPod", f"Deleted pod {deletion.name} ({deletion.reason})")

    def _observe_provisioning(self, body: Mapping[str, Any]) -> None:
        created = (body.get("metadata") or {}).get("creationTimestamp")
        if not created:
            return
        try:
            start = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return
        seconds = (self.options.clock() - start).total_seconds()
        self.metrics.provision_seconds.observe(max(seconds, 0.0))
