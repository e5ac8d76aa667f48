"""Benchmark workloads, written once and run against both ember and Ray.

Every workload is a plain function ``fn(rt, ctx)``: ``rt`` is the module under
test (``ray`` or ``ember``, used exactly as Ray code uses ``ray``) and ``ctx`` a
:class:`Ctx` with the run's settings.  It returns a *figure dict* mapping metric
keys (declared in :data:`METRICS`) to numbers; an optional ``"_notes"`` entry
holds a list of short strings shown under the table.

Two modes:

* ``cluster``: the child process has already called ``rt.init`` and shares one
  cluster between all cluster workloads of that system (and shuts it down).
* ``fresh``: the workload runs alone in a new process and does its own
  ``init``/``shutdown`` (cold-start timing, memory, or a later workload that
  starts a multi-node cluster or a remote driver).

Adding a workload (e.g. remote-driver put/get bandwidth, cross-node throughput,
metrics overhead): declare its metrics in ``METRICS`` with their targets, write
the function, and append a :class:`Workload` to ``WORKLOADS``.  Set
``systems=("ember",)`` for one that has no Ray counterpart.  Remote functions
and actor classes are defined inside the workload functions so that both
runtimes pickle them by value (workers need not import this module).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MiB = 1 << 20


# --------------------------------------------------------------------------
# Metrics and targets (pure data; evaluated by report.py)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """``kind="rel"``: ember compared with ``factor`` x Ray's figure from the same
    run (the issue's reference figure when Ray did not run); ``kind="abs"``:
    ember compared with ``value``."""

    kind: str  # "rel" | "abs"
    op: str  # "<=" | ">=" | "<" | ">"
    value: float
    text: str


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str  # "us" | "ms" | "s" | "/s" | "GB/s" | "MiB" | "x"
    better: str  # "lower" | "higher"
    target: Target | None = None
    ray_ref: float | None = None  # Ray 2.60 on a 2-core machine, from the issues


def _rel(op: str, factor: float, text: str) -> Target:
    return Target("rel", op, factor, text)


def _abs(op: str, value: float, text: str) -> Target:
    return Target("abs", op, value, text)


METRICS: list[Metric] = [
    # issue 2: core
    Metric("task_rtt_us", "noop task round trip (median)", "us", "lower",
           _rel("<=", 0.25, "<= 1/4 Ray"), 1360),
    Metric("tasks_per_s", "10k noop tasks, submit then get", "/s", "higher",
           _rel(">=", 5, ">= 5x Ray"), 2100),
    Metric("chain_s", "1k-task dependency chain", "s", "lower",
           _rel("<=", 0.25, "<= 1/4 Ray"), 1.3),
    # The issue asks for the best of several puts, but Ray's puts are bimodal here
    # (~10 ms when plasma reuses warm pages, 60-370 ms otherwise), so its best is
    # memcpy speed and its median is what matches the 1.7 GB/s: the
    # target is judged on the median; the best is shown alongside.
    Metric("put_100mib_gbps", "put 100 MiB numpy (best)", "GB/s", "higher"),
    Metric("put_100mib_median_gbps", "put 100 MiB numpy (median)", "GB/s", "higher",
           _rel(">=", 3, ">= 3x Ray"), 1.7),
    Metric("get_100mib_us", "get 100 MiB numpy (median)", "us", "lower"),
    Metric("get_10mib_us", "get 10 MiB numpy (median)", "us", "lower"),
    Metric("get_ratio_100_10", "get time 100 MiB / 10 MiB", "x", "lower",
           _abs("<=", 2.0, "<= 2 (zero-copy)")),
    Metric("small_puts_per_s", "10k small puts", "/s", "higher",
           _rel(">=", 10, ">= 10x Ray"), 2100),
    Metric("small_gets_per_s", "10k small gets", "/s", "higher",
           _rel(">=", 3, ">= 3x Ray"), 12800),
    Metric("wait_1000_ms", "wait(1k finished refs, num_returns=1k)", "ms", "lower"),
    Metric("wait_loop_1000_s", "1k tasks, wait(num_returns=1) loop", "s", "lower"),
    Metric("init_s", "init() cold, fresh process", "s", "lower",
           _abs("<", 0.5, "< 0.5 s"), 2.1),
    Metric("shutdown_s", "shutdown()", "s", "lower"),
    Metric("idle_pss_mib", "idle cluster PSS after init", "MiB", "lower",
           _abs("<", 150, "< 150 MiB"), 420),
    # issue 3: actors
    Metric("actor_rtt_us", "actor method round trip (median)", "us", "lower",
           _rel("<=", 1 / 3, "<= 1/3 Ray"), 713),
    Metric("actor_calls_per_s", "10k async actor calls", "/s", "higher",
           _rel(">=", 5, ">= 5x Ray"), 4400),
    Metric("actor_create_ms", "actor creation + first call (median)", "ms", "lower",
           _rel("<=", 1, "<= Ray"), 18),
    # issue 4: clusters (ember only, except the remote driver: Ray's through its client server)
    Metric("remote_put_gbps", "remote driver put 100 MiB, loopback gRPC (median)", "GB/s", "higher",
           _abs(">=", 1.0, ">= 1 GB/s"), 0.09),
    Metric("remote_get_gbps", "remote driver get 100 MiB, loopback gRPC (median)", "GB/s", "higher",
           _abs(">=", 1.0, ">= 1 GB/s")),
    Metric("multinode_tasks_per_s", "10k noop tasks, head + 1 worker node", "/s", "higher"),
    Metric("node_fetch_gbps", "task on a worker node, 100 MiB argument, first read (fetch)", "GB/s",
           "higher"),
    Metric("node_cached_read_ms", "the same on the node again (its store's copy)", "ms", "lower"),
    Metric("node_peer_fetch_gbps", "the same on a second worker node (from the first's store)", "GB/s",
           "higher"),
    # issue 5: metrics
    Metric("metrics_overhead_pct", "task throughput cost of --metrics-port", "%", "lower",
           _abs("<", 5, "< 5%")),
]
METRIC_BY_KEY = {m.key: m for m in METRICS}


# --------------------------------------------------------------------------
# Run context
# --------------------------------------------------------------------------


@dataclass
class Ctx:
    system: str  # "ember" | "ray"
    quick: bool = False
    num_cpus: int = 2
    import_s: float | None = None  # time the child took to import rt

    def n(self, full: int, quick: int) -> int:
        """A repetition count: ``full`` normally, ``quick`` with --quick."""
        return quick if self.quick else full

    def init_kwargs(self) -> dict:
        # no dashboard on either side (bench/dashboard_cost.py measures ember's)
        kwargs: dict = {"num_cpus": self.num_cpus, "include_dashboard": False}
        if self.system == "ray":
            kwargs.update(logging_level="WARNING")
        return kwargs


class NotImplementedYet(Exception):
    """The runtime lacks a feature this workload needs (shown as n/a)."""


def _median_us(samples_ns: list[int]) -> float:
    return statistics.median(samples_ns) / 1e3


def _now() -> int:
    return time.perf_counter_ns()


# --------------------------------------------------------------------------
# Core workloads (issue 2)
# --------------------------------------------------------------------------


def task_roundtrip(rt, ctx: Ctx) -> dict:
    @rt.remote
    def noop():
        return None

    for _ in range(ctx.n(200, 50)):
        rt.get(noop.remote())
    samples = []
    for _ in range(ctx.n(2000, 300)):
        t0 = _now()
        rt.get(noop.remote())
        samples.append(_now() - t0)
    return {"task_rtt_us": _median_us(samples),
            "_notes": [f"task rtt p10/p90 {_pct(samples, 10):.0f}/{_pct(samples, 90):.0f} us"]}


def task_throughput(rt, ctx: Ctx) -> dict:
    @rt.remote
    def noop():
        return None

    rt.get([noop.remote() for _ in range(200)])
    n = ctx.n(10_000, 2_000)
    t0 = _now()
    refs = [noop.remote() for _ in range(n)]
    submit_ns = _now() - t0
    out = rt.get(refs)
    total_s = (_now() - t0) / 1e9
    assert len(out) == n and out[-1] is None, "wrong results"
    return {"tasks_per_s": n / total_s,
            "_notes": [f"{n} tasks: submit {submit_ns / 1e6:.0f} ms, total {total_s:.2f} s"]}


def task_chain(rt, ctx: Ctx) -> dict:
    @rt.remote
    def inc(x):
        return x + 1

    rt.get(inc.remote(rt.get(inc.remote(0))))
    n = 1000
    best = None
    for _ in range(ctx.n(2, 1)):
        t0 = _now()
        ref = inc.remote(0)
        for _ in range(n - 1):
            ref = inc.remote(ref)
        result = rt.get(ref)
        dt = (_now() - t0) / 1e9
        assert result == n, f"chain returned {result!r}, expected {n}"
        best = dt if best is None else min(best, dt)
        del ref
    return {"chain_s": best}


def _array(nbytes: int):
    import numpy as np

    return np.ones(nbytes, dtype=np.uint8)  # pages touched: no page faults in the timing


def put_bandwidth(rt, ctx: Ctx) -> dict:
    arr = _array(100 * MiB)
    ref = rt.put(arr)  # warm-up
    del ref
    gc.collect()
    times = []
    for _ in range(ctx.n(8, 4)):
        t0 = _now()
        ref = rt.put(arr)
        times.append(_now() - t0)
        del ref
        gc.collect()
    best_s = min(times) / 1e9
    med_s = statistics.median(times) / 1e9
    return {"put_100mib_gbps": arr.nbytes / best_s / 1e9,
            "put_100mib_median_gbps": arr.nbytes / med_s / 1e9,
            "_notes": ["put 100 MiB times (ms): "
                       + ", ".join(f"{t / 1e6:.1f}" for t in times) + " (GB/s = 1e9 B/s)"]}


def _get_median_us(rt, nbytes: int, reps: int) -> float:
    arr = _array(nbytes)
    ref = rt.put(arr)
    del arr
    gc.collect()
    first = rt.get(ref)
    assert first.nbytes == nbytes and first[-1] == 1, "wrong array returned"
    del first
    samples = []
    for _ in range(reps):
        t0 = _now()
        x = rt.get(ref)
        samples.append(_now() - t0)
        del x
    del ref
    gc.collect()
    return _median_us(samples)


def get_large(rt, ctx: Ctx) -> dict:
    reps = ctx.n(30, 10)
    t10 = _get_median_us(rt, 10 * MiB, reps)
    t100 = _get_median_us(rt, 100 * MiB, reps)
    return {"get_10mib_us": t10, "get_100mib_us": t100, "get_ratio_100_10": t100 / t10}


def small_puts_gets(rt, ctx: Ctx) -> dict:
    n = ctx.n(10_000, 2_000)
    for i in range(100):
        rt.get(rt.put(i))
    t0 = _now()
    refs = [rt.put(i) for i in range(n)]
    put_s = (_now() - t0) / 1e9
    t0 = _now()
    vals = [rt.get(r) for r in refs]
    get_s = (_now() - t0) / 1e9
    assert vals[-1] == n - 1, "wrong value from get"
    return {"small_puts_per_s": n / put_s, "small_gets_per_s": n / get_s}


def wait_many(rt, ctx: Ctx) -> dict:
    @rt.remote
    def noop():
        return None

    n = 1000
    refs = [noop.remote() for _ in range(n)]
    rt.get(refs)
    samples = []
    for _ in range(ctx.n(7, 3)):
        t0 = _now()
        ready, rest = rt.wait(refs, num_returns=n)
        samples.append(_now() - t0)
        assert len(ready) == n and not rest, "wait returned too few refs"
    # completion-order loop over fresh tasks, submission included
    t0 = _now()
    pending = [noop.remote() for _ in range(n)]
    seen = 0
    while pending:
        ready, pending = rt.wait(pending, num_returns=1)
        seen += len(ready)
    loop_s = (_now() - t0) / 1e9
    assert seen == n
    return {"wait_1000_ms": statistics.median(samples) / 1e6, "wait_loop_1000_s": loop_s}


# --------------------------------------------------------------------------
# Fresh-process workloads: init cold time, idle memory, shutdown
# --------------------------------------------------------------------------


def _cluster_procs():
    import psutil

    return psutil.Process().children(recursive=True)


def _settled_procs(min_s: float, max_s: float):
    """The driver's descendants once their set and total RSS stop changing."""
    import psutil

    deadline = time.monotonic() + max_s
    time.sleep(min_s)
    last = None
    while True:
        procs = _cluster_procs()
        sig = []
        for p in procs:
            try:
                sig.append((p.pid, p.memory_info().rss >> 22))  # 4 MiB granularity
            except psutil.Error:
                pass
        sig.sort()
        if sig == last or time.monotonic() > deadline:
            return procs
        last = sig
        time.sleep(0.5)


def _pss_breakdown(procs) -> tuple[float, list[str]]:
    import psutil

    by_name: dict[str, list[float]] = {}
    rss = uss = 0.0
    for p in procs:
        try:
            mem = p.memory_full_info()
            name = p.name()
        except psutil.Error:
            continue
        by_name.setdefault(name, []).append(mem.pss / MiB)
        rss += mem.rss / MiB
        uss += mem.uss / MiB
    total = sum(sum(v) for v in by_name.values())
    parts = [f"{name} {len(v)}x{sum(v) / len(v):.0f}" if len(v) > 1 else f"{name} {v[0]:.0f}"
             for name, v in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))]
    parts.append(f"[RSS {rss:.0f}, USS {uss:.0f} MiB]")
    return total, parts


