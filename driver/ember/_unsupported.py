"""Placeholders for Ray names ember does not implement: they import, and raise
``NotImplementedError`` naming the feature when used, never ``AttributeError``/``ImportError``.
"""

from __future__ import annotations

import types
from typing import Any, NoReturn


def _refuse(feature: str, use: str = "") -> NoReturn:
    raise NotImplementedError(
        f"{use}{feature} is not implemented by ember yet; the Ray API ember covers is listed in "
        "ember's README"
    )


class Unsupported:
    """A Ray name ember lacks: calling it, subclassing it or using its attributes raises
    ``NotImplementedError`` naming it (so the program fails where the feature is used)."""

    __slots__ = ("_feature",)

    def __init__(self, feature: str) -> None:
        self._feature = feature

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self._feature)

    def __getattr__(self, name: str) -> Unsupported:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Unsupported(f"{self._feature}.{name}")

    def __getitem__(self, item: Any) -> Unsupported:  # type hints such as ObjectRefGenerator[int]
        return self

    def __mro_entries__(self, bases: tuple) -> NoReturn:
        _refuse(self._feature, "subclassing: ")

    def __repr__(self) -> str:
        return f"<{self._feature}: not implemented by ember>"


def module_getattr(ray_module: str, names: frozenset[str] | None) -> Any:
    """A module ``__getattr__`` (PEP 562) answering the Ray names in ``names`` (every name when
    None) with an :class:`Unsupported` placeholder; other names raise AttributeError."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__") or (names is not None and name not in names):
            raise AttributeError(f"module {ray_module!r} has no attribute {name!r}")
        return Unsupported(f"{ray_module}.{name}")

    return __getattr__


class _StubModule(types.ModuleType):
    """A placeholder package; callable too, since Ray has functions named like their module
    (``ray.util.placement_group``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self.__ray_name__)


def stub_module(name: str, ray_name: str) -> types.ModuleType:
    """A package standing in for a Ray module ember lacks: every public name in it (and in
    its submodules) is an :class:`Unsupported` placeholder."""
    mod = _StubModule(name, f"Placeholder for {ray_name}, which ember does not implement.")
    mod.__ray_name__ = ray_name  # type: ignore[attr-defined]
    mod.__path__ = []  # a package, so that its submodules import too
    mod.__getattr__ = module_getattr(ray_name, None)  # type: ignore[attr-defined]
    mod.__ember_stub__ = True  # type: ignore[attr-defined]
    return mod
