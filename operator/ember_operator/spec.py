"""A RayCluster's spec: validation with clear messages, and its parsed, defaulted form.

The CRD's OpenAPI schema catches type errors at admission; this module checks
what a schema cannot (replica bounds, unique group names, names that fit in
labels and DNS) and turns the raw dict into frozen dataclasses the builders,
planner and status code share. Everything here is pure.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ember_node.start_flags import check_start_params

from ember_operator import constants as c
from ember_operator.kuberay import merged_start_params, unsupported_fields
from ember_operator.quantities import QuantityError, parse_quantity

__all__ = [
    "InvalidSpecError",
    "GroupSpec",
    "ClusterSpec",
    "spec_problems",
    "validate_spec",
    "parse_cluster",
    "RESERVED_START_PARAMS",
    "MAX_REPLICAS",
]

MAX_REPLICAS = 2**31 - 1
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
#: autoscalerOptions.upscalingMode, as KubeRay takes it (see ember_operator.autoscaler)
UPSCALING_MODES = ("Conservative", "Default", "Aggressive")
UPGRADE_TYPES = (c.UPGRADE_RECREATE, c.UPGRADE_NONE)

# Flags the operator sets itself: letting startParams override them would break the
# Service, the probes or the token mount, so they are refused with a reason.
RESERVED_START_PARAMS: Mapping[str, str] = {
    "head": "the operator decides which pod is the head",
    "address": "workers always join the head Service",
    "block": "agents in pods always run in the foreground",
    "host": "agents in pods listen on 0.0.0.0",
    "port": f"the head Service exposes {c.GRPC_PORT}",
    "metrics-port": f"probes and scraping use {c.METRICS_PORT}",
    "dashboard-port": f"the head Service exposes {c.DASHBOARD_PORT}",
    "token-file": f"the token Secret is mounted at {c.TOKEN_FILE}",
    "node-ip-address": "agents in pods advertise the pod IP",
    "state-dir": f"the head keeps its state in its state volume at {c.STATE_DIR} "
                 f"(annotation {c.ANNOTATION_STATE_CLAIM} names a PVC for it)",
}
# Reserved flags a KubeRay manifest often sets to what the operator sets anyway: dropped.
TOLERATED_START_PARAMS: Mapping[str, tuple[str, ...]] = {"block": ("", "true")}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_FLAG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# "<cluster>-head-svc" must be a DNS-1035 label (a Service name): at most 63 characters.
MAX_CLUSTER_NAME = 63 - len("-head-svc")
MAX_GROUP_NAME = 63  # a label value


class InvalidSpecError(ValueError):
    """A RayCluster spec the operator refuses; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid RayCluster spec: " + "; ".join(self.problems))


@dataclass(frozen=True)
class GroupSpec:
    """One group of identical pods: the head (always one replica) or a worker group."""

    name: str
    node_type: str
    replicas: int
    min_replicas: int
    max_replicas: int
    template: Mapping[str, Any]
    start_params: Mapping[str, str]
    workers_to_delete: tuple[str, ...] = ()
    labels: Mapping[str, str] | None = None  # the group's ``labels``: added to its pods' labels
    num_of_hosts: int = 1  # pods per replica (``numOfHosts``)
    requested_replicas: int | None = None  # ``replicas`` as written, before clamping to the bounds
    idle_timeout_seconds: int | None = None  # autoscaling: remove a worker idle this long

    @property
    def desired_pods(self) -> int:
        """Pods wanted in this group: replicas times hosts per replica."""
        return self.replicas * self.num_of_hosts

    @property
    def clamped(self) -> bool:
        """``replicas`` was outside ``minReplicas..maxReplicas`` and was brought inside."""
        return self.requested_replicas is not None and self.requested_replicas != self.replicas