def init_memory_shutdown(rt, ctx: Ctx) -> dict:
    import psutil

    t0 = _now()
    rt.init(**ctx.init_kwargs())
    init_s = (_now() - t0) / 1e9
    notes = []
    if ctx.import_s is not None:
        notes.append(f"import {ctx.system}: {ctx.import_s:.2f} s (not in init time)")
    try:
        procs = _settled_procs(*((1.0, 6.0) if ctx.quick else (2.0, 10.0)))
        total, parts = _pss_breakdown(procs)
        driver_pss = psutil.Process().memory_full_info().pss / MiB
        notes.append(f"idle PSS {total:.0f} MiB in {len(procs)} procs: " + ", ".join(parts)
                     + f" (driver itself {driver_pss:.0f} MiB, not counted)")
    finally:
        t0 = _now()
        rt.shutdown()
        shutdown_s = (_now() - t0) / 1e9
    return {"init_s": init_s, "idle_pss_mib": total, "shutdown_s": shutdown_s, "_notes": notes}


# --------------------------------------------------------------------------
# Actor workloads (issue 3)
# --------------------------------------------------------------------------


def _actor_class(rt):
    class Pinger:
        def __init__(self):
            self.n = 0

        def ping(self):
            self.n += 1
            return self.n

    try:
        return rt.remote(Pinger)
    except Exception as e:  # noqa: BLE001 - any failure here means no actor support
        raise NotImplementedYet(f"@remote on a class failed: {type(e).__name__}: {e}") from e


