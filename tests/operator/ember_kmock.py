"""A Kubernetes API emulator for the operator tests, and helpers to drive it.

There is no real kube-apiserver on the machines these tests run on (no package
registry ships one), so the operator talks over real HTTP to ``kmock``'s
:class:`kmock.KubernetesEmulator`, an in-memory emulation of the API server by
kopf's author. :class:`EmberEmulator` fills the gaps of kmock 0.8 that a real API
server does not have and that the operator or kopf depend on:

- created objects get ``uid``, ``resourceVersion``, ``creationTimestamp``,
  ``generation``, the namespace from the URL, and a name from ``generateName``;
  pods start in phase ``Pending``; Services get a ``clusterIP``;
- create answers 201 (not 200); a failed JSON-patch ``test`` answers 422 (not 500);
- every write bumps a global ``resourceVersion`` counter (also deletions), lists
  report it, and watches honour ``?resourceVersion=``: they replay only newer
  objects and subscribe to the event bus *before* taking the snapshot, so kopf
  never sees stale copies;
- ``spec`` changes bump ``metadata.generation``;
- equality-based ``labelSelector`` on list and watch.

It can also refuse creations (``refuse_creation``), as a quota or admission webhook would,
and counts the creations per kind (``created``).

Still not emulated (so the tests do not rely on it): ownerReference garbage
collection (tests assert the references instead), schema validation and defaulting,
the kubelet (tests play it by patching pod status), strategic merge, PUT.
"""

import asyncio
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import rendering  # the request type of the handler API we override

__all__ = [
    "EmberEmulator", "declare_resources", "selector_matches", "eventually", "Cluster",
    "IMAGE", "template", "cluster_spec", "worker_group", "counts", "agent", "started",
]

RAYCLUSTERS = "ember.dev/v1alpha1/rayclusters"


def declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    """Declare the built-in kinds and the RayCluster custom resource."""
    emulator.resources.load_bundled()
    emulator.resources[RAYCLUSTERS] = kmock.ResourceInfo(
        kind="RayCluster", singular="raycluster", namespaced=True, subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    )


