"""Actors: ``@ember.remote`` on a class gives an ``ActorClass``; ``.remote()`` starts an actor.

An actor is a dedicated worker process holding one instance of the class. Calls from one
caller run in the order they were made. A handle keeps the actor alive through an internal
ObjectRef to the actor's creation result, so handles ride on the same reference counting as
objects: when the last handle anywhere is gone (and no call is pending) the agent ends the
actor, unless it is detached.
"""

from __future__ import annotations

import inspect
from typing import Any

from ember import _context, _runtime_packages, generators, runtime_env
from ember._concurrency_groups import check_groups, check_method_groups, method_groups
from ember._namespace import is_anonymous
from ember._resources import validate_request
from ember._scheduling import (
    inherits_placement,
    placed_resources,
    submitted_resources,
    wire_strategy,
)
from ember._serialization import dumps_function, serialize
from ember._signature import CallShape, check, shape_of
from ember.object_ref import ObjectRef
from ember.remote_function import check_options

ACTOR_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "memory", "name", "namespace", "get_if_exists", "lifetime",
    "max_restarts", "max_task_retries", "max_concurrency", "max_pending_calls", "runtime_env",
    "scheduling_strategy", "concurrency_groups", "accelerator_type", "label_selector",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "_metadata", "enable_task_events", "allow_out_of_order_execution",
}


class ActorMeta:
    """What a handle needs to know about its actor's class (travels with the handle)."""

    __slots__ = ("class_name", "methods", "is_async", "max_task_retries", "shapes", "groups")

    def __init__(self, class_name: str, methods: dict[str, int], is_async: bool, max_task_retries: int,
                 shapes: dict[str, CallShape | None] | None = None, groups: tuple[str, ...] = ()) -> None:
        self.class_name = class_name
        self.methods = methods  # name -> default num_returns
        self.is_async = is_async
        self.max_task_retries = max_task_retries
        self.shapes = shapes or {}  # name -> parameters, checked at .remote()
        self.groups = groups  # the concurrency groups the actor defines

    def __reduce__(self):
        return (ActorMeta, (self.class_name, self.methods, self.is_async, self.max_task_retries, self.shapes,
                            self.groups))


def method_table(cls: type) -> tuple[dict[str, int], bool, dict[str, CallShape | None]]:
    """Method name -> default num_returns, whether the actor is async, and each method's
    call shape (``__init__``'s included)."""
    methods: dict[str, int] = {}
    shapes: dict[str, CallShape | None] = {}
    is_async = False
    for name, member in inspect.getmembers(cls):
        if not callable(member) or (name.startswith("__") and name not in ("__call__", "__init__")):
            continue
        # a plain method's signature has ``self``; a static or class method's does not
        bound = isinstance(inspect.getattr_static(cls, name, None), staticmethod | classmethod)
        shapes[name] = shape_of(member, f"{cls.__qualname__}.{name}", drop_first=not bound)
        if name == "__init__":
            continue
        opts = getattr(member, "__ember_method_options__", {})
        methods[name] = generators.returns_of(member, opts)  # a count, or how a generator streams
        if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
            is_async = True
    if inspect.iscoroutinefunction(getattr(cls, "__init__", None)):
        is_async = True  # an async constructor makes an async actor (its loop runs the methods)
    return methods, is_async, shapes


