"""Where user code created an object: the ``file:line`` of the first frame outside ember
of a ``put()`` or ``.remote()`` call, recorded with the object on the head for
``ember memory`` and ``ember.util.state.list_objects`` (``call_site``).

Recording costs a walk up a few frames per call; it is on unless ``EMBER_RECORD_CALLSITE``
is ``0`` (or ``false``/``no``/``off``). Ray's ``RAY_record_ref_creation_sites`` is read too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

_EMBER_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_OFF = ("0", "false", "no", "off")


def enabled(env: Mapping[str, str]) -> bool:
    """Whether call sites are recorded, from ``EMBER_RECORD_CALLSITE`` (default on), else
    Ray's ``RAY_record_ref_creation_sites``. Pure."""
    raw = env.get("EMBER_RECORD_CALLSITE", env.get("RAY_record_ref_creation_sites", "1"))
    return raw.strip().lower() not in _OFF


def call_site(skip: int = 1) -> str:
    """``file.py:LINE`` of the nearest caller outside the ember package ("" if none)."""
    f = sys._getframe(skip)
    while f is not None and f.f_code.co_filename.startswith(_EMBER_DIR):
        f = f.f_back
    if f is None:
        return ""
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