def selector_matches(labels: Mapping[str, str], selector: str | None) -> bool:
    """Evaluate an equality-based label selector (``a=b,c!=d,e,!f``)."""
    for term in filter(None, (part.strip() for part in (selector or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _rv(raw: Mapping[str, Any]) -> int:
    try:
        return int((raw.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@attrs.define(kw_only=True)
class EmberEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the gaps the operator relies on filled (see module doc)."""

    _revisions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    _revision: int = attrs.field(default=0, init=False)
    _ips: Any = attrs.field(factory=lambda: itertools.count(10), init=False)
    #: Fault injection: plural -> (HTTP status, message) with which creations are refused.
    refuse_creation: dict[str, tuple[int, str]] = attrs.field(factory=dict, init=False)
    #: plural -> how many objects of it were created (successfully), for "never more than asked"
    created: dict[str, int] = attrs.field(factory=dict, init=False)

    def _next_revision(self) -> str:
        self._revision = next(self._revisions)
        return str(self._revision)

    # --- writes ------------------------------------------------------------------------------
    def _prepare_create(self, request: rendering.Request) -> None:
        data = request.data
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if request.namespace:
            meta["namespace"] = request.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._next_revision()
        meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["generation"] = 1
        plural = request.resource.plural if request.resource else None
        if plural == "pods":
            data.setdefault("status", {}).setdefault("phase", "Pending")
        elif plural == "services" and not (data.get("spec") or {}).get("clusterIP"):
            data.setdefault("spec", {})["clusterIP"] = f"10.96.0.{next(self._ips)}"

    def _prepare_patch(self, request: rendering.Request) -> None:
        revision = self._next_revision()
        data = request.data
        key = (request.resource, request.namespace, request.name)
        current = self._objects[key] if key in self._objects and not self._objects[key].deleted else None
        generation = int(((current or {}).get("metadata") or {}).get("generation") or 0) if current else 0
        if isinstance(data, dict):
            touches_spec = request.subresource is None and "spec" in data
            meta = data.get("metadata")
            if meta is None:
                meta = data["metadata"] = {}
            meta["resourceVersion"] = revision
            if touches_spec:
                meta["generation"] = generation + 1
        elif isinstance(data, list):
            touches_spec = request.subresource is None and any(
                str(op.get("path", "")).startswith("/spec") for op in data)
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": revision})
            if touches_spec:
                data.append({"op": "add", "path": "/metadata/generation", "value": generation + 1})

    def _prepare_delete(self, request: rendering.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key in self._objects and not self._objects[key].deleted:
            # The DELETED event must carry a newer resourceVersion than anything seen before.
            self._objects[key].patch({"metadata": {"resourceVersion": self._next_revision()}})

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None:
            refusal = self.refuse_creation.get(request.resource.plural or "")
            if request.action == kmock.action.CREATE and refusal:
                raise kmock.KubernetesError(status=refusal[0], reason="Forbidden", message=refusal[1])
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                self._prepare_create(request)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._prepare_patch(request)
            elif request.action == kmock.action.DELETE and request.name is not None:
                self._prepare_delete(request)
        try:
            response = await super()._handle(request)
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict) as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        if request.action == kmock.action.CREATE and response.status == 200 and not response.prepared:
            response.set_status(201)
        if request.action == kmock.action.CREATE and request.resource is not None and response.status < 300:
            plural = request.resource.plural or ""
            self.created[plural] = self.created.get(plural, 0) + 1
        return response

    # --- reads -------------------------------------------------------------------------------
    def _matching(self, request: rendering.Request) -> list[dict[str, Any]]:
        selector = request.params.get("labelSelector")
        found = []
        for (resource, namespace, name), obj in self._objects.items():
            if resource != request.resource or obj.deleted:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            if request.name is not None and name != request.name:
                continue
            raw = obj.raw
            if selector_matches((raw.get("metadata") or {}).get("labels") or {}, selector):
                found.append(raw)
        return found

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if not any(resource == request.resource for resource in self._get_resources()):
            raise kmock.KubernetesResourceNotFoundError()
        async with self._lock:
            items = self._matching(request)
            revision = str(self._revision)
        return {"metadata": {"resourceVersion": revision}, "items": items}

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now: the stream may stay silent for long
        since = int(request.params.get("resourceVersion") or 0)
        selector = request.params.get("labelSelector")
        assert request.resource is not None
        bus = self._buses[request.resource]
        mark = await bus.mark()  # subscribe before the snapshot: nothing falls in between
        try:
            async with self._lock:
                snapshot = [raw for raw in self._matching(request) if _rv(raw) > since]
            sent = {(raw["metadata"].get("namespace"), raw["metadata"].get("name")): _rv(raw)
                    for raw in snapshot}
            for raw in snapshot:
                yield {"type": "ADDED", "object": raw}
            async for event in bus.stream(since=mark):
                raw = event.get("object") or {}
                meta = raw.get("metadata") or {}
                if request.namespace is not None and meta.get("namespace") != request.namespace:
                    continue
                if request.name is not None and meta.get("name") != request.name:
                    continue
                if not selector_matches(meta.get("labels") or {}, selector):
                    continue
                if _rv(raw) <= max(since, sent.get((meta.get("namespace"), meta.get("name")), 0)):
                    continue
                yield event
        finally:
            await bus.unmark(mark)


# --- helpers for the tests ------------------------------------------------------------------
async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``check`` (sync) until it returns without AssertionError; re-raise at the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(interval)


class Cluster:
    """One RayCluster in the emulator, driven over HTTP as kubectl and the kubelet would."""

    def __init__(self, emulator: EmberEmulator, namespace: str, name: str) -> None:
        self.emulator = emulator
        self.namespace = namespace
        self.name = name
        self.path = f"/apis/ember.dev/v1alpha1/namespaces/{namespace}/rayclusters/{name}"

    async def _call(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Content-Type": content_type} if content_type else {}
        async with self.emulator.request(method, path, json=body, headers=headers) as response:
            payload = await response.json(content_type=None)
            assert response.status < 300, f"{method} {path}: {response.status} {payload}"
            return payload

    async def create(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """``kubectl create`` the RayCluster."""
        body = {"apiVersion": "ember.dev/v1alpha1", "kind": "RayCluster",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": dict(spec)}
        return await self._call("POST", f"/apis/ember.dev/v1alpha1/namespaces/{self.namespace}/rayclusters",
                                body)

    async def patch(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """``kubectl patch --type merge`` the RayCluster."""
        return await self._call("PATCH", self.path, dict(patch), "application/merge-patch+json")

    async def patch_spec(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """``kubectl patch --type merge`` the RayCluster's spec."""
        return await self._call("PATCH", self.path, {"spec": dict(patch)}, "application/merge-patch+json")

    def object(self) -> dict[str, Any]:
        """The RayCluster as stored."""
        return self.emulator.objects[RAYCLUSTERS, self.namespace, self.name].raw

    def status(self) -> dict[str, Any]:
        """The RayCluster's status as stored."""
        return self.object().get("status") or {}

    def condition(self, kind: str) -> dict[str, Any]:
        """One status condition (AssertionError if absent)."""
        for condition in self.status().get("conditions") or []:
            if condition["type"] == kind:
                return condition
        raise AssertionError(f"no {kind} condition in {self.status()}")

    def objects(self, plural: str) -> list[dict[str, Any]]:
        """Live core/v1 objects of this cluster (by the ember.dev/cluster label)."""
        found = []
        for (resource, namespace, _), obj in self.emulator.objects.items():
            if resource.group == "" and resource.plural == plural and namespace == self.namespace \
                    and not obj.deleted:
                raw = obj.raw
                if (raw["metadata"].get("labels") or {}).get("ember.dev/cluster") == self.name:
                    found.append(raw)
        return found

    def pods(self, node_type: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
        """Live pods of the cluster, optionally of one node type or group, sorted by name."""
        pods = [p for p in self.objects("pods")
                if node_type in (None, p["metadata"]["labels"].get("ember.dev/node-type"))
                and group in (None, p["metadata"]["labels"].get("ember.dev/group"))]
        return sorted(pods, key=lambda p: p["metadata"]["name"])

    def pod_names(self, node_type: str | None = None, group: str | None = None) -> list[str]:
        """Names of :meth:`pods`."""
        return [p["metadata"]["name"] for p in self.pods(node_type, group)]

    def events(self) -> list[dict[str, Any]]:
        """Kubernetes Events posted about the RayCluster."""
        found = []
        for (resource, namespace, _), obj in self.emulator.objects.items():
            if resource.plural == "events" and namespace == self.namespace and not obj.deleted:
                raw = obj.raw
                if (raw.get("involvedObject") or {}).get("name") == self.name:
                    found.append(raw)
        return found

    async def delete_pod(self, name: str) -> None:
        """``kubectl delete pod``."""
        await self._call("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{name}")

    async def set_pod_status(self, name: str, *, phase: str, ready: bool) -> None:
        """Play the kubelet: report the pod's phase, IP and readiness."""
        status = {
            "phase": phase,
            "podIP": f"10.244.0.{abs(hash(name)) % 250 + 2}",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        }
        await self._call("PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{name}/status",
                         {"status": status}, "application/merge-patch+json")

    async def make_ready(self, names: list[str] | None = None) -> list[str]:
        """Mark these pods (default: every not-yet-ready pod) Running and Ready."""
        if names is None:
            names = [p["metadata"]["name"] for p in self.pods()
                     if not any(c.get("type") == "Ready" and c.get("status") == "True"
                                for c in (p.get("status") or {}).get("conditions") or [])]
        for name in names:
            await self.set_pod_status(name, phase="Running", ready=True)
        return names


# --- RayCluster specs for the tests -----------------------------------------------------------
IMAGE = "registry.local/ember:1"


def template(name: str, cpu: str = "1", image: str = IMAGE) -> dict[str, Any]:
    """A PodTemplateSpec with one container limited to ``cpu`` cores and 1Gi."""
    return {"spec": {"containers": [{
        "name": name, "image": image,
        "resources": {"limits": {"cpu": cpu, "memory": "1Gi"}},
    }]}}


def cluster_spec(workers: int = 2, **extra: Any) -> dict[str, Any]:
    """A RayCluster spec: a 2-CPU head and one worker group ``cpu`` of ``workers`` pods."""
    return {
        "headGroupSpec": {"template": template("ember-head", cpu="2"), "startParams": {"num-cpus": "0"}},
        "workerGroupSpecs": [worker_group(workers)],
        **extra,
    }


def worker_group(replicas: int, image: str = IMAGE, **extra: Any) -> dict[str, Any]:
    """The worker group ``cpu`` (0..10 replicas, 1 CPU each)."""
    return {"groupName": "cpu", "replicas": replicas, "minReplicas": 0, "maxReplicas": 10,
            "template": template("ember-worker", image=image), **extra}


def counts(cluster: Cluster, heads: int, workers: int) -> None:
    """Assert the number of live head and worker pods."""
    assert len(cluster.pod_names("head")) == heads, cluster.pod_names()
    assert len(cluster.pod_names("worker")) == workers, cluster.pod_names()


def agent(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The container running the ember agent."""
    return pod["spec"]["containers"][0]


async def started(kmock: EmberEmulator, workers: int = 2, name: str = "demo", **extra: Any) -> Cluster:
    """Create a RayCluster in ``default`` and wait for its head and worker pods."""
    cluster = Cluster(kmock, "default", name)
    await cluster.create(cluster_spec(workers, **extra))
    await eventually(lambda: counts(cluster, 1, workers))
    return cluster
