"""The objects a RayCluster owns, built as plain dicts: pure functions, no I/O.

- head Pod ``<cluster>-head-<suffix>`` and worker Pods ``<cluster>-<group>-worker-<suffix>``,
  whose agent container (named ``ember-head``/``ember-worker``, else the first) runs ``ember start ...`` with flags derived from the group's
  ``startParams`` and container resource limits;
- head Service ``<cluster>-head-svc`` with KubeRay's port names (``gcs-server`` 6379 and
  ``client`` 10001 lead to the head's gRPC port, ``dashboard`` 8265, ``metrics`` 8080, and
  ember's own ``grpc`` 6380), merged with the user's ``headService``; every target port is
  a number, so a user's container port of the same name is never picked by mistake;
- token Secret ``<cluster>-token`` (key ``token``, mounted read-only in every pod);
- core/v1 Events about the cluster.

Every object carries the cluster's labels and a controller ``ownerReference`` so that
deleting the RayCluster garbage-collects it. Pods also carry a hash of their group's
template and start params, which the planner compares to roll pods with ``Recreate``.
"""

import base64
import copy
import hashlib
import json
import secrets
import shlex
import string
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ember_node.start_flags import EMBER_FLAGS, SWITCH, parse_bool

from ember_operator import constants as c
from ember_operator.quantities import QuantityError, parse_quantity
from ember_operator.spec import ClusterSpec, GroupSpec

__all__ = [
    "SUFFIX_ALPHABET",
    "SuffixFactory",
    "random_suffix",
    "owner_reference",
    "cluster_labels",
    "pod_labels",
    "template_hash",
    "agent_container_index",
    "container_resources",
    "start_args",
    "agent_command",
    "pod_name",
    "build_pod",
    "build_head_pod",
    "build_worker_pod",
    "build_head_service",
    "build_token_secret",
    "new_token",
    "build_event",
]

SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
SuffixFactory = Callable[[], str]


def random_suffix() -> str:
    """Five random lowercase letters or digits, as Kubernetes' ``generateName`` makes."""
    return "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(5))


def new_token() -> str:
    """A fresh cluster token: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def owner_reference(cluster: ClusterSpec) -> dict[str, Any]:
    """The controller reference that makes an object belong to (and die with) the cluster."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": cluster.name,
        "uid": cluster.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def cluster_labels(cluster: ClusterSpec) -> dict[str, str]:
    """Labels on every object of the cluster."""
    return {
        c.LABEL_CLUSTER: cluster.name,
        c.LABEL_APP_NAME: c.APP_NAME,
        c.LABEL_APP_INSTANCE: cluster.name,
        c.LABEL_MANAGED_BY: c.MANAGER,
    }


def pod_labels(cluster: ClusterSpec, group: GroupSpec) -> dict[str, str]:
    """Labels on the pods of one group (and the head Service): ember's, and KubeRay's ``ray.io/``."""
    return {
        **cluster_labels(cluster),
        c.LABEL_NODE_TYPE: group.node_type,
        c.LABEL_GROUP: group.name,
        c.LABEL_APP_COMPONENT: group.node_type,
        c.LABEL_RAY_CLUSTER: cluster.name,
        c.LABEL_RAY_NODE_TYPE: group.node_type,
        c.LABEL_RAY_GROUP: c.RAY_HEAD_GROUP if group.node_type == c.NODE_TYPE_HEAD else group.name,
        c.LABEL_RAY_IS_NODE: "yes",
    }