@dataclass(frozen=True)
class ClusterSpec:
    """A validated RayCluster with every default applied."""

    name: str
    namespace: str
    uid: str
    generation: int
    head: GroupSpec
    workers: tuple[GroupSpec, ...]
    service_type: str = "ClusterIP"
    suspend: bool = False
    upgrade_strategy: str = c.UPGRADE_NONE
    #: fields accepted but not acted on (see ember_operator.kuberay.unsupported_fields)
    unsupported: tuple[str, ...] = ()
    ray_version: str = ""  # recorded, ignored
    service_name: str = ""  # the head Service's name: headService.metadata.name, else <name>-head-svc
    #: headGroupSpec.headService (a Service merged into ours) and spec.headServiceAnnotations
    head_service: Mapping[str, Any] | None = None
    service_annotations: Mapping[str, str] | None = None
    #: the agent container's own command is kept as it is (annotation ray.io/overwrite-container-cmd)
    keep_container_command: bool = False
    autoscaling: bool = False  # enableInTreeAutoscaling
    autoscaler_idle_timeout_seconds: int | None = None  # autoscalerOptions.idleTimeoutSeconds
    upscaling_mode: str = "Default"  # autoscalerOptions.upscalingMode (see UPSCALING_MODES)
    #: the PVC holding the head's --state-dir (annotation ember.dev/state-volume-claim); None: an emptyDir
    state_claim: str | None = None

    @property
    def head_address(self) -> str:
        """The ``host:port`` worker agents dial: the head Service's DNS name and the gRPC port."""
        return c.head_address(self.name, self.namespace, self.service_name or None)

    @property
    def groups(self) -> tuple[GroupSpec, ...]:
        """The head group followed by the worker groups."""
        return (self.head, *self.workers)

    def group(self, name: str, node_type: str) -> GroupSpec | None:
        """The group with this name and node type, if the spec has it."""
        for group in self.groups:
            if group.name == name and group.node_type == node_type:
                return group
        return None


def _template_problems(where: str, template: Any, agent: str) -> list[str]:
    if not isinstance(template, Mapping):
        return [f"{where}.template is required (a PodTemplateSpec)"]
    spec = template.get("spec")
    if not isinstance(spec, Mapping):
        return [f"{where}.template.spec is required"]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [f"{where}.template.spec.containers must list at least one container"]
    problems = []
    for index, container in enumerate(containers):
        if not isinstance(container, Mapping) or not container.get("name"):
            problems.append(f"{where}.template.spec.containers[{index}].name is required")
    index = next((i for i, ctr in enumerate(containers)
                  if isinstance(ctr, Mapping) and ctr.get("name") == agent), 0)
    chosen = containers[index]
    if isinstance(chosen, Mapping) and not chosen.get("image"):
        problems.append(
            f"{where}.template.spec.containers[{index}].image is required "
            f"(it runs the ember agent: the container named {agent!r}, else the first)"
        )
    return problems


def _map_problems(where: str, group: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in ("rayStartParams", "startParams", "labels", "resources"):
        value = group.get(key)
        if value is not None and not isinstance(value, Mapping):
            problems.append(f"{where}.{key} must be a map of names to strings")
    for name, raw in (group.get("resources") or {}).items() if isinstance(group.get("resources"), Mapping) else ():
        try:
            parse_quantity(raw)
        except QuantityError:
            problems.append(f"{where}.resources.{name} {raw!r} is not a quantity (e.g. \"2\", \"500m\", \"4Gi\")")
    return problems


def _start_params_problems(where: str, group: Mapping[str, Any]) -> list[str]:
    problems = _map_problems(where, group)
    if problems:
        return problems
    params = merged_start_params(group)
    bad = [key for key in params if not _FLAG.match(key)]
    for key in bad:
        problems.append(f"{where}.startParams key {key!r} is not a flag name (lowercase, digits, dashes)")
    check = check_start_params({k: v for k, v in params.items() if k not in bad})
    problems += [f"{where}.rayStartParams: {problem} (the agent would refuse it)" for problem in check.problems]
    for key, value in check.flags.items():
        if key in RESERVED_START_PARAMS and value.lower() not in TOLERATED_START_PARAMS.get(key, ()):
            problems.append(
                f"{where}.startParams.{key} is set by the operator ({RESERVED_START_PARAMS[key]})"
            )
    return problems


def agent_start_params(group: Mapping[str, Any]) -> dict[str, str]:
    """The start params the agent gets: Ray's names made ember's, ignored and tolerated ones dropped."""
    check = check_start_params(merged_start_params(group))
    return {key: value for key, value in check.flags.items() if key not in TOLERATED_START_PARAMS}


def _int_field(where: str, group: Mapping[str, Any], key: str, problems: list[str]) -> int | None:
    value = group.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"{where}.{key} must be a non-negative integer, not {value!r}")
        return None
    return value


