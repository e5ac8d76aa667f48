"""``@ember.remote`` on a function: a ``RemoteFunction`` whose ``.remote()`` runs it as a task."""

from __future__ import annotations

import functools
import weakref
from typing import Any

from ember import _context, _runtime_packages, generators, runtime_env
from ember._call_limit import CallLimit, default_max_calls
from ember._resources import validate_request
from ember._scheduling import (
    inherits_placement,
    placed_resources,
    submitted_resources,
    wire_strategy,
)
from ember._serialization import dumps_function, serialize
from ember._signature import check, shape_of

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "memory", "num_returns", "max_retries", "retry_exceptions",
    "name", "scheduling_strategy", "runtime_env", "accelerator_type", "label_selector",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "_metadata", "enable_task_events", "max_calls", generators.BACKPRESSURE_OPTION,
}
_IGNORED = {"accelerator_type", "label_selector", "_metadata", "enable_task_events"}


def check_options(options: dict[str, Any], valid: set[str], what: str) -> None:
    """Reject unknown options and bad values with a message naming the fix."""
    for key in options:
        if key not in valid:
            raise ValueError(f"invalid option {key!r} for {what}; valid options are: {', '.join(sorted(valid))}")
    n = options.get("num_returns")
    if n is not None:
        generators.check_num_returns(n)
    generators.check_backpressure(options.get(generators.BACKPRESSURE_OPTION))
    r = options.get("max_retries")
    if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r < -1):
        raise ValueError(f"max_retries must be an integer >= -1 (-1 retries forever), got {r!r}")
    rex = options.get("retry_exceptions")
    if rex is not None and not isinstance(rex, bool):
        if not isinstance(rex, list | tuple) or not all(isinstance(t, type) and issubclass(t, BaseException) for t in rex):
            raise ValueError("retry_exceptions must be True, False, or a list of exception types")
    if options.get("max_calls") is not None:
        default_max_calls(options["max_calls"], None)  # raises for a bad value
    runtime_env.check(options.get("runtime_env"))  # refuses what ember cannot do, by name
    wire_strategy(options.get("scheduling_strategy"))  # raises for a bad strategy
    res = options.get("resources")
    if res is not None and not isinstance(res, dict):
        raise TypeError(f"resources must be a dict of name -> amount, got {type(res).__name__}")


class RemoteFunction:
    """A function that runs as a task: ``f.remote(*args)`` returns ObjectRef(s) immediately."""

    def __init__(self, fn: Any, options: dict[str, Any]) -> None:
        check_options(options, TASK_OPTIONS, "a remote function")
        self._function = fn
        self._options = options
        self._name = getattr(fn, "__qualname__", getattr(fn, "__name__", "task"))
        self._blob: bytes | None = None
        self._contained: list[bytes] = []
        self._registered: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # rt -> {(env items, max_calls): fn_id}, for calls with environment variables or a call limit
        self._with_env: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        functools.update_wrapper(self, fn)
        self._resolved = self._resolve(options)
        self._shape = shape_of(fn, self._name)

    def _resolve(self, options: dict[str, Any]) -> tuple:
        resources = validate_request(options.get("num_cpus"), options.get("num_gpus"),
                                     options.get("resources"), options.get("memory"), default_cpus=1.0)
        resources = placed_resources(resources, options)
        rex = options.get("retry_exceptions", False)
        if isinstance(rex, list | tuple):
            rex = serialize(list(rex)).to_bytes()
        return (generators.returns_of(self._function, options), resources, options.get("max_retries", 3), rex,
                options.get("name") or self._name, runtime_env.check(options.get("runtime_env")),
                default_max_calls(options.get("max_calls"), resources.get("GPU")),
                _runtime_packages.parse(options.get("runtime_env")),
                wire_strategy(options.get("scheduling_strategy")), inherits_placement(options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self._name} cannot be called directly; "
            f"use {self._name}.remote(...) to run it as a task"
        )

    def __reduce__(self):
        return (RemoteFunction, (self._function, self._options))

    def _fn_id(self, rt: Any) -> bytes:
        fn_id = self._registered.get(rt)
        if fn_id is None:
            if self._blob is None:
                try:
                    self._blob, self._contained = dumps_function(self._function)
                except Exception as exc:
                    raise TypeError(f"cannot pickle remote function {self._name}: {exc}") from exc
            fn_id = rt.register_function(self._blob, self._contained)
            self._registered[rt] = fn_id
        return fn_id

    def _env_fn_id(self, rt: Any, env: dict[str, str] | None, max_calls: int,
                   packages: _runtime_packages.PackageSet | None = None) -> bytes:
        """The function registered wrapped in its environment variables and code
        (runtime_env) and its call limit (max_calls)."""
        table = self._with_env.setdefault(rt, {})
        key = (tuple(sorted(env.items())) if env else (), max_calls, packages.key() if packages else ())
        fn_id = table.get(key)
        if fn_id is None:
            fn = CallLimit(self._function, max_calls) if max_calls else self._function
            fn = runtime_env.EnvCall(fn, env) if env else fn
            try:
                if packages is not None:
                    blob, contained = _runtime_packages.dumps_packaged(fn, packages)
                else:
                    blob, contained = dumps_function(fn)
            except Exception as exc:
                raise TypeError(f"cannot pickle remote function {self._name}: {exc}") from exc
            fn_id = table[key] = rt.register_function(blob, contained)
        return fn_id

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function as a task; returns an ObjectRef (a list for num_returns > 1)."""
        return self._submit(args, kwargs, self._resolved)

    def _submit(self, args: tuple, kwargs: dict, resolved: tuple) -> Any:
        check(self._shape, args, kwargs)
        rt = _context.require_runtime()
        (num_returns, resources, max_retries, rex, name, own_env, max_calls, own_packages, strategy,
         inherit) = resolved
        resources = submitted_resources(rt, resources, inherit)
        env = runtime_env.effective(own_env) if (own_env or rt.env_vars) else None
        packages = _runtime_packages.resolve(rt, own_packages)
        if env or max_calls or packages:
            fn_id = self._env_fn_id(rt, env, max_calls, packages)
        else:
            fn_id = self._fn_id(rt)
        if type(num_returns) is not int:  # a generator task (ember.generators)
            return generators.submit(rt, num_returns, fn_id, name, args, kwargs, resources, max_retries, rex,
                                     strategy=strategy)
        refs = rt.submit(fn_id, name, args, kwargs, num_returns, resources, max_retries, rex, strategy=strategy)
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy call of this task for a DAG (ember.dag): submitted when the DAG is executed."""
        from ember.dag import FunctionNode

        return FunctionNode(self, self._name, args, kwargs)

    def options(self, **options: Any) -> _BoundOptions:
        """The same function with some options changed for the calls made through the result."""
        check_options(options, TASK_OPTIONS, "a remote function")
        merged = {**self._options, **options}
        return _BoundOptions(self, self._resolve(merged))


class _BoundOptions:
    __slots__ = ("_fn", "_resolved")

    def __init__(self, fn: RemoteFunction, resolved: tuple) -> None:
        self._fn = fn
        self._resolved = resolved

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn._submit(args, kwargs, self._resolved)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        from ember.dag import FunctionNode

        return FunctionNode(self, self._fn._name, args, kwargs)