class ActorClass:
    """A class made remote: ``Cls.remote(*args)`` creates an actor and returns its handle."""

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        check_options(options, ACTOR_OPTIONS, "an actor class")
        self._cls = cls
        self._options = options
        self._name = cls.__qualname__
        self._methods, self._is_async, self._shapes = method_table(cls)
        if cls.__init__ is object.__init__:  # no __init__ of its own: takes no arguments
            self._shapes["__init__"] = CallShape(f"{self._name}.__init__", ())
        self._blob: bytes | None = None
        self._contained: list[bytes] = []
        self.__doc__ = cls.__doc__
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor class {self._name} cannot be instantiated directly; "
            f"use {self._name}.remote(...) to create an actor"
        )

    def __reduce__(self):
        return (ActorClass, (self._cls, self._options))

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Create the actor (asynchronously) and return a handle to it."""
        return self._create(args, kwargs, self._options)

    def options(self, **options: Any) -> _ActorClassOptions:
        """The same class with some actor options changed for the actors created through it."""
        check_options(options, ACTOR_OPTIONS, "an actor class")
        return _ActorClassOptions(self, {**self._options, **options})

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy actor for a DAG (ember.dag): created when the DAG is executed."""
        from ember.dag import ClassNode

        return ClassNode(self, self._name, args, kwargs)

    def _create(self, args: tuple, kwargs: dict, options: dict[str, Any]) -> ActorHandle:
        check(self._shapes.get("__init__"), args, kwargs)
        rt = _context.require_runtime()
        name = options.get("name")
        namespace = options.get("namespace") or rt.namespace
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"actor name must be a non-empty string, got {name!r}")
        lifetime = options.get("lifetime")
        if lifetime not in (None, "detached", "non_detached"):
            raise ValueError(f"lifetime must be 'detached' or None, got {lifetime!r}")
        if lifetime == "detached" and name is None:
            pass  # Ray allows unnamed detached actors (reachable only through handles)
        max_restarts = options.get("max_restarts", 0)
        max_task_retries = options.get("max_task_retries", 0)
        for key, value in (("max_restarts", max_restarts), ("max_task_retries", max_task_retries)):
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise ValueError(f"{key} must be an integer >= -1 (-1 means unlimited), got {value!r}")
        concurrency = options.get("max_concurrency")
        if concurrency is None:
            concurrency = 1000 if self._is_async else 1
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, got {concurrency!r}")
        groups = check_groups(options.get("concurrency_groups"))
        check_method_groups(self._name, method_groups(self._cls), groups)
        explicit_cpus = options.get("num_cpus")
        held = validate_request(explicit_cpus, options.get("num_gpus"), options.get("resources"),
                                options.get("memory"), default_cpus=0.0)
        held = submitted_resources(rt, placed_resources(held, options), inherits_placement(options))
        if name is not None:
            existing = _lookup(rt, name, namespace)
            if existing is not None:
                if options.get("get_if_exists"):
                    return existing
                raise ValueError(
                    f"an actor named {name!r} already exists in namespace {namespace!r}; "
                    f"use ember.get_actor({name!r}) or .options(get_if_exists=True)"
                )
        own_env = runtime_env.check(options.get("runtime_env"))
        env = runtime_env.effective(own_env) if (own_env or rt.env_vars) else None
        packages = _runtime_packages.resolve(rt, _runtime_packages.parse(options.get("runtime_env")))
        if packages:  # the actor's process runs inside its code packages (and variables)
            blob, contained = _runtime_packages.dumps_packaged_class(self._cls, packages, env or {})
            fn_id = rt.register_function(blob, contained)
        elif env:  # the actor's process runs with these variables set
            blob, contained = dumps_function(runtime_env.ActorEnv(self._cls, env))
            fn_id = rt.register_function(blob, contained)
        else:
            if self._blob is None:
                try:
                    self._blob, self._contained = dumps_function(self._cls)
                except Exception as exc:
                    raise TypeError(f"cannot pickle actor class {self._name}: {exc}") from exc
            fn_id = rt.register_function(self._blob, self._contained)
        meta = ActorMeta(self._name, self._methods, self._is_async, max_task_retries,
                         {k: v for k, v in self._shapes.items() if k != "__init__"}, tuple(groups))
        spec = {
            "name": name,
            "namespace": namespace,
            "detached": lifetime == "detached",
            "max_restarts": max_restarts,
            "max_task_retries": max_task_retries,
            "max_concurrency": concurrency,
            "is_async": self._is_async,
            "held": held,
            # like Ray: a default actor holds 0 CPU while it runs, but goes on a node with CPUs
            "cpu_node": explicit_cpus is None,
            "meta": serialize(meta).to_bytes(),
            "get_if_exists": bool(options.get("get_if_exists")),
            "concurrency_groups": groups,
        }
        refs = rt.submit(fn_id, f"{self._name}.__init__", args, kwargs, 1, held, 0, False,
                         extra=("create", spec), strategy=wire_strategy(options.get("scheduling_strategy")))
        creation = refs[0]
        return ActorHandle(creation, meta)


