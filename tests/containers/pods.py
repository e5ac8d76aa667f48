"""Run a Kubernetes Pod, as the operator's builders make it, as a Docker container.

Pure translation (``docker_run_args``) plus the two files it needs on the host (the token
Secret's volume). What is mapped, and how, mirrors what the kubelet would do:

- the agent container's ``command``/``args`` exactly (``--entrypoint command[0]``, then the
  rest of ``command`` and ``args`` after the image);
- ``env``: plain values as they are; the downward API resolved here: ``metadata.name`` is the
  pod (= container) name, ``metadata.namespace`` the namespace; ``status.podIP`` is left
  unset (not known before the container starts: the agent then advertises EMBER_NODE_NAME);
- the hostname is the pod name, as in Kubernetes;
- ``ports``: reachable on the Docker network; only those asked for are published to the host;
- ``resources.limits``: ``--cpus`` and ``--memory``;
- ``securityContext`` (pod and container): ``runAsUser``/``runAsGroup`` (``--user``),
  ``fsGroup`` (a supplementary group, and the group of Secret files), ``readOnlyRootFilesystem``;
- volumes: a ``secret`` volume is a host directory with one file per key, mode
  ``defaultMode``, owned by root and group ``fsGroup`` (root without one), mounted read-only;
  ``emptyDir`` is a tmpfs. Anything else raises ``Unsupported``: the caller says what.

Everything else in the pod (probes, labels, ownerReferences, ...) has no Docker counterpart;
probes are checked separately by the tests (``probe_url``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ember_operator.quantities import parse_quantity


class Unsupported(Exception):
    """Something in the pod spec this translation cannot run as Kubernetes would."""


@dataclass(frozen=True)
class Secret:
    """A Secret's name and decoded data, as the builders make it."""

    name: str
    data: Mapping[str, bytes]

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Secret:
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return cls(obj["metadata"]["name"], data)


def agent_container(pod: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The container named ``name`` (the agent), else the pod's first container."""
    containers = pod["spec"]["containers"]
    return next((c for c in containers if c.get("name") == name), containers[0])


def _security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(pod["spec"].get("securityContext") or {})
    merged.update(container.get("securityContext") or {})
    return merged


def resolve_env(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment with the downward API resolved (see the module doc)."""
    meta = pod["metadata"]
    fields = {"metadata.name": meta["name"], "metadata.namespace": meta.get("namespace", "default")}
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = (item.get("valueFrom") or {}).get("fieldRef")
        if ref is None:
            raise Unsupported(f"env {item['name']}: only values and fieldRefs are mapped: {item}")
        path = ref["fieldPath"]
        if path in fields:
            env[item["name"]] = fields[path]
        elif path != "status.podIP":
            raise Unsupported(f"env {item['name']}: fieldRef {path} is not mapped")
    return env


def write_volumes(pod: Mapping[str, Any], secrets: Mapping[str, Secret], root: Path) -> dict[str, Path]:
    """Materialize the pod's Secret volumes under ``root`` as the kubelet would; ``{volume: dir}``."""
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    out: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        source = volume.get("secret")
        if source is None:
            continue
        secret = secrets.get(source["secretName"])
        if secret is None:
            raise Unsupported(f"volume {volume['name']}: no Secret {source['secretName']} given")
        directory = root / f"{pod['metadata']['name']}-{volume['name']}"
        directory.mkdir(parents=True)
        mode = source.get("defaultMode", 0o644)
        items = source.get("items") or [{"key": k, "path": k} for k in secret.data]
        for item in items:
            path = directory / item["path"]
            path.write_bytes(secret.data[item["key"]])
            os.chown(path, 0, fs_group if fs_group is not None else 0)
            path.chmod(item.get("mode", mode))
        directory.chmod(0o755)
        out[volume["name"]] = directory
    return out


def _cpus(value: Decimal) -> str:
    return format(value.normalize(), "f")


def docker_run_args(
    pod: Mapping[str, Any],
    container_name: str,
    *,
    network: str,
    aliases: Sequence[str] = (),
    volume_dirs: Mapping[str, Path],
    publish: Mapping[int, int] | None = None,
    shm_size: str = "512m",
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """``docker run`` arguments (after ``docker``) that run the pod's agent container detached.

    ``publish`` maps container ports to 127.0.0.1 host ports.
    """
    name = pod["metadata"]["name"]
    container = agent_container(pod, container_name)
    spec = pod["spec"]
    args = ["run", "--detach", "--name", name, "--hostname", name, "--network", network,
            "--shm-size", shm_size]
    for alias in aliases:
        args += ["--network-alias", alias]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    for key, value in resolve_env(pod, container).items():
        args += ["--env", f"{key}={value}"]
    for port, host_port in (publish or {}).items():
        declared = {p["containerPort"] for p in container.get("ports") or []}
        if port not in declared:
            raise Unsupported(f"port {port} is not declared by container {container['name']}")
        args += ["--publish", f"127.0.0.1:{host_port}:{port}"]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "cpu" in limits:
        args += ["--cpus", _cpus(parse_quantity(limits["cpu"]))]
    if "memory" in limits:
        args += ["--memory", str(int(parse_quantity(limits["memory"])))]
    sec = _security(pod, container)
    if "runAsUser" in sec or "runAsGroup" in sec:
        user = str(sec.get("runAsUser", ""))
        args += ["--user", f"{user}:{sec['runAsGroup']}" if "runAsGroup" in sec else user]
    pod_sec = spec.get("securityContext") or {}
    if "fsGroup" in pod_sec:
        args += ["--group-add", str(pod_sec["fsGroup"])]
    for group in pod_sec.get("supplementalGroups") or []:
        args += ["--group-add", str(group)]
    if sec.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise Unsupported(f"volumeMount {mount['name']} has no volume")
        if "secret" in volume:
            # Secret volumes are always read-only in Kubernetes, whatever readOnly says
            args += ["--volume", f"{volume_dirs[mount['name']]}:{mount['mountPath']}:ro"]
        elif "emptyDir" in volume:
            args += ["--tmpfs", f"{mount['mountPath']}:rw,exec,mode=1777"]
        else:
            raise Unsupported(f"volume {mount['name']}: only secret and emptyDir volumes are mapped")
    command = list(container.get("command") or [])
    if command:
        args += ["--entrypoint", command[0]]
    args.append(container["image"])
    return args + command[1:] + list(container.get("args") or [])


def probe_url(container: Mapping[str, Any], probe: str, host: str = "127.0.0.1") -> str:
    """The URL an ``httpGet`` probe (``readinessProbe``/``livenessProbe``) of the container hits."""
    get = container[probe]["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
    return f"http://{host}:{port}{get.get('path', '/')}"
