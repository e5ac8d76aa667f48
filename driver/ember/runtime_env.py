"""Runtime environments (Ray's ``runtime_env``): what ember supports of them, and the check
that refuses the rest by name instead of ignoring it.

Supported: ``env_vars`` (a dict of str to str), for ``init(runtime_env=...)`` (every task and
actor of the job), and per task or actor through ``@remote``/``.options``; a task's or actor's
variables override the job's, and tasks started from inside inherit them. ``working_dir``,
``py_modules`` and ``excludes`` ship code the same way (``ember._runtime_packages``), and
``pip`` installs packages into a cached virtualenv per node (``ember._runtime_pip``).
``config`` (setup timeouts) is accepted. Every other key Ray knows raises ``ValueError``
naming it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ember import _context

SUPPORTED = ("env_vars", "config", "working_dir", "py_modules", "excludes", "pip")
ALIAS_VAR = "EMBER_RAY_ALIAS"  # (ember._ray_alias.ENV_VAR, without importing it here)
# Ray's runtime_env keys that ember does not implement yet (anything else is not a key at all)
RAY_ONLY = ("py_executable", "uv", "conda",
            "container", "image_uri", "nsight", "worker_process_setup_hook", "java_jars",
            "mpi", "rocprof_sys")


class RuntimeEnv(dict):
    """A runtime environment as a dict: ``RuntimeEnv(env_vars={"A": "1"})``."""

    def __init__(self, **fields: Any) -> None:
        super().__init__({k: v for k, v in fields.items() if v is not None})
        check(self)


class RuntimeEnvConfig(dict):
    """Setup options of a runtime environment (``setup_timeout_seconds``, ``eager_install``)."""

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True, **more: Any) -> None:
        super().__init__(setup_timeout_seconds=setup_timeout_seconds, eager_install=eager_install, **more)


def check(runtime_env: Any) -> dict[str, str]:
    """The environment variables ``runtime_env`` sets; raises for what ember cannot do."""
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
    for key in runtime_env:
        if key in RAY_ONLY:
            raise ValueError(
                f"runtime_env key {key!r} is not supported by ember yet (supported: "
                f"{', '.join(SUPPORTED)}); install packages with runtime_env pip, or on every node, or ship "
                "your own code with working_dir or py_modules")
        if key not in SUPPORTED:
            raise ValueError(f"runtime_env has no key {key!r}; keys ember supports: {', '.join(SUPPORTED)}")
    from ember._runtime_packages import parse

    parse(runtime_env)  # working_dir, py_modules, excludes, pip: raises for a bad one
    env = runtime_env.get("env_vars") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise TypeError("runtime_env['env_vars'] must be a dict of str to str, e.g. {'OMP_NUM_THREADS': '1'}")
    return dict(env)


JOB_ENV_VAR = "EMBER_JOB_ENV_VARS"  # set by the head for a submitted job's entrypoint
JOB_PIP_VAR = "EMBER_JOB_PIP"  # a submitted job's runtime_env pip, as JSON


def submitted_job_env() -> dict[str, str]:
    """The ``env_vars`` of the submitted job this process is the entrypoint of (none for
    other drivers), for every task and actor it starts."""
    raw = os.environ.get(JOB_ENV_VAR)
    if not raw:
        return {}
    try:
        env = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


def submitted_job_pip() -> Any:
    """The ``pip`` of the submitted job this process is the entrypoint of (None for other
    drivers), for every task and actor it starts."""
    raw = os.environ.get(JOB_PIP_VAR)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def effective(own: dict[str, str] | None) -> dict[str, str]:
    """The variables a task or actor submitted now runs with: the submitter's (the job's, or
    those of the task it runs in) overridden by its own."""
    rt = _context.current_runtime()
    inherited = getattr(rt, "env_vars", None) or {}
    if not own:
        return dict(inherited)
    return {**inherited, **own}


def _apply(env: dict[str, str]) -> dict[str, str | None]:
    if env.get(ALIAS_VAR) == "1":  # a task of an `ember run` job: its subprocesses get it too
        from ember._ray_alias import BOOT_DIR

        env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (BOOT_DIR, os.environ.get("PYTHONPATH")) if p)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    rt = _context.current_runtime()
    if rt is not None:
        rt.env_vars = dict(env)  # what tasks started from here inherit
    return saved


def _restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class EnvCall:
    """A task's function run with its environment variables set (and put back after: the
    worker runs other tasks next)."""

    def __init__(self, fn: Any, env: dict[str, str]) -> None:
        self.fn = fn
        self.env = env

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        rt = _context.current_runtime()
        inherited = getattr(rt, "env_vars", None)
        saved = _apply(self.env)
        alias = None
        if self.env.get(ALIAS_VAR) == "1":
            from ember._ray_alias import task_alias_on

            alias = task_alias_on()
        try:
            return self.fn(*args, **kwargs)
        finally:
            _restore(saved)
            if alias is not None:
                from ember._ray_alias import task_alias_off

                task_alias_off(alias)
            if rt is not None:
                rt.env_vars = inherited


class ActorEnv:
    """An actor class whose process runs with environment variables set (for its lifetime)."""

    def __init__(self, cls: type, env: dict[str, str]) -> None:
        self.cls = cls
        self.env = env

    def apply(self) -> type:
        """Set the variables in this (the actor's) process; the class to instantiate."""
        _apply(self.env)
        if self.env.get(ALIAS_VAR) == "1":
            from ember._ray_alias import task_alias_on

            task_alias_on()  # for the actor's lifetime
        return self.cls
