"""``ember.experimental`` (Ray's ``ray.experimental``): ``tqdm_ray``, progress bars from tasks
drawn on the driver. Ray's other experimental names resolve, and raise NotImplementedError
naming themselves when used."""

from __future__ import annotations

import importlib
from typing import Any

from ember._unsupported import module_getattr

_SUBMODULES = frozenset({"tqdm_ray"})
_placeholder = module_getattr("ray.experimental", None)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"ember.experimental.{name}")
    return _placeholder(name)