def _worker_problems(index: int, group: Any, seen: set[str]) -> list[str]:
    where = f"workerGroupSpecs[{index}]"
    if not isinstance(group, Mapping):
        return [f"{where} must be an object"]
    problems: list[str] = []
    name = group.get("groupName")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.groupName is required")
    else:
        where = f"workerGroupSpecs[{index}] ({name!r})"
        if not _DNS_LABEL.match(name) or len(name) > MAX_GROUP_NAME:
            problems.append(
                f"{where}.groupName must be a DNS label: lowercase letters, digits and '-', "
                f"starting and ending with a letter or digit, at most {MAX_GROUP_NAME} characters"
            )
        if name in seen:
            problems.append(f"{where}.groupName is used by more than one worker group")
        seen.add(name)
    _int_field(where, group, "replicas", problems)  # outside the bounds it is clamped, as KubeRay does
    low = _int_field(where, group, "minReplicas", problems)
    high = _int_field(where, group, "maxReplicas", problems)
    low = 0 if low is None else low
    high = MAX_REPLICAS if high is None else high
    if low > high:
        problems.append(f"{where}: minReplicas ({low}) is greater than maxReplicas ({high})")
    hosts = group.get("numOfHosts")
    if hosts is not None and (isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 1):
        problems.append(f"{where}.numOfHosts must be a positive integer, not {hosts!r}")
    problems += _template_problems(where, group.get("template"), c.AGENT_CONTAINER["worker"])
    problems += _start_params_problems(where, group)
    strategy = group.get("scaleStrategy") or {}
    to_delete = strategy.get("workersToDelete") if isinstance(strategy, Mapping) else None
    if to_delete is not None and (
        not isinstance(to_delete, list) or not all(isinstance(n, str) for n in to_delete)
    ):
        problems.append(f"{where}.scaleStrategy.workersToDelete must be a list of pod names")
    return problems


def spec_problems(name: str, spec: Any) -> list[str]:
    """Every reason the operator would refuse this RayCluster (empty when it is valid)."""
    problems: list[str] = []
    if not _DNS_1035.match(name or "") or len(name) > MAX_CLUSTER_NAME:
        problems.append(
            f"metadata.name {name!r} must start with a letter, use lowercase letters, digits and "
            f"'-', and have at most {MAX_CLUSTER_NAME} characters (the head Service is "
            f"'<name>-head-svc')"
        )
    if not isinstance(spec, Mapping):
        return [*problems, "spec is required"]
    head = spec.get("headGroupSpec")
    if not isinstance(head, Mapping):
        problems.append("spec.headGroupSpec is required")
    else:
        problems += _template_problems("headGroupSpec", head.get("template"), c.AGENT_CONTAINER["head"])
        problems += _start_params_problems("headGroupSpec", head)
        custom = ((head.get("headService") or {}).get("metadata") or {}).get("name") \
            if isinstance(head.get("headService") or {}, Mapping) else None
        if custom is not None and (not isinstance(custom, str) or not _DNS_1035.match(custom) or len(custom) > 63):
            problems.append(f"headGroupSpec.headService.metadata.name {custom!r} must be a DNS-1035 label "
                            "(a Service name: lowercase letters, digits and '-', at most 63 characters)")
        service_type = head.get("serviceType")
        if service_type is not None and service_type not in SERVICE_TYPES:
            problems.append(
                f"headGroupSpec.serviceType {service_type!r} must be one of "
                + ", ".join(SERVICE_TYPES)
            )
    workers = spec.get("workerGroupSpecs")
    if workers is not None and not isinstance(workers, list):
        problems.append("spec.workerGroupSpecs must be a list")
    else:
        seen: set[str] = set()
        for index, group in enumerate(workers or []):
            problems += _worker_problems(index, group, seen)
    suspend = spec.get("suspend")
    if suspend is not None and not isinstance(suspend, bool):
        problems.append(f"spec.suspend must be true or false, not {suspend!r}")
    options = spec.get("autoscalerOptions")
    if options is not None and not isinstance(options, Mapping):
        problems.append("spec.autoscalerOptions must be an object")
    elif (mode := (options or {}).get("upscalingMode")) is not None and mode not in UPSCALING_MODES:
        problems.append(f"spec.autoscalerOptions.upscalingMode {mode!r} must be one of " + ", ".join(UPSCALING_MODES))
    upgrade = spec.get("upgradeStrategy") or {}
    kind = upgrade.get("type") if isinstance(upgrade, Mapping) else upgrade
    if kind is not None and kind not in UPGRADE_TYPES:
        problems.append(f"spec.upgradeStrategy.type {kind!r} must be one of " + ", ".join(UPGRADE_TYPES))
    return problems


