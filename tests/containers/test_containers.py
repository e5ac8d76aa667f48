"""Tier 4: ember's image, and the operator's pod specs run as Docker containers (issue 6).

There is no Kubernetes here (see notes/containers.md): the head Pod, two worker Pods, the head
Service and the token Secret come from ``ember_operator.builders`` for a RayCluster like
``examples/raycluster.yaml``; ``pods.docker_run_args`` runs each Pod's agent container with its
exact command, args, env, ports, limits and Secret mount, on a Docker network where the head
Service's name (and its ``<svc>.<ns>.svc`` forms, which Kubernetes DNS would resolve) is the head
container's alias. A driver in this process connects through the head's published gRPC port.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import ember
import pytest
import yaml
from ember_operator import builders
from ember_operator import constants as c
from ember_operator.spec import parse_cluster

from .pods import Secret, agent_container, docker_run_args, probe_url, write_volumes

pytestmark = pytest.mark.timeout(600)  # the first test may build the image from nothing

ROOT = Path(__file__).resolve().parents[2]
IMAGE_UID = 65532
HEARTBEAT_TIMEOUT_S = 3


def wait_until(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raycluster(image: str, *, fs_group: int | None = IMAGE_UID) -> dict[str, Any]:
    """``examples/raycluster.yaml`` with this image, a namespace and uid, a 3 s heartbeat timeout
    on the head (env in the head template) and, unless ``fs_group`` is None, a pod
    ``securityContext.fsGroup`` (see ``test_token_secret_readable_without_fs_group``)."""
    body = yaml.safe_load((ROOT / "examples" / "raycluster.yaml").read_text())
    body["metadata"].update(namespace="default", uid="0f0e0d0c-0000-4000-8000-000000000006")
    templates = [body["spec"]["headGroupSpec"]["template"]]
    templates += [g["template"] for g in body["spec"]["workerGroupSpecs"]]
    for template in templates:
        for container in template["spec"]["containers"]:
            container["image"] = image
        if fs_group is not None:
            template["spec"].setdefault("securityContext", {})["fsGroup"] = fs_group
    head = body["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head.setdefault("env", []).append(
        {"name": "EMBER_HEARTBEAT_TIMEOUT_S", "value": str(HEARTBEAT_TIMEOUT_S)})
    return body


def operator_objects(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator would create for ``body``: head pod, worker pods, Service, Secret."""
    cluster = parse_cluster(body)
    workers = [builders.build_worker_pod(cluster, group, builders.random_suffix())
               for group in cluster.workers for _ in range(group.replicas)]
    return {
        "cluster": cluster,
        "head": builders.build_head_pod(cluster, builders.random_suffix()),
        "workers": workers,
        "service": builders.build_head_service(cluster),
        "secret": builders.build_token_secret(cluster, builders.new_token()),
    }


def service_aliases(service: dict[str, Any]) -> list[str]:
    """The names Kubernetes DNS gives the Service (Docker has no ``svc`` search domains)."""
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
            f"{name}.{namespace}.svc.cluster.local"]


def http_ok_inside(docker, container: str, url: str) -> bool:
    """GET ``url`` from inside ``container`` (as a probe would reach the pod), True on 2xx."""
    code = ("import sys, urllib.request\n"
            "try:\n"
            f"    sys.exit(0 if urllib.request.urlopen({url!r}, timeout=2).status < 300 else 1)\n"
            "except Exception:\n"
            "    sys.exit(1)\n")
    return docker.ok("exec", container, "python3", "-c", code)