def template_hash(group: GroupSpec) -> str:
    """A short stable hash of what a group's pods are made from (template and startParams).

    Replicas and the scale strategy are left out: scaling never rolls pods.
    """
    payload = {"template": group.template, "startParams": dict(group.start_params)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def agent_container_index(group: GroupSpec) -> int:
    """Index of the container running the agent: ``ember-head``/``ember-worker`` if present, else 0."""
    wanted = c.AGENT_CONTAINER[group.node_type]
    for index, container in enumerate(group.template["spec"]["containers"]):
        if container.get("name") == wanted:
            return index
    return 0


def container_resources(container: Mapping[str, Any]) -> dict[str, Decimal]:
    """CPU cores, memory bytes and GPUs of a container: its limits, else its requests.

    Keys are present only when the container states them (``cpu``, ``memory``, ``gpu``).
    """
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    found: dict[str, Decimal] = {}
    for key, name in (("cpu", "cpu"), ("memory", "memory"), ("gpu", c.GPU_RESOURCE)):
        raw = limits.get(name, requests.get(name))
        if raw is None:
            continue
        try:
            found[key] = parse_quantity(raw)
        except QuantityError:
            continue
    return found


def _resource_flags(group: GroupSpec, container: Mapping[str, Any]) -> list[str]:
    params = group.start_params
    found = container_resources(container)
    flags: list[str] = []
    if "num-cpus" not in params and "cpu" in found:
        flags += ["--num-cpus", str(max(1, int(found["cpu"])))]
    if "num-gpus" not in params and found.get("gpu"):
        flags += ["--num-gpus", str(int(found["gpu"]))]
    if "memory" not in params and "memory" in found:
        flags += ["--memory", str(int(found["memory"]))]
    return flags


def _param_flags(params: Mapping[str, str]) -> list[str]:
    flags: list[str] = []
    for key in sorted(params):
        value = params[key]
        if EMBER_FLAGS.get(key) == SWITCH and not parse_bool(value):
            continue  # a switch set to false is a switch left out
        # An empty value (or "true") is a bare switch: {"include-dashboard": ""} -> --include-dashboard.
        flags += [f"--{key}"] if value in ("", "true") else [f"--{key}", value]
    return flags


def start_args(cluster: ClusterSpec, group: GroupSpec) -> list[str]:
    """Arguments after the ``ember`` entrypoint for a pod of this group.

    Head: ``start --head --block --host 0.0.0.0 --port 6380 --metrics-port 8080
    --dashboard-port 8265 --dashboard-host 0.0.0.0 --token-file ...``; worker: ``start --block --address
    <cluster>-head-svc.<ns>.svc:6380 --host 0.0.0.0 --metrics-port 8080 --token-file ...``;
    then ``--num-cpus``/``--num-gpus``/``--memory`` from the agent container's resources
    unless startParams gives them, then every startParam as ``--key value``.
    """
    container = group.template["spec"]["containers"][agent_container_index(group)]
    if group.node_type == c.NODE_TYPE_HEAD:
        args = ["start", "--head", "--block", "--host", "0.0.0.0", "--port", str(c.GRPC_PORT),
                "--metrics-port", str(c.METRICS_PORT), "--dashboard-port", str(c.DASHBOARD_PORT),
                "--state-dir", c.STATE_DIR]
        if "dashboard-host" not in group.start_params:  # the Service's dashboard port reaches it
            args += ["--dashboard-host", "0.0.0.0"]
    else:
        args = ["start", "--block", "--address", cluster.head_address,
                "--host", "0.0.0.0", "--metrics-port", str(c.METRICS_PORT)]
    args += ["--token-file", c.TOKEN_FILE]
    return args + _resource_flags(group, container) + _param_flags(group.start_params)


def _container_ports(node_type: str) -> list[dict[str, Any]]:
    ports = [{"name": c.PORT_NAME_METRICS, "containerPort": c.METRICS_PORT, "protocol": "TCP"}]
    if node_type == c.NODE_TYPE_HEAD:
        ports = [
            {"name": c.PORT_NAME_GRPC, "containerPort": c.GRPC_PORT, "protocol": "TCP"},
            *ports,
            {"name": c.PORT_NAME_DASHBOARD, "containerPort": c.DASHBOARD_PORT, "protocol": "TCP"},
        ]
    return ports


def _probe(initial_delay: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": c.HEALTH_PATH, "port": c.METRICS_PORT},  # by number: names may be the user's
        "initialDelaySeconds": initial_delay,
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def agent_command(cluster: ClusterSpec, group: GroupSpec, container: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``command`` and ``args`` of the agent container, as KubeRay treats a user's command.

    No command or args of the user's: ``ember start ...``. With some: a shell runs them
    first, then (if they succeeded) the agent, ``<theirs> && exec ember start ...``. With
    the RayCluster annotated ``ray.io/overwrite-container-cmd: "true"``: theirs as it is
    (it may run ``$EMBER_START_CMD`` / ``$KUBERAY_GEN_RAY_START_CMD`` itself).
    """
    generated = [c.ENTRYPOINT, *start_args(cluster, group)]
    theirs = [str(part) for part in [*(container.get("command") or []), *(container.get("args") or [])]]
    if not theirs:
        return generated[:1], generated[1:]
    if cluster.keep_container_command:
        return list(container.get("command") or []), list(container.get("args") or [])
    # joined with spaces as written: users write shell fragments ("ulimit -n 65536; ...")
    return list(c.SHELL), [f"{' '.join(theirs)} && exec {shlex.join(generated)}"]


def _agent_container(cluster: ClusterSpec, group: GroupSpec, raw: Mapping[str, Any]) -> dict[str, Any]:
    container = copy.deepcopy(dict(raw))
    container["command"], container["args"] = agent_command(cluster, group, raw)
    if not container["command"]:
        del container["command"]
    if not container["args"]:
        del container["args"]
    env = list(container.get("env") or [])
    present = {item.get("name") for item in env}
    for name, path in ((c.ENV_NODE_NAME, "metadata.name"), (c.ENV_POD_IP, "status.podIP")):
        if name not in present:
            env.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
    generated = shlex.join([c.ENTRYPOINT, *start_args(cluster, group)])
    for name in (c.ENV_START_CMD, c.ENV_KUBERAY_START_CMD):
        if name not in present:
            env.append({"name": name, "value": generated})
    container["env"] = env
    ports = list(container.get("ports") or [])
    numbers = {p.get("containerPort") for p in ports}
    names = {p.get("name") for p in ports}
    for port in _container_ports(group.node_type):
        if port["containerPort"] in numbers:
            continue  # the user declared it already (under whatever name)
        if port["name"] in names:  # the user's port of that name is another: ours goes unnamed
            port = {key: value for key, value in port.items() if key != "name"}
        ports.append(port)
    container["ports"] = ports
    container.setdefault("readinessProbe", _probe(initial_delay=2, failures=3))
    container.setdefault("livenessProbe", _probe(initial_delay=10, failures=6))
    mounts = list(container.get("volumeMounts") or [])
    if not any(m.get("name") == c.TOKEN_VOLUME for m in mounts):
        mounts.append({"name": c.TOKEN_VOLUME, "mountPath": c.TOKEN_DIR, "readOnly": True})
    if not any(m.get("mountPath") == "/dev/shm" for m in mounts):
        # the object store lives in /dev/shm, which a container otherwise gets at 64 MiB
        mounts.append({"name": c.SHM_VOLUME, "mountPath": "/dev/shm"})
    if group.node_type == c.NODE_TYPE_HEAD and not any(m.get("name") == c.STATE_VOLUME for m in mounts):
        mounts.append({"name": c.STATE_VOLUME, "mountPath": c.STATE_MOUNT})
    container["volumeMounts"] = mounts
    return container


def state_volume(cluster: ClusterSpec) -> dict[str, Any]:
    """The head's state volume: the PVC the RayCluster names, else an emptyDir (kept across
    container restarts in the same pod)."""
    if cluster.state_claim:
        return {"name": c.STATE_VOLUME, "persistentVolumeClaim": {"claimName": cluster.state_claim}}
    return {"name": c.STATE_VOLUME, "emptyDir": {}}


def build_pod(cluster: ClusterSpec, group: GroupSpec, name: str) -> dict[str, Any]:
    """A pod of ``group`` named ``name``, made from the group's template."""
    template = copy.deepcopy(dict(group.template))
    meta = template.get("metadata") or {}
    spec = template["spec"]
    index = agent_container_index(group)
    spec["containers"][index] = _agent_container(cluster, group, spec["containers"][index])
    volumes = list(spec.get("volumes") or [])
    if not any(v.get("name") == c.TOKEN_VOLUME for v in volumes):
        # world-readable inside the pod: the image runs as a non-root user and a Secret file
        # is owned by root (the pod is the boundary; the Secret's RBAC guards the token)
        volumes.append({
            "name": c.TOKEN_VOLUME,
            "secret": {"secretName": c.secret_name(cluster.name), "defaultMode": 0o444},
        })
    agent = spec["containers"][index]
    if any(m.get("name") == c.SHM_VOLUME for m in agent.get("volumeMounts") or []) and \
            not any(v.get("name") == c.SHM_VOLUME for v in volumes):
        shm: dict[str, Any] = {"medium": "Memory"}
        memory = container_resources(agent).get("memory")
        if memory is not None:
            # the store's default share of memory (see ember_node.store.default_capacity)
            shm["sizeLimit"] = str(int(memory * 3 / 10))
        volumes.append({"name": c.SHM_VOLUME, "emptyDir": shm})
    if group.node_type == c.NODE_TYPE_HEAD and not any(v.get("name") == c.STATE_VOLUME for v in volumes):
        volumes.append(state_volume(cluster))
    spec["volumes"] = volumes
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": cluster.namespace,
            "labels": {**(meta.get("labels") or {}), **(group.labels or {}), **pod_labels(cluster, group)},
            "annotations": {
                **(meta.get("annotations") or {}),
                c.ANNOTATION_TEMPLATE_HASH: template_hash(group),
            },
            "ownerReferences": [owner_reference(cluster)],
        },
        "spec": spec,
    }