def _new_actor(rt, cls):
    try:
        return cls.remote()
    except NotImplementedError:
        raise
    except (AttributeError, TypeError) as e:
        raise NotImplementedYet(f"actor creation failed: {type(e).__name__}: {e}") from e


def _kill(rt, actor) -> None:
    kill = getattr(rt, "kill", None)
    if kill is not None:
        kill(actor)


def actor_roundtrip(rt, ctx: Ctx) -> dict:
    a = _new_actor(rt, _actor_class(rt))
    for _ in range(ctx.n(200, 50)):
        rt.get(a.ping.remote())
    samples = []
    for _ in range(ctx.n(2000, 300)):
        t0 = _now()
        rt.get(a.ping.remote())
        samples.append(_now() - t0)
    _kill(rt, a)
    return {"actor_rtt_us": _median_us(samples),
            "_notes": [f"actor rtt p10/p90 {_pct(samples, 10):.0f}/{_pct(samples, 90):.0f} us"]}


def actor_throughput(rt, ctx: Ctx) -> dict:
    a = _new_actor(rt, _actor_class(rt))
    rt.get([a.ping.remote() for _ in range(100)])
    n = ctx.n(10_000, 2_000)
    t0 = _now()
    refs = [a.ping.remote() for _ in range(n)]
    out = rt.get(refs)
    total_s = (_now() - t0) / 1e9
    assert out[-1] == n + 100, f"actor calls out of order or lost: last={out[-1]!r}"
    _kill(rt, a)
    return {"actor_calls_per_s": n / total_s}