class RunningCluster:
    """The operator's objects for one RayCluster running as containers on a test network."""

    def __init__(self, docker, image: str, tmp: Path) -> None:
        self.docker = docker
        self.objects = operator_objects(raycluster(image))
        self.head = self.objects["head"]
        self.workers = self.objects["workers"]
        self.secret = Secret.from_object(self.objects["secret"])
        self.token = self.secret.data[c.TOKEN_KEY].decode()
        self.network = docker.network()
        self.grpc_port = free_port()
        self.tmp = tmp
        self.run_args: dict[str, list[str]] = {}

    @property
    def head_name(self) -> str:
        return self.head["metadata"]["name"]

    @property
    def worker_names(self) -> list[str]:
        return [w["metadata"]["name"] for w in self.workers]

    def start_pod(self, pod: dict[str, Any], container: str, **kw) -> None:
        dirs = write_volumes(pod, {self.secret.name: self.secret}, self.tmp)
        args = docker_run_args(pod, container, network=self.network, volume_dirs=dirs,
                               labels=self.docker.labels, **kw)
        self.run_args[pod["metadata"]["name"]] = args
        self.docker.run(args)

    def start(self) -> None:
        service = self.objects["service"]
        grpc = next(p for p in service["spec"]["ports"] if p["name"] == c.PORT_NAME_GRPC)
        head_ctr = agent_container(self.head, c.AGENT_CONTAINER["head"])
        target = grpc["targetPort"]  # a number: the operator never targets a port by name
        assert any(p["containerPort"] == target for p in head_ctr["ports"]), head_ctr["ports"]
        assert target == grpc["port"], "Service port and target port differ: the alias would not work"
        self.start_pod(self.head, c.AGENT_CONTAINER["head"], aliases=service_aliases(service),
                       publish={target: self.grpc_port})
        for pod in self.workers:
            self.start_pod(pod, c.AGENT_CONTAINER["worker"])

    def ready(self, name: str) -> bool:
        """The pod's readiness and liveness probes pass, hit at the pod's own address (as the
        kubelet does: not loopback, so the endpoint must listen on 0.0.0.0)."""
        pod = self.head if name == self.head_name else next(
            w for w in self.workers if w["metadata"]["name"] == name)
        ctr = agent_container(pod, c.AGENT_CONTAINER["head" if pod is self.head else "worker"])
        urls = {probe_url(ctr, probe, host=name) for probe in ("readinessProbe", "livenessProbe")}
        return all(http_ok_inside(self.docker, name, url) for url in urls)


@pytest.fixture
def cluster(docker, image):
    tmp = Path(tempfile.mkdtemp(prefix="ember-containers-"))
    running = RunningCluster(docker, image, tmp)
    try:
        yield running
    finally:
        if ember.is_initialized():
            ember.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ember.nodes() if n["Alive"]]


def node_host(node: dict[str, Any]) -> str:
    return node.get("NodeManagerHostname") or node.get("NodeName") or ""


# --- the image itself --------------------------------------------------------------------

def test_image_runs_as_non_root_with_both_entrypoints(docker, image):
    assert docker("run", "--rm", "--entrypoint", "id", image, "-u") == str(IMAGE_UID)
    assert "ember cluster command line" in docker("run", "--rm", image, "--help")
    out = docker("run", "--rm", "--entrypoint", "ember-operator", image, "--help")
    assert "usage: ember-operator" in out
    # the agent's sockets, sessions and object store need a writable TMPDIR and /dev/shm
    env = docker("run", "--rm", "--entrypoint", "env", image)
    assert "TMPDIR=/tmp" in env.splitlines()


def test_head_runs_with_read_only_root_filesystem(docker, image):
    """As the operator chart runs the image: uid 65532, read-only root, an emptyDir on /tmp."""
    name = f"ember-ro-head-{docker.run_id}"
    docker.run(["run", "--detach", "--name", name, "--hostname", name, *_labels(docker),
                "--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777", "--shm-size", "256m",
                "--user", f"{IMAGE_UID}:{IMAGE_UID}", image,
                "start", "--head", "--block", "--host", "0.0.0.0", "--metrics-port", "8080"])
    url = f"http://{name}:8080/healthz"
    assert wait_until(lambda: http_ok_inside(docker, name, url), 60, 0.5), docker.all_logs()
    assert docker("inspect", "-f", "{{.State.Status}}", name) == "running"
    # the operator's entrypoint starts under the same constraints (no API server: --help only)
    docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "ember-operator",
           image, "--help")


def _labels(docker) -> list[str]:
    return [arg for key, value in docker.labels.items() for arg in ("--label", f"{key}={value}")]