def build_head_pod(cluster: ClusterSpec, suffix: str) -> dict[str, Any]:
    """The head pod ``<cluster>-head-<suffix>``."""
    return build_pod(cluster, cluster.head, pod_name(cluster, cluster.head, suffix))


def build_worker_pod(cluster: ClusterSpec, group: GroupSpec, suffix: str) -> dict[str, Any]:
    """A worker pod ``<cluster>-<group>-worker-<suffix>``."""
    return build_pod(cluster, group, pod_name(cluster, group, suffix))


def pod_name(cluster: ClusterSpec, group: GroupSpec, suffix: str) -> str:
    """The name a new pod of ``group`` gets with this random suffix."""
    if group.node_type == c.NODE_TYPE_HEAD:
        return f"{cluster.name}-head-{suffix}"
    return f"{cluster.name}-{group.name}-worker-{suffix}"


def _service_ports() -> list[dict[str, Any]]:
    # (name, Service port, the agent's port): target ports are numbers, never names
    table = (
        (c.PORT_NAME_GCS, c.GCS_PORT, c.GRPC_PORT),
        (c.PORT_NAME_CLIENT, c.CLIENT_PORT, c.GRPC_PORT),
        (c.PORT_NAME_DASHBOARD, c.DASHBOARD_PORT, c.DASHBOARD_PORT),
        (c.PORT_NAME_METRICS, c.METRICS_PORT, c.METRICS_PORT),
        (c.PORT_NAME_GRPC, c.GRPC_PORT, c.GRPC_PORT),
    )
    return [{"name": name, "port": port, "targetPort": target, "protocol": "TCP"}
            for name, port, target in table]