def actor_creation(rt, ctx: Ctx) -> dict:
    cls = _actor_class(rt)
    samples = []
    for _ in range(ctx.n(10, 4)):
        t0 = _now()
        a = _new_actor(rt, cls)
        rt.get(a.ping.remote())
        samples.append(_now() - t0)
        _kill(rt, a)
        del a
        time.sleep(0.2)  # let the runtime reap the worker / refill its pool
    return {"actor_create_ms": statistics.median(samples) / 1e6,
            "_notes": [f"actor create+call: first {samples[0] / 1e6:.1f} ms, "
                       f"all {', '.join(f'{s / 1e6:.0f}' for s in samples)} ms"]}


def _pct(samples: list[int], p: int) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, len(s) * p // 100)] / 1e3


# --------------------------------------------------------------------------
# Clusters and metrics (each starts and stops its own agents; ember only, except the remote
# driver, which Ray runs through its client server)
# --------------------------------------------------------------------------


class _Agents:
    """Node agents started for one workload, stopped (by PID) when it ends."""

    def __init__(self) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="ember-bench-")
        self.token_file = f"{self.dir}/token"
        with open(self.token_file, "w") as f:
            f.write("bench-token")
        self.procs: list = []

    def start(self, *args: str) -> dict:
        import json
        import os
        import subprocess
        import sys

        rfd, wfd = os.pipe()
        proc = subprocess.Popen([sys.executable, "-m", *args, "--ready-fd", str(wfd)], pass_fds=(wfd,),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(wfd)
        self.procs.append(proc)
        with os.fdopen(rfd) as f:
            line = f.readline()
        if not line:
            raise RuntimeError(f"agent {args[0]} did not start")
        return json.loads(line)

    def head(self, num_cpus: int) -> str:
        import os
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.makedirs(f"{self.dir}/head", exist_ok=True)
        self.start("ember_node", "--session-dir", f"{self.dir}/head", "--num-cpus", str(num_cpus),
                   "--port", str(port), "--token-file", self.token_file)
        return f"127.0.0.1:{port}"

    def worker_node(self, address: str, num_cpus: int, resources: str | None = None) -> None:
        self.start("ember_node.worker_node", "--address", address, "--token-file", self.token_file,
                   "--session-dir", f"{self.dir}/node{len(self.procs)}", "--num-cpus", str(num_cpus),
                   *(("--resources", resources) if resources else ()))

    def stop(self) -> None:
        import shutil
        import subprocess

        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _ray_client_head(num_cpus: int):
    """``ray start --head --block`` with its client server on loopback; (process, ray:// address).
    The process is ours: SIGTERM to it stops everything it started."""
    import os
    import socket
    import subprocess
    import sys
    import time as _time

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    gcs, client = free_port(), free_port()
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    # Ray 2.60's client server wants a token (as ember's port does): the runner sets
    # RAY_AUTH_MODE=token and RAY_AUTH_TOKEN for this child (Workload.ray_env), which the
    # head inherits and the client reads when ray is imported
    proc = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(gcs), "--ray-client-server-port", str(client),
                             "--num-cpus", str(num_cpus), "--include-dashboard=false",
                             "--dashboard-agent-listen-port", str(free_port()),
                             "--runtime-env-agent-port", str(free_port())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = _time.monotonic() + 60
    while _time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", client), timeout=1).close()
            return proc, f"ray://127.0.0.1:{client}"
        except OSError:
            _time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("Ray's client server did not come up within 60 s")


def remote_driver(rt, ctx: Ctx) -> dict:
    """Put and get 100 MiB through one port: ember's gRPC endpoint, or Ray's client server
    (``ray://``), each with a head of its own."""
    agents, ray_head = _Agents(), None
    try:
        if ctx.system == "ray":
            ray_head, address = _ray_client_head(ctx.num_cpus)
            rt.init(address, logging_level="WARNING")
        else:
            rt.init(agents.head(ctx.num_cpus), token="bench-token")

        @rt.remote
        def make(n):
            import numpy as np

            return np.ones(n, dtype=np.uint8)

        data = _array(100 * MiB)
        puts, gets = [], []
        for _ in range(ctx.n(5, 2) if ctx.system == "ember" else ctx.n(3, 1)):  # Ray's: ~1 s each
            t = _now()
            ref = rt.put(data)
            puts.append(_now() - t)
            del ref
            result = make.remote(100 * MiB)
            rt.wait([result])
            t = _now()
            value = rt.get(result)
            gets.append(_now() - t)
            del value, result
        rt.shutdown()
        return {"remote_put_gbps": 100 * MiB / statistics.median(puts),
                "remote_get_gbps": 100 * MiB / statistics.median(gets)}
    finally:
        agents.stop()
        if ray_head is not None:
            ray_head.terminate()
            try:
                ray_head.wait(60)
            except Exception:  # noqa: BLE001 - the runner kills what is left
                ray_head.kill()


def multinode_tasks(rt, ctx: Ctx) -> dict:
    import time as _time

    agents = _Agents()
    try:
        address = agents.head(1)
        agents.worker_node(address, 2)
        rt.init(address, token="bench-token")
        deadline = _time.monotonic() + 30
        while sum(1 for n in rt.nodes() if n["Alive"]) < 2 and _time.monotonic() < deadline:
            _time.sleep(0.1)

        @rt.remote
        def noop(i):
            return i

        rt.get([noop.remote(i) for i in range(500)])
        n = ctx.n(10_000, 2_000)
        t = _now()
        rt.get([noop.remote(i) for i in range(n)])
        rate = n / ((_now() - t) / 1e9)
        rt.shutdown()
        return {"multinode_tasks_per_s": rate}
    finally:
        agents.stop()


def multinode_objects(rt, ctx: Ctx) -> dict:
    """A worker node reads a 100 MiB object: fetched from the head the first time, then
    mapped from its own store (the driver is remote, so the object is in the head's store);
    then a second worker node reads it, from the first one's store."""
    import time as _time

    agents = _Agents()
    try:
        address = agents.head(1)
        agents.worker_node(address, 1, '{"far": 1}')
        agents.worker_node(address, 1, '{"other": 1}')
        rt.init(address, token="bench-token")
        deadline = _time.monotonic() + 30
        while sum(1 for n in rt.nodes() if n["Alive"]) < 3 and _time.monotonic() < deadline:
            _time.sleep(0.1)

        @rt.remote(resources={"far": 1})
        def first_byte(x):
            return int(x[0])

        on_other = first_byte.options(resources={"other": 1})
        rt.get(first_byte.remote(_array(8 * MiB)))  # warm workers on the nodes
        rt.get(on_other.remote(_array(8 * MiB)))
        fetches, cached, peer = [], [], []
        for _ in range(ctx.n(5, 2)):
            ref = rt.put(_array(100 * MiB))
            t = _now()
            rt.get(first_byte.remote(ref))
            fetches.append(_now() - t)
            t = _now()
            rt.get(first_byte.remote(ref))
            cached.append(_now() - t)
            t = _now()
            rt.get(on_other.remote(ref))
            peer.append(_now() - t)
            del ref
        rt.shutdown()
        return {"node_fetch_gbps": 100 * MiB / statistics.median(fetches),
                "node_cached_read_ms": statistics.median(cached) / 1e6,
                "node_peer_fetch_gbps": 100 * MiB / statistics.median(peer)}
    finally:
        agents.stop()


def metrics_overhead(rt, ctx: Ctx) -> dict:
    import socket

    def rate(metrics: bool) -> float:
        kwargs = ctx.init_kwargs()
        if metrics:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                kwargs["metrics_port"] = s.getsockname()[1]
        rt.init(**kwargs)

        @rt.remote
        def noop(i):
            return i

        rt.get([noop.remote(i) for i in range(1000)])
        best = 0.0
        for _ in range(ctx.n(3, 1)):
            n = ctx.n(10_000, 3_000)
            t = _now()
            rt.get([noop.remote(i) for i in range(n)])
            best = max(best, n / ((_now() - t) / 1e9))
        rt.shutdown()
        return best

    off, on = [], []
    for _ in range(ctx.n(2, 1)):  # interleaved, best of each, to damp drift on a busy machine
        off.append(rate(False))
        on.append(rate(True))
    overhead = (1 - max(on) / max(off)) * 100
    return {"metrics_overhead_pct": max(overhead, 0.0),
            "_notes": [f"tasks/s without metrics {max(off):,.0f}, with {max(on):,.0f}"]}


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable
    metrics: tuple[str, ...]
    group: str  # heading in the table
    mode: str = "cluster"  # "cluster" | "fresh"
    systems: tuple[str, ...] = ("ember", "ray")
    timeout_s: float = 60.0  # per workload, in the normal (non-quick) run
    tags: frozenset = field(default_factory=frozenset)
    ray_env: tuple[tuple[str, str], ...] = ()  # environment of Ray's child ("fresh" mode only)


WORKLOADS: list[Workload] = [
    Workload("init", init_memory_shutdown, ("init_s", "idle_pss_mib", "shutdown_s"),
             "core", mode="fresh", timeout_s=60),
    Workload("task_rtt", task_roundtrip, ("task_rtt_us",), "core"),
    Workload("tasks", task_throughput, ("tasks_per_s",), "core"),
    Workload("chain", task_chain, ("chain_s",), "core"),
    Workload("put", put_bandwidth, ("put_100mib_gbps", "put_100mib_median_gbps"), "core"),
    Workload("get", get_large, ("get_100mib_us", "get_10mib_us", "get_ratio_100_10"), "core"),
    Workload("small_objects", small_puts_gets, ("small_puts_per_s", "small_gets_per_s"), "core"),
    Workload("wait", wait_many, ("wait_1000_ms", "wait_loop_1000_s"), "core"),
    Workload("actor_rtt", actor_roundtrip, ("actor_rtt_us",), "actors", tags=frozenset({"actor"})),
    Workload("actor_calls", actor_throughput, ("actor_calls_per_s",), "actors",
             tags=frozenset({"actor"})),
    Workload("actor_create", actor_creation, ("actor_create_ms",), "actors",
             tags=frozenset({"actor"})),
    Workload("remote", remote_driver, ("remote_put_gbps", "remote_get_gbps"), "clusters",
             mode="fresh", timeout_s=180, ray_env=(("RAY_AUTH_MODE", "token"),)),
    Workload("multinode", multinode_tasks, ("multinode_tasks_per_s",), "clusters",
             mode="fresh", systems=("ember",), timeout_s=120),
    Workload("node_objects", multinode_objects,
             ("node_fetch_gbps", "node_cached_read_ms", "node_peer_fetch_gbps"),
             "clusters", mode="fresh", systems=("ember",), timeout_s=120),
    Workload("metrics", metrics_overhead, ("metrics_overhead_pct",), "metrics",
             mode="fresh", systems=("ember",), timeout_s=180),
]
WORKLOAD_BY_NAME = {w.name: w for w in WORKLOADS}

assert all(k in METRIC_BY_KEY for w in WORKLOADS for k in w.metrics)