def test_token_secret_readable_without_fs_group(docker, image):
    """The pod exactly as the builders make it for examples/raycluster.yaml (no fsGroup)."""
    objects = operator_objects(raycluster(image, fs_group=None))
    pod = objects["workers"][0]
    secret = Secret.from_object(objects["secret"])
    tmp = Path(tempfile.mkdtemp(prefix="ember-containers-"))
    try:
        dirs = write_volumes(pod, {secret.name: secret}, tmp)
        args = docker_run_args(pod, c.AGENT_CONTAINER["worker"], network="none",
                               volume_dirs=dirs, labels=docker.labels)
        name = args[args.index("--name") + 1]
        image_at = args.index(image)
        # the pod's own settings, but read the token instead of starting the agent
        args = [*args[:image_at], "--entrypoint", "cat", image, c.TOKEN_FILE]
        args.remove("--detach")
        docker.containers.append(name)
        assert docker(*args, check=False) == secret.data[c.TOKEN_KEY].decode(), \
            docker.logs(name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the operator's pods as containers ---------------------------------------------------

def test_cluster_from_operator_pod_specs(cluster):
    """Head + 2 workers from the builders; the seed example's work spread over them; a worker
    killed mid-run (work completes on the others), then started again (it rejoins)."""
    docker = cluster.docker
    worker_addr = cluster.workers[0]["spec"]["containers"][0]["args"]
    assert f"{cluster.objects['service']['metadata']['name']}.default.svc:{c.GRPC_PORT}" in worker_addr
    cluster.start()
    names = [cluster.head_name, *cluster.worker_names]
    for name in names:
        assert wait_until(lambda n=name: cluster.ready(n), 60, 0.5), \
            f"{name} never passed its readinessProbe:\n{docker.all_logs()}"

    if ember.is_initialized():  # left over from another test module
        ember.shutdown()
    ember.init(f"127.0.0.1:{cluster.grpc_port}", token=cluster.token)
    assert wait_until(lambda: len(alive_nodes()) == 3, 30), (ember.nodes(), docker.all_logs())
    assert {node_host(n) for n in alive_nodes()} == set(names), ember.nodes()
    assert ember.cluster_resources()["CPU"] == pytest.approx(3.0)  # cpu limit "1" -> --num-cpus 1

    _seed_example_work(names)
    _object_from_worker_to_worker(cluster)
    victim = cluster.worker_names[0]
    _kill_worker_mid_run(docker, victim, names)
    _restart_worker(docker, cluster, victim, names)


def _seed_example_work(names: list[str]) -> None:
    reference_data = ["Fast", "and", "Simple", "Distributed", "Computing"]
    ref_data_object_ref = ember.put(reference_data)

    @ember.remote
    def get_ref_datum_task(id):
        import os
        import socket
        import time

        time.sleep(id / 10.0)
        ref_data = ember.get(ref_data_object_ref)  # a ref captured in the closure
        return (id, 2 * id, ref_data[id % len(ref_data)], socket.gethostname(), os.getpid())

    @ember.remote
    def get_ref_datum_task2(tuple):  # a ref passed as an argument arrives resolved
        return tuple[:3], (tuple[1], 2 * tuple[1], reference_data[tuple[1] % 5])

    expected = [(i, 2 * i, reference_data[i % 5]) for i in range(10)]
    started = time.monotonic()
    data = ember.get([get_ref_datum_task.remote(i) for i in range(10)], timeout=60)
    parallel = time.monotonic() - started
    assert [d[:3] for d in data] == expected
    hosts = {d[3] for d in data}
    assert len(hosts) > 1 and hosts <= set(names), f"tasks ran on {hosts}, nodes are {names}"
    assert len({(d[3], d[4]) for d in data}) > 1
    assert parallel < 4.5, f"10 tasks (4.5 s of sleep) took {parallel:.1f} s on 3 CPUs"

    refs = [get_ref_datum_task.remote(i) for i in range(10)]
    seen = []
    while refs:
        finished, refs = ember.wait(refs, timeout=10.0)
        assert finished, "ember.wait returned nothing within 10 s"
        seen += [d[:3] for d in ember.get(finished)]
    assert sorted(seen) == expected

    chained = ember.get([get_ref_datum_task2.remote(r)
                         for r in [get_ref_datum_task.remote(i) for i in [2, 4, 6]]], timeout=60)
    assert chained == [((i, 2 * i, reference_data[i % 5]), (2 * i, 4 * i, reference_data[2 * i % 5]))
                       for i in [2, 4, 6]]


def _object_from_worker_to_worker(cluster) -> None:
    """A 24 MiB object read on one worker container, then on the other, which fetches it from
    the first one's store over the containers' network (its peer port), not from the head."""
    import hashlib
    import os

    @ember.remote(num_cpus=1)
    class Blocker:  # holds a node's only CPU, so the next task goes to the next node
        def host(self):
            import socket

            return socket.gethostname()

    @ember.remote
    def read(x):
        import hashlib
        import socket

        from ember import _context

        store = _context.current_runtime()._node_store
        return socket.gethostname(), hashlib.sha256(x).hexdigest(), store and store.stats()

    data = os.urandom(24 << 20)  # (the image has no numpy) large bytes go to the store too
    ref = ember.put(data)
    blockers = [Blocker.remote()]
    assert ember.get(blockers[0].host.remote(), timeout=30) == cluster.head_name
    first, h1, s1 = ember.get(read.remote(ref), timeout=60)
    blockers.append(Blocker.remote())
    assert ember.get(blockers[1].host.remote(), timeout=30) == first
    second, h2, s2 = ember.get(read.remote(ref), timeout=60)
    expected = hashlib.sha256(data).hexdigest()
    assert {first, second} == set(cluster.worker_names) and h1 == h2 == expected
    assert (s1["misses"], s1["peer_fetches"]) == (1, 0), s1  # from the head
    assert (s2["misses"], s2["peer_fetches"]) == (1, 1), s2  # from the first worker's store
    for b in blockers:
        ember.kill(b)
    assert wait_until(lambda: ember.available_resources().get("CPU", 0.0) == pytest.approx(3.0), 30), \
        ember.available_resources()


def _kill_worker_mid_run(docker, victim: str, names: list[str]) -> None:
    @ember.remote(max_retries=3)
    def slow(i):
        import os
        import socket
        import time

        started = time.time()  # containers share the host's clock
        time.sleep(2.0)
        return i, socket.gethostname(), os.getpid(), started

    refs = [slow.remote(i) for i in range(12)]
    # all three nodes busy (1 CPU each), so the victim is running a task when it dies
    assert wait_until(lambda: ember.available_resources().get("CPU", 0.0) == 0.0, 30, 0.05), \
        ember.available_resources()
    victim_ids = {n["NodeID"] for n in alive_nodes() if node_host(n) == victim}
    assert len(victim_ids) == 1, ember.nodes()
    docker("kill", victim)
    killed_at, killed_wall = time.monotonic(), time.time()

    def victim_dead():
        return [n for n in ember.nodes() if n["NodeID"] in victim_ids and not n["Alive"]]

    dead = wait_until(victim_dead, 20, 0.1)
    assert dead, f"{victim} still alive in ember.nodes() after docker kill: {ember.nodes()}"
    declared = time.monotonic() - killed_at
    assert dead[0].get("DeathCause"), dead
    assert declared < HEARTBEAT_TIMEOUT_S + 5, f"node death declared after {declared:.1f} s"

    results = ember.get(refs, timeout=90)
    assert [r[0] for r in results] == list(range(12))
    assert {r[1] for r in results} <= set(names)
    # what the victim returned, it finished before it died; the rest ran again elsewhere
    late = [r for r in results if r[1] == victim and r[3] + 2.0 > killed_wall + 0.5]
    assert not late, f"results from {victim} that cannot have finished before the kill: {late}"
    assert len(alive_nodes()) == 2
    assert ember.cluster_resources()["CPU"] == pytest.approx(2.0)


def _restart_worker(docker, cluster: RunningCluster, victim: str, names: list[str]) -> None:
    old_ids = {n["NodeID"] for n in ember.nodes()}
    docker("start", victim)  # the same container: same spec, env, mounts and network

    def rejoined():
        return [n for n in alive_nodes() if node_host(n) == victim and n["NodeID"] not in old_ids]

    assert wait_until(rejoined, 60, 0.2), \
        f"{victim} did not rejoin: {ember.nodes()}\n{docker.logs(victim)}"
    assert len(alive_nodes()) == 3
    assert ember.cluster_resources()["CPU"] == pytest.approx(3.0)
    assert wait_until(lambda: cluster.ready(victim), 30, 0.5)

    @ember.remote
    def where(_):
        import socket
        import time

        time.sleep(0.5)
        return socket.gethostname()

    hosts = set(ember.get([where.remote(i) for i in range(12)], timeout=60))
    assert victim in hosts, f"no task ran on the restarted {victim}: {hosts}"