def build_head_service(cluster: ClusterSpec) -> dict[str, Any]:
    """The head Service (``<cluster>-head-svc`` unless ``headService`` names it).

    The user's ``headService`` is merged in: its labels, annotations and spec fields, and
    its ports whose name and number ours do not use; the selector, ember's ports and the
    ``type`` (``serviceType``, else the headService's) stay the operator's.
    """
    custom = copy.deepcopy(dict(cluster.head_service or {}))
    custom_meta = custom.get("metadata") or {}
    spec = dict(custom.get("spec") or {})
    ports = _service_ports()
    used = {p["name"] for p in ports} | {p["port"] for p in ports}
    ports += [p for p in spec.get("ports") or [] if p.get("name") not in used and p.get("port") not in used]
    spec.update({
        "selector": {c.LABEL_CLUSTER: cluster.name, c.LABEL_NODE_TYPE: c.NODE_TYPE_HEAD},
        "ports": ports,
    })
    spec["type"] = cluster.service_type
    annotations = {**(custom_meta.get("annotations") or {}), **(cluster.service_annotations or {})}
    meta: dict[str, Any] = {
        "name": cluster.service_name or c.head_service_name(cluster.name),
        "namespace": cluster.namespace,
        "labels": {**(custom_meta.get("labels") or {}), **pod_labels(cluster, cluster.head)},
        "ownerReferences": [owner_reference(cluster)],
    }
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def build_token_secret(cluster: ClusterSpec, token: str) -> dict[str, Any]:
    """The Secret ``<cluster>-token`` holding ``token`` under the key ``token``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": c.secret_name(cluster.name),
            "namespace": cluster.namespace,
            "labels": cluster_labels(cluster),
            "ownerReferences": [owner_reference(cluster)],
        },
        "data": {c.TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def build_event(
    involved: Mapping[str, Any], type_: str, reason: str, message: str, *, now: str, instance: str
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (a RayCluster or pod object), ready to POST."""
    meta = involved.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'ember')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", c.API_VERSION),
            "kind": involved.get("kind", c.KIND),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": c.MANAGER},
        "reportingComponent": c.MANAGER,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
