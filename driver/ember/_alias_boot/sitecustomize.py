"""Run by Python's ``site`` at start-up in every process ``ember run`` starts (this directory
is first on PYTHONPATH): installs the ``ray`` -> ``ember`` alias when EMBER_RAY_ALIAS is set,
without importing ember until ``ray`` is imported, then runs the ``sitecustomize`` this one
shadows, if there is one."""

import importlib.abc
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


class _LazyRayAlias(importlib.abc.MetaPathFinder):
    """Stands in for ember._ray_alias.RayAliasFinder until ``ray`` is first imported."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "ray" and not fullname.startswith("ray."):
            return None
        from ember._ray_alias import RayAliasFinder

        finder = RayAliasFinder()
        sys.meta_path[:] = [finder if f is self else f for f in sys.meta_path]
        return finder.find_spec(fullname, path, target)


if os.environ.get("EMBER_RAY_ALIAS") == "1":
    sys.meta_path.insert(0, _LazyRayAlias())


def _chain() -> None:
    """Import the next ``sitecustomize`` on the path (a venv's or the distribution's)."""
    me = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    try:
        import sitecustomize  # noqa: F401
    except ImportError:
        sys.modules["sitecustomize"] = me
    finally:
        sys.path[:] = saved


_chain()