def validate_spec(name: str, spec: Any) -> None:
    """Raise :class:`InvalidSpecError` listing every problem, or return if the spec is valid."""
    problems = spec_problems(name, spec)
    if problems:
        raise InvalidSpecError(problems)


def head_service_name(cluster: str, head: Mapping[str, Any]) -> str:
    """The head Service's name: ``headService.metadata.name`` if given, else ``<cluster>-head-svc``."""
    custom = ((head.get("headService") or {}).get("metadata") or {}).get("name")
    return str(custom) if custom else c.head_service_name(cluster)


def parse_cluster(body: Mapping[str, Any]) -> ClusterSpec:
    """Validate a RayCluster object and return its spec with defaults applied.

    Defaults: ``minReplicas`` 0, ``maxReplicas`` 2**31-1, ``replicas`` = ``minReplicas``
    (and clamped to ``minReplicas..maxReplicas``), ``numOfHosts`` 1,
    ``serviceType`` ClusterIP, ``suspend`` false, ``upgradeStrategy.type`` None.
    """
    meta = body.get("metadata") or {}
    spec = body.get("spec")
    validate_spec(meta.get("name", ""), spec)
    assert isinstance(spec, Mapping)
    head_raw = spec["headGroupSpec"]
    head = GroupSpec(
        name=c.HEAD_GROUP,
        node_type=c.NODE_TYPE_HEAD,
        replicas=1,
        min_replicas=1,
        max_replicas=1,
        template=head_raw["template"],
        start_params=agent_start_params(head_raw),
        labels=dict(head_raw.get("labels") or {}),
    )
    workers = []
    for raw in spec.get("workerGroupSpecs") or []:
        low = raw.get("minReplicas") or 0
        high = raw.get("maxReplicas")
        high = MAX_REPLICAS if high is None else high
        replicas = raw.get("replicas")
        wanted = low if replicas is None else replicas
        workers.append(
            GroupSpec(
                name=raw["groupName"],
                node_type=c.NODE_TYPE_WORKER,
                replicas=min(max(wanted, low), high),
                requested_replicas=replicas,
                num_of_hosts=raw.get("numOfHosts") or 1,
                idle_timeout_seconds=raw.get("idleTimeoutSeconds"),
                min_replicas=low,
                max_replicas=high,
                template=raw["template"],
                start_params=agent_start_params(raw),
                labels=dict(raw.get("labels") or {}),
                workers_to_delete=tuple((raw.get("scaleStrategy") or {}).get("workersToDelete") or ()),
            )
        )
    upgrade = (spec.get("upgradeStrategy") or {}).get("type") or c.UPGRADE_NONE
    return ClusterSpec(
        name=meta["name"],
        namespace=meta.get("namespace") or "default",
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0),
        head=head,
        workers=tuple(workers),
        service_type=head_raw.get("serviceType")
        or ((head_raw.get("headService") or {}).get("spec") or {}).get("type") or "ClusterIP",
        suspend=bool(spec.get("suspend", False)),
        upgrade_strategy=upgrade,
        unsupported=tuple(unsupported_fields(spec)),
        service_name=head_service_name(meta["name"], head_raw),
        head_service=head_raw.get("headService") or None,
        service_annotations=dict(spec.get("headServiceAnnotations") or {}),
        autoscaling=bool(spec.get("enableInTreeAutoscaling")),
        autoscaler_idle_timeout_seconds=(spec.get("autoscalerOptions") or {}).get("idleTimeoutSeconds"),
        upscaling_mode=(spec.get("autoscalerOptions") or {}).get("upscalingMode") or "Default",
        keep_container_command=any(
            str((meta.get("annotations") or {}).get(key, "")).lower() == "true"
            for key in c.ANNOTATIONS_OVERWRITE_CMD),
        ray_version=str(spec.get("rayVersion") or ""),
        state_claim=str((meta.get("annotations") or {}).get(c.ANNOTATION_STATE_CLAIM) or "") or None,
    )
