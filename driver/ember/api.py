"""The public API: init, shutdown, remote, put, get, wait and friends (Ray's core API)."""

from __future__ import annotations

import atexit
import inspect
import json
import logging
import operator
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ember import _context
from ember import _messages as M
from ember._launcher import EmbeddedCluster
from ember._local_cluster import read_record
from ember._namespace import job_namespace
from ember._output import OutputPrinter
from ember._runtime import CoreRuntime, SessionInfo
from ember._wire import ClientConnection
from ember.generators import ObjectRefGenerator, wait_with_generators
from ember.object_ref import ObjectRef
from ember.remote_function import RemoteFunction

log = logging.getLogger("ember")

_init_lock = threading.RLock()
_cluster: EmbeddedCluster | None = None
_printer: OutputPrinter | None = None  # prints what this driver's tasks and actors print
_atexit_registered = False

# Ray's init() keywords that have no meaning for ember's embedded cluster; accepted quietly.
_ACCEPTED_INIT_KWARGS = {
    "include_dashboard", "dashboard_host", "dashboard_port", "logging_level", "logging_format",
    "log_to_driver", "configure_logging", "namespace", "runtime_env", "local_mode", "job_config",
    "_system_config", "_temp_dir", "_plasma_directory", "storage", "_metrics_export_port",
    "_node_ip_address", "labels", "_enable_object_reconstruction", "enable_resource_isolation",
}