class _ActorClassOptions:
    __slots__ = ("_cls", "_options")

    def __init__(self, cls: ActorClass, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._cls._create(args, kwargs, self._options)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        from ember.dag import ClassNode

        return ClassNode(self, self._cls._name, args, kwargs)


def _lookup(rt: Any, name: str, namespace: str | None) -> ActorHandle | None:
    from ember import _messages as M

    found = rt.request(M.REQUEST, "get_actor", (name, namespace), timeout=30)
    if found is None:
        return None
    if isinstance(found, BaseException):
        raise found
    creation_id, meta_blob = found
    from ember._serialization import deserialize

    return ActorHandle(ObjectRef(creation_id), deserialize(meta_blob))


class ActorHandle:
    """A reference to an actor; ``handle.method.remote(...)`` calls a method.

    Handles can be passed to tasks and other actors (also inside lists and dicts).
    """

    def __init__(self, creation: ObjectRef, meta: ActorMeta) -> None:
        self._ember_creation = creation
        self._ember_meta = meta

    @property
    def _actor_id(self) -> bytes:
        return self._ember_creation.binary()

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_ember_"):
            raise AttributeError(name)
        meta = self._ember_meta
        if name == "__ray_ready__":  # a call that returns True once the actor is created
            return ActorMethod(self, name, 1)
        if name not in meta.methods:
            raise AttributeError(f"actor class {meta.class_name} has no method {name!r}")
        return ActorMethod(self, name, meta.methods[name])

    def __reduce__(self):
        return (ActorHandle, (self._ember_creation, self._ember_meta))

    def __repr__(self) -> str:
        return f"Actor({self._ember_meta.class_name}, {self._actor_id.hex()[:16]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)


class ActorMethod:
    """``handle.method``: call it with ``.remote(...)``."""

    __slots__ = ("_handle", "_name", "_num_returns", "_retries", "_group")

    def __init__(self, handle: ActorHandle, name: str, num_returns: int, retries: int | None = None,
                 group: str | None = None) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._retries = retries
        self._group = group  # the concurrency group chosen for these calls (None: the method's)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor method {self._name} cannot be called directly; use .{self._name}.remote(...)"
        )

    def options(self, **options: Any) -> ActorMethod:
        bad = set(options) - {"num_returns", "max_task_retries", "name", "retry_exceptions",
                              "concurrency_group", generators.BACKPRESSURE_OPTION}
        if bad:
            raise ValueError(f"invalid option(s) {sorted(bad)} for an actor method call")
        n = generators.with_options(self._num_returns, options)
        group = options.get("concurrency_group", self._group)
        if group is not None:
            meta = self._handle._ember_meta
            if group not in meta.groups:
                raise ValueError(f"actor {meta.class_name} has no concurrency group {group!r}; it defines "
                                 f"{list(meta.groups) or 'none'}")
        return ActorMethod(self._handle, self._name, n, options.get("max_task_retries", self._retries), group)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy call of this actor's method for a DAG (ember.dag)."""
        from ember.dag import ClassMethodNode

        options = {} if self._retries is None else {"max_task_retries": self._retries}
        if self._num_returns != 1:
            options["num_returns"] = self._num_returns
        return ClassMethodNode(self._handle, self._name, options, args, kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        rt = _context.require_runtime()
        handle = self._handle
        meta = handle._ember_meta
        check(meta.shapes.get(self._name), args, kwargs)
        retries = meta.max_task_retries if self._retries is None else self._retries
        n = self._num_returns
        extra = ("call", handle._actor_id, self._name)
        if self._group is not None:
            extra += (self._group,)
        if type(n) is not int:  # a generator method (ember.generators)
            return generators.submit(rt, n, b"", f"{meta.class_name}.{self._name}", args, kwargs, {}, retries,
                                     False, extra=extra)
        refs = rt.submit(b"", f"{meta.class_name}.{self._name}", args, kwargs, n, {}, retries, False,
                         extra=extra)
        if n == 1:
            return refs[0]
        if n == 0:
            return None
        return refs


def exit_actor() -> None:
    """End the current actor from inside one of its methods (Ray's ``ray.actor.exit_actor``):
    it is not restarted; this call and later ones raise ActorDiedError."""
    rt = _context.current_runtime()
    if rt is None or getattr(rt, "actor", None) is None:
        raise TypeError("exit_actor() can only be called inside an actor's method")
    raise SystemExit(0)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """End an actor now; pending and future calls raise ActorDiedError."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() expects an actor handle, got {type(actor).__name__}")
    from ember import _messages as M

    rt = _context.require_runtime()
    rt.request(M.REQUEST, "kill_actor", (actor._actor_id, no_restart), timeout=30)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of a named actor; raises ValueError when there is none by that name."""
    if not isinstance(name, str) or not name:
        raise ValueError("get_actor() needs the actor's name (a non-empty string)")
    rt = _context.require_runtime()
    namespace = namespace or rt.namespace
    handle = _lookup(rt, name, namespace)
    if handle is None:
        where = f" in namespace {namespace!r}" if namespace else ""
        hint = ""
        if is_anonymous(namespace):
            hint = (" (this job's namespace is anonymous: actors another driver named are found only "
                    "when both call ember.init(namespace=...) with the same name)")
        raise ValueError(f"no actor named {name!r}{where}; it was never created, or it has died{hint}")
    return handle
