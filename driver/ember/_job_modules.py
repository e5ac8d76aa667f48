"""A submitted job's own modules travel with its tasks: those loaded from the job's uploaded
working directory are pickled by value (cloudpickle's ``register_pickle_by_value``), since
the workers that run the tasks (on any node) do not have that directory on their path.

``install(working_dir)`` registers the modules already imported from it and, through a
finder at the front of ``sys.meta_path``, every one imported later.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types
from typing import Any

import cloudpickle

WORKING_DIR_VAR = "EMBER_JOB_WORKING_DIR"  # set by the head for an entrypoint with a working dir


def _inside(path: str | None, root: str) -> bool:
    return bool(path) and os.path.realpath(str(path)).startswith(root + os.sep)


def _register(module: types.ModuleType, root: str) -> None:
    if module.__name__ != "__main__" and _inside(getattr(module, "__file__", None), root):
        try:
            cloudpickle.register_pickle_by_value(module)
        except (ValueError, TypeError):
            pass


class _ByValueLoader(importlib.abc.Loader):
    """Runs the real loader, then registers the module."""

    def __init__(self, inner: Any, root: str) -> None:
        self.inner = inner
        self.root = root

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self.inner  # the module shows (and pickles) its own loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner
        self.inner.exec_module(module)
        _register(module, self.root)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class _ByValueFinder(importlib.abc.MetaPathFinder):
    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if _inside(spec.origin, self.root) and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _ByValueLoader(spec.loader, self.root)
            return spec
        return None


def install(working_dir: str) -> None:
    """Pickle the modules of ``working_dir`` by value from now on (idempotent)."""
    root = os.path.realpath(working_dir)
    if any(isinstance(f, _ByValueFinder) and f.root == root for f in sys.meta_path):
        return
    for module in list(sys.modules.values()):
        if isinstance(module, types.ModuleType):
            _register(module, root)
    sys.meta_path.insert(0, _ByValueFinder(root))