class RuntimeInfo:
    """What ``init`` returns (Ray returns a context object with the address)."""

    def __init__(self, session: SessionInfo) -> None:
        self.address_info = {"node_id": session.node_id, "session_dir": session.session_dir,
                             "address": "local"}
        # Ray's dashboard_url has no scheme: "127.0.0.1:8265"
        url = session.raw.get("dashboard_url") if session.raw else None
        self.dashboard_url = url.split("://", 1)[-1].rstrip("/") if url else None

    def __getitem__(self, key: str) -> Any:
        return self.address_info[key]

    def __enter__(self) -> RuntimeInfo:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    token: str | None = None,
    tls_ca: str | None = None,
    ignore_reinit_error: bool = False,
    metrics_port: int | None = None,
    **kwargs: Any,
) -> RuntimeInfo:
    """Start an embedded cluster on this machine (no address), or connect to a running one.

    What tasks and actors print reaches this driver's stdout and stderr as
    ``(name pid=N) line``, unless ``log_to_driver=False``. Without a call to ``init``, the
    first ``.remote()``, ``put`` or ``get`` starts an embedded cluster, as Ray does.

    Args:
        address: None (or ``EMBER_ADDRESS`` unset): start an embedded cluster, a node agent
            and its workers as child processes, stopped by ``shutdown()``. ``"auto"``: join
            the cluster ``ember start`` runs on this machine. ``"host:port"`` (also
            ``"ray://host:port"``): join a running cluster through that one port; nothing
            connects back to this process.
        num_cpus: CPUs of the embedded cluster; the machine's cores by default. Tasks that
            sleep or wait on I/O do not need physical cores, so this may exceed them.
        num_gpus: GPUs of the embedded cluster (declared, not detected); 0 by default.
        resources: custom resources of the embedded cluster, name -> amount.
        object_store_memory: bytes of the shared-memory object store; by default 30% of RAM,
            at most half of /dev/shm.
        token: the cluster token for ``"host:port"`` (else ``EMBER_TOKEN``).
        tls_ca: a PEM CA file to verify a TLS head (else ``EMBER_TLS_CA``).
        ignore_reinit_error: return the current connection instead of raising when ``init``
            was already called.
        metrics_port: the embedded cluster's agent serves Prometheus ``/metrics`` and
            ``/healthz`` on ``127.0.0.1:metrics_port``.
        **kwargs: Ray's ``namespace`` (where named actors live; without it the driver gets an
            anonymous namespace of its own, as in Ray), ``runtime_env`` (the job's
            ``env_vars``, ``working_dir``, ``py_modules``, ``excludes``) and ``log_to_driver``;
            Ray's other ``init`` arguments are accepted and ignored, an unknown one raises
            ``TypeError``.

    Returns:
        What was started or joined, read like Ray's (``info["node_id"]``,
            ``info["session_dir"]``, ``info.address_info``), and a context manager that
            calls ``shutdown()`` at its end.

    Raises:
        RuntimeError: ``init`` was already called (and not ``ignore_reinit_error``).
        ValueError: sizes given with an address, or a bad size or port.
        ConnectionError: the cluster at ``address`` cannot be reached or refused the token.
    """
    global _cluster, _atexit_registered, _printer
    unknown = set(kwargs) - _ACCEPTED_INIT_KWARGS
    if unknown:
        raise TypeError(f"init() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    from ember import runtime_env

    # every task and actor of the job (a submitted job's env_vars first: ember_node.jobs)
    job_env = {**runtime_env.submitted_job_env(), **runtime_env.check(kwargs.get("runtime_env"))}
    namespace = job_namespace(kwargs.get("namespace"))
    job_code = kwargs.get("runtime_env")
    if os.environ.get("EMBER_JOB_WORKING_DIR") and not (job_code or {}).get("working_dir"):
        # a submitted job's tasks run in (a copy of) its uploaded working directory, as in Ray
        job_code = {"working_dir": os.environ["EMBER_JOB_WORKING_DIR"], "py_modules": (job_code or {}).get("py_modules"),
                    "pip": (job_code or {}).get("pip")}
    if runtime_env.submitted_job_pip() is not None and not (job_code or {}).get("pip"):
        job_code = {**(job_code or {}), "pip": runtime_env.submitted_job_pip()}  # the submitted job's
    with _init_lock:
        if _context.current_runtime() is not None:
            if ignore_reinit_error:
                return RuntimeInfo(_context.current_runtime().session)
            raise RuntimeError(
                "ember.init() was already called in this process; call ember.shutdown() first, "
                "or pass ignore_reinit_error=True"
            )
        if address is None:
            address = os.environ.get("EMBER_ADDRESS") or None
        if os.environ.get("EMBER_JOB_WORKING_DIR"):  # a submitted job: its modules go with its tasks
            from ember._job_modules import install

            install(os.environ["EMBER_JOB_WORKING_DIR"])
        if address not in (None, "local"):
            if (num_cpus is not None or num_gpus is not None or resources or object_store_memory
                    or metrics_port is not None):
                raise ValueError(
                    "num_cpus, num_gpus, resources, object_store_memory and metrics_port describe a "
                    "new local cluster; they cannot be given when connecting to a running one"
                )
            job = os.urandom(4).hex()  # Ray job ids are 4 bytes, 8 hex digits
            rt, open_output = _connect(address, token, tls_ca or os.environ.get("EMBER_TLS_CA"), job)
            rt.namespace = namespace
            rt.job_id = bytes.fromhex(job)  # what get_runtime_context().get_job_id() says
            if kwargs.get("log_to_driver", True):
                _printer = _open_printer(open_output, job)
            if os.environ.get(runtime_env.ALIAS_VAR) == "1":  # `ember run`: workers we did not
                job_env = {**job_env, runtime_env.ALIAS_VAR: "1"}  # start get the alias per task
            rt.env_vars = job_env
            _context.set_runtime(rt)
            _ship_job_code(rt, job_code)
            if not _atexit_registered:
                atexit.register(shutdown)
                _atexit_registered = True
            return RuntimeInfo(rt.session)
        if metrics_port is None and kwargs.get("_metrics_export_port") is not None:
            metrics_port = kwargs["_metrics_export_port"]  # Ray's name for the same port
        _check_amount("num_cpus", num_cpus)
        _check_amount("num_gpus", num_gpus)
        if resources is not None:
            if not isinstance(resources, dict):
                raise TypeError("resources must be a dict of name -> amount")
            for name, value in resources.items():
                if name in ("CPU", "GPU"):
                    raise ValueError(f"use num_cpus/num_gpus instead of resources={{'{name}': ...}}")
                _check_amount(f"resources[{name!r}]", value)
        if object_store_memory is not None and (not isinstance(object_store_memory, int) or object_store_memory < 1 << 20):
            raise ValueError("object_store_memory must be an integer number of bytes, at least 1 MiB")
        if metrics_port is not None and (not isinstance(metrics_port, int) or isinstance(metrics_port, bool)
                                         or not 0 <= metrics_port <= 65535):
            raise ValueError(f"metrics_port must be a port number (0-65535), got {metrics_port!r}")
        cluster = EmbeddedCluster(num_cpus, num_gpus, resources, object_store_memory,
                                  metrics_port=metrics_port, dashboard=_dashboard_choice(kwargs))
        try:
            session = SessionInfo(cluster.session)
            conn = ClientConnection.connect(session.socket_path)
            rt = CoreRuntime(conn, session, "driver")
            inbox = rt.open_inbox(session.socket_dir)
            job = os.urandom(4).hex()  # Ray job ids are 4 bytes, 8 hex digits
            rt.job_id = bytes.fromhex(job)  # what get_runtime_context().get_job_id() says
            rt.send((M.HELLO, "driver", _pid(), None, M.hello_info({"direct": inbox, "job": job})))
            _say_dashboard(session.raw)
            if kwargs.get("log_to_driver", True):
                _printer = _open_printer(lambda: ClientConnection.connect(session.socket_path), job)
        except BaseException:
            cluster.stop(timeout=0)
            raise
        _cluster = cluster
        rt.namespace = namespace
        rt.env_vars = job_env
        _context.set_runtime(rt)
        _ship_job_code(rt, job_code)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return RuntimeInfo(session)


def _dashboard_choice(kwargs: dict[str, Any]) -> tuple[str, int, bool] | None:
    """init()'s include_dashboard / dashboard_host / dashboard_port (Ray's keywords) as the
    embedded agent's dashboard: None when turned off; a port not given explicitly moves to
    the next free one when 8265 is taken."""
    if kwargs.get("include_dashboard") is False:
        return None
    port = kwargs.get("dashboard_port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535):
        raise ValueError(f"dashboard_port must be a port number (0-65535), got {port!r}")
    host = kwargs.get("dashboard_host") or "127.0.0.1"
    return (str(host), 8265 if port is None else port, port is None)


def _say_dashboard(session: dict) -> None:
    """One line, as Ray's init prints: where the dashboard is (with the login token, so a
    click opens it), or why there is none."""
    if session.get("dashboard_login_url"):
        print(f"ember: dashboard at {session['dashboard_login_url']}", file=sys.stderr)
    elif session.get("dashboard_error"):
        print(f"ember: no dashboard: {session['dashboard_error']}", file=sys.stderr)


def _ship_job_code(rt: CoreRuntime, env: dict | None) -> None:
    """The job's runtime_env working_dir and py_modules, packed and stored now, and its pip
    packages, installed by each node when a task needs them; ``init`` fails (and
    disconnects) when they cannot be."""
    if not env or not (env.get("working_dir") or env.get("py_modules") or env.get("pip")):
        return
    from ember._runtime_packages import set_job_packages

    try:
        set_job_packages(rt, env)
    except BaseException:
        shutdown()
        raise


def _pid() -> int:
    return os.getpid()


def _open_printer(open_conn: Any, job: str) -> OutputPrinter | None:
    try:
        return OutputPrinter(open_conn(), job)
    except Exception as exc:  # noqa: BLE001 - the work runs anyway, only its prints stay in the logs
        log.warning("what tasks print will not be shown here (%s); it stays in the session's log files", exc)
        return None


def _connect(address: str, token: str | None, tls_ca: str | None, job: str) -> tuple[CoreRuntime, Any]:
    """Join a running cluster: "auto" (started here by `ember start`), "unix:<agent socket>"
    or "host:port".

    Returns the runtime and a function that opens another connection (for the output of
    ``job``'s tasks)."""
    local = address == "auto" or address.startswith("unix:")
    if local:
        if address == "auto":
            rec = read_record()
            if rec is None:
                raise ConnectionError(
                    "no ember cluster is running on this machine: start one with `ember start --head`, "
                    "or call ember.init() without an address for a private local cluster"
                )
            path = rec["socket"]
        else:  # "unix:<agent socket>": what a job's entrypoint is given (ember_node.jobs)
            path = address[len("unix:"):]
            from ember import _private_dir

            _private_dir.check(os.path.dirname(path), "dir")
            _private_dir.check(path, "socket")
        conn: Any = ClientConnection.connect(path)
        rt = CoreRuntime(conn, None, "driver")

        def open_conn() -> Any:
            return ClientConnection.connect(path)
    else:
        for scheme in ("ember://", "ray://"):
            if address.startswith(scheme):
                address = address[len(scheme):]
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"address must be 'auto' or 'host:port', got {address!r}")
        token = token or os.environ.get("EMBER_TOKEN")
        if not token:
            raise ValueError(
                f"connecting to {address} needs the cluster token: ember.init({address!r}, token=...) "
                "or the EMBER_TOKEN environment variable (`ember start --head` prints it)"
            )
        from ember._remote import GrpcConnection, ping  # grpc loads only for remote drivers

        ping(address, token, tls_ca=tls_ca)
        rt = CoreRuntime(GrpcConnection(address, token, tls_ca), None, "driver", remote=True)

        def open_conn() -> Any:
            return GrpcConnection(address, token, tls_ca)
    inbox = rt.open_inbox(os.path.dirname(path)) if local else None
    rt.send((M.HELLO, "driver", _pid(), None, M.hello_info({"direct": inbox, "job": job})))
    rt.session = SessionInfo(rt.request(M.REQUEST, "session", None, timeout=30))
    return rt, open_conn


def _check_amount(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def _auto_init() -> CoreRuntime:
    """Ray starts a local cluster on first use; so do we."""
    with _init_lock:
        if _context.current_runtime() is None:
            init()
        return _context.current_runtime()


def shutdown() -> None:
    """Stop the embedded cluster (every worker, the agent, the shared memory) and disconnect."""
    global _cluster, _printer
    with _init_lock:
        rt = _context.current_runtime()
        if rt is None:
            return
        _context.set_runtime(None)
        user_metrics = sys.modules.get("ember.util.metrics")
        if user_metrics is not None:  # what this driver recorded last reaches the agent
            user_metrics.flush(rt)
        if _printer is not None:  # what the work printed until now is shown first
            _printer.close()
            _printer = None
        if _cluster is not None:
            try:
                rt.send((M.SHUTDOWN,))
            except Exception:  # noqa: BLE001 - the agent may already be gone
                pass
        rt.close()
        if _cluster is not None:
            _cluster.stop()
            _cluster = None


def is_initialized() -> bool:
    """True between ``init()`` and ``shutdown()``."""
    return _context.current_runtime() is not None


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a task, or a class an actor: ``@ember.remote`` or ``@ember.remote(num_cpus=2)``.

    ``f.remote(*args)`` then submits the task and returns an ``ObjectRef`` (a list of them for
    ``num_returns > 1``, None for 0); ``Cls.remote(*args)`` creates an actor and returns its
    handle, whose ``handle.method.remote(...)`` calls run in order per caller.
    ``f.options(...)``/``Cls.options(...)`` change options for one call. Arguments are
    checked against the signature at ``.remote()``; a top-level ``ObjectRef`` argument arrives
    as its value, refs nested in containers arrive as refs.

    Options of tasks and actors: ``num_cpus`` (by default 1 for a task, 0 for an
    actor), ``num_gpus``, ``resources`` (``{"name": amount}``), ``memory`` (bytes),
    ``runtime_env`` (``{"env_vars": {...}}``), ``name``. Of tasks: ``num_returns``,
    ``max_retries`` (3; -1 forever; retried when the worker dies), ``retry_exceptions``
    (True or a list of exception types: also retry when the task raises). Of actors:
    ``max_restarts``, ``max_task_retries``, ``max_concurrency`` (threads, or concurrent
    coroutines for async actors), ``max_pending_calls``, ``name``, ``namespace``,
    ``get_if_exists``, ``lifetime="detached"``. Ray's placement and scheduling options are
    accepted and have no effect.
    """
    if len(args) == 1 and not options and (inspect.isfunction(args[0]) or inspect.isclass(args[0])
                                           or callable(args[0])):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("@ember.remote takes either no arguments or keyword options only, e.g. @ember.remote(num_cpus=2)")

    def decorator(fn_or_class: Any) -> Any:
        return _make_remote(fn_or_class, options)

    return decorator


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(target):
        from ember.actor import ActorClass

        return ActorClass(target, options)
    if not callable(target):
        raise TypeError(f"@ember.remote needs a function or a class, got {type(target).__name__}")
    return RemoteFunction(target, options)


def method(*args: Any, **options: Any) -> Any:
    """Options for an actor method: ``@ember.method(num_returns=2)``."""
    # enable_task_events only changes what is recorded for observability tools
    valid = {"num_returns", "concurrency_group", "max_task_retries", "retry_exceptions",
             "enable_task_events", "_generator_backpressure_num_objects"}

    def decorator(fn: Any) -> Any:
        bad = set(options) - valid
        if bad:
            raise ValueError(f"invalid option(s) {sorted(bad)} for @ember.method; valid: {sorted(valid)}")
        fn.__ember_method_options__ = options
        return fn

    if args:
        if len(args) == 1 and callable(args[0]) and not options:
            return decorator(args[0])
        raise TypeError("@ember.method takes keyword options only, e.g. @ember.method(num_returns=2)")
    return decorator


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """End an actor now; its pending and later calls raise ActorDiedError.

    With ``no_restart=False`` an actor with ``max_restarts`` left is restarted instead.
    """
    from ember.actor import kill as _kill

    _kill(actor, no_restart=no_restart)


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of a live named actor (``@remote(name=...)``, ``.options(name=...)``).

    Raises ``ValueError`` when no live actor has that name in ``namespace`` (by default the
    job's: the one ``init(namespace=)`` named, else the driver's own anonymous namespace, so
    actors named by another driver are found only when both name the same namespace).
    """
    from ember.actor import get_actor as _get_actor

    return _get_actor(name, namespace)


def get_gpu_ids() -> list[int]:
    """The GPU ids the current task or actor may use (what CUDA_VISIBLE_DEVICES lists);
    empty in a driver."""
    rt = _context.current_runtime()
    return list(rt.gpu_ids) if rt is not None else []


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store ``value`` in the cluster; returns an ObjectRef to it.

    Values above 100 KiB go to the node's shared-memory store (numpy arrays come back
    zero-copy and read-only); the value is freed when the last reference is gone.
    """
    return _context.require_runtime().put(value)


def get(object_refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """The value(s) of an ObjectRef or a list of them, in order; waits for them to be ready.

    Raises the task's error if it failed, ``GetTimeoutError`` when ``timeout`` (seconds) passes.
    """
    if timeout is not None:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
    rt = _context.require_runtime()
    if isinstance(object_refs, ObjectRef):
        return rt.get([object_refs], timeout)[0]
    if isinstance(object_refs, list | tuple):
        for r in object_refs:
            if not isinstance(r, ObjectRef):
                raise TypeError(
                    f"get() expects a list of ObjectRefs, but the list holds a {type(r).__name__}"
                )
        return rt.get(list(object_refs), timeout)
    if isinstance(object_refs, ObjectRefGenerator):
        raise TypeError("get() cannot take an ObjectRefGenerator: iterate it (for ref in gen) and get "
                        "each ObjectRef it gives")
    raise TypeError(
        f"get() expects an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}"
    )


_ref_id = operator.attrgetter("_id")


def wait(
    object_refs: list[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Wait until ``num_returns`` refs are ready or ``timeout`` passes: returns (ready, not_ready).

    Both lists keep the input order (as Ray documents); call it with ``num_returns=1`` in a loop
    to take results as they finish.
    """
    if isinstance(object_refs, ObjectRef):
        raise TypeError("wait() expects a list of ObjectRefs, got a single ObjectRef; wrap it in a list")
    if not isinstance(object_refs, list | tuple):
        raise TypeError(f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    if not set(map(type, object_refs)) <= {ObjectRef}:  # (checked in C: wait is called in loops)
        if any(isinstance(r, ObjectRefGenerator) for r in object_refs):
            return wait_with_generators(_context.require_runtime(), list(object_refs), num_returns, timeout)
        for r in object_refs:
            if not isinstance(r, ObjectRef):
                raise TypeError(f"wait() expects a list of ObjectRefs, but the list holds a {type(r).__name__}")
    if not object_refs:
        return [], []
    ids = list(map(_ref_id, object_refs))
    if len(set(ids)) != len(ids):
        raise ValueError("wait() got duplicate ObjectRefs in its list; pass each ref once")
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative integer, got {num_returns!r}")
    if num_returns > len(object_refs):
        raise ValueError(
            f"num_returns ({num_returns}) cannot exceed the number of refs passed ({len(object_refs)})"
        )
    if timeout is not None and (not isinstance(timeout, int | float) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
    rt = _context.require_runtime()
    return rt.wait(list(object_refs), num_returns, timeout, ids)


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that produces ``object_ref``; ``get`` on it then raises TaskCancelledError.

    A queued task is dropped; a running one is interrupted (``force=True`` kills its worker).
    """
    if isinstance(object_ref, ObjectRefGenerator):  # a generator task: it stops where it is
        object_ref = object_ref.completed()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef or an ObjectRefGenerator, got {type(object_ref).__name__}")
    _context.require_runtime().cancel(object_ref, force, recursive)


def _request(what: str, arg: Any = None) -> Any:
    rt = _context.current_runtime()
    if rt is None:
        raise RuntimeError("ember is not initialized; call ember.init() first")
    return rt.request(M.REQUEST, what, arg, timeout=30)


def nodes() -> list[dict[str, Any]]:
    """One dict per node: NodeID, Alive, NodeManagerAddress, Resources."""
    return _request("nodes")


def cluster_resources() -> dict[str, float]:
    """Total resources of the cluster: {'CPU': 8.0, 'object_store_memory': ..., ...}."""
    return _request("cluster_resources")


def available_resources() -> dict[str, float]:
    """Resources not held by running tasks or actors right now."""
    return _request("available_resources")


def _stats() -> dict[str, Any]:
    """Internal counters of the local node (objects, store bytes, workers); for tests and tools."""
    return _request("stats")


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """The execution of the tasks in the head's history as Chrome trace events ("X"
    events in microseconds, one process per node, one thread per worker pid). With
    ``filename``, write them there as JSON (open it in chrome://tracing or Perfetto) and
    return None, as Ray does; without, return the list."""
    events = _request("timeline")
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
