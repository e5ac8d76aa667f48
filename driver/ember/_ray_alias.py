"""``ray`` as a name for ``ember`` (what ``ember run`` installs): a meta-path finder that
answers ``import ray`` and ``import ray.<sub>`` with ember's own module objects.

``ray`` *is* the ``ember`` module (and ``ray.util.queue`` is ``ember.util.queue``), so
values and functions that cloudpickle ships by reference name ember's modules and load in any
worker. A Ray module ember does not implement imports as a placeholder package whose names
raise ``NotImplementedError`` when used; a name that is not a Ray module raises
``ModuleNotFoundError``. Nothing named ``ray`` is installed anywhere: a real Ray beside ember
is only hidden in processes that installed this finder, while EMBER_RAY_ALIAS=1 is set.

Workers of a cluster the program did not start (``ember run`` against ``EMBER_ADDRESS``) get
the alias per task: ``ember run``'s driver adds EMBER_RAY_ALIAS to its job's runtime_env
env_vars, and the worker turns the alias on for the task's duration (``task_alias_on``/
``task_alias_off``), so other jobs' tasks on the same worker see ``ray`` as before.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any

from ember._unsupported import stub_module

ENV_VAR = "EMBER_RAY_ALIAS"
BOOT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_alias_boot")

# Ray modules (and packages: everything under them counts too) that ember does not provide:
# they import as placeholders. Names relative to ``ray``.
RAY_ONLY_MODULES = frozenset({
    "air", "autoscaler", "client_builder", "cluster_utils", "cross_language", "dag", "dashboard",
    "data", "experimental", "job_config", "llm", "rllib",
    "serve", "train", "tune", "widgets", "workflow",
    "util.accelerators", "util.annotations", "util.check_serialize", "util.client",
    "util.collective", "util.dask", "util.debug", "util.iter", "util.joblib",
    "util.rpdb", "util.serialization",
    "util.spark", "util.state", "util.tracing",
})


def _ray_only(rel: str) -> bool:
    parts = rel.split(".")
    return any(".".join(parts[:i]) in RAY_ONLY_MODULES for i in range(1, len(parts) + 1))


def resolve(ray_name: str) -> types.ModuleType:
    """The module that ``import <ray_name>`` gives under the alias (importing it if needed)."""
    if ray_name == "ray":
        return importlib.import_module("ember")
    rel = ray_name[len("ray."):]
    target = "ember." + rel
    if target in sys.modules:
        return sys.modules[target]
    try:
        spec = importlib.util.find_spec(target)
    except ModuleNotFoundError:
        spec = None
    if spec is not None:
        return importlib.import_module(target)
    if _ray_only(rel):
        mod = stub_module(target, ray_name)
        sys.modules[target] = mod
        parent, _, child = target.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, mod)
        return mod
    raise ModuleNotFoundError(
        f"No module named {ray_name!r}: Ray has no such module either (ember maps ray.* to ember.*)",
        name=ray_name,
    )


class _Loader(importlib.abc.Loader):
    def __init__(self, ray_name: str = "") -> None:
        self.ray_name = ray_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return resolve(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        # already executed under its ember name
        if self.ray_name and hasattr(module, "__path__"):
            _alias_shadowed_submodules(self.ray_name, module)


def _alias_shadowed_submodules(ray_name: str, package: types.ModuleType) -> None:
    """A submodule whose name the package binds to something else (``ember.util.placement_group``
    is the function, as ``ray.util.placement_group`` is in Ray) is entered under its ``ray``
    name now: importing it later finds it loaded and leaves the package's attribute alone."""
    prefix = package.__name__ + "."
    for name, sub in list(sys.modules.items()):
        child = name[len(prefix):]
        if name.startswith(prefix) and "." not in child:
            attr = getattr(package, child, None)
            if attr is not None and attr is not sub:
                sys.modules.setdefault(f"{ray_name}.{child}", sub)


class RayAliasFinder(importlib.abc.MetaPathFinder):
    """Answers every ``ray`` and ``ray.*`` import with ember (see the module docstring)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "ray" and not fullname.startswith("ray."):
            return None
        if os.environ.get(ENV_VAR) != "1":  # (a worker between tasks of an ember run job)
            return None
        module = resolve(fullname)  # raises ModuleNotFoundError for a name Ray lacks too
        spec = importlib.machinery.ModuleSpec(fullname, _Loader(fullname), is_package=hasattr(module, "__path__"))
        return spec


def install() -> None:
    """Make ``ray`` mean ``ember`` in this process (idempotent). A ``ray`` imported earlier
    (a real Ray) is left as it is: the alias only affects imports from now on."""
    if not any(isinstance(f, RayAliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, RayAliasFinder())


def _ray_modules() -> list[str]:
    return [name for name in list(sys.modules) if name == "ray" or name.startswith("ray.")]


def _is_ember(module: Any) -> bool:
    name = getattr(module, "__name__", "") or ""
    return name == "ember" or name.startswith("ember.")


def task_alias_on() -> dict[str, Any]:
    """Turn the alias on in a worker for one task (the caller has set EMBER_RAY_ALIAS): a real
    ``ray`` imported by an earlier task is set aside. Returns what task_alias_off puts back."""
    install()
    saved = {}
    if "ray" in sys.modules:
        for name in _ray_modules():
            if not _is_ember(sys.modules[name]):
                saved[name] = sys.modules.pop(name)
    return saved


def task_alias_off(saved: dict[str, Any]) -> None:
    """Undo task_alias_on: later tasks import ``ray`` as they would without the alias."""
    if "ray" in sys.modules:
        for name in _ray_modules():
            if _is_ember(sys.modules[name]):
                del sys.modules[name]
    sys.modules.update(saved)


def child_environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus what makes every Python process started with it install the alias at
    start-up (the boot directory's ``sitecustomize`` on PYTHONPATH, and the flag)."""
    out = dict(env)
    out[ENV_VAR] = "1"
    paths = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOT_DIR]
    out["PYTHONPATH"] = os.pathsep.join([BOOT_DIR, *paths])
    return out
