"""Where user code created an object: the ``file:line`` of the first frame outside ember
of a ``put()`` or ``.remote()`` call, recorded with the object on the head for
``ember memory`` and ``ember.util.state.list_objects`` (``call_site``).

The site rides on the PUT, SEAL or SUBMIT message itself. Off by default, as in Ray: the
frame walk takes about 0.3 us, but with the longer message it adds, measured here in one
process, 0.7 us to a ``put()`` of ~17 us and 1.2 us to a ``.remote()`` of ~23 us (medians
of 8 runs, 2 cores), 4-5 % of the hot path. ``EMBER_RECORD_CALLSITE=1`` (or Ray's
``RAY_record_ref_creation_sites=1``) in a process's environment turns it on for the objects
that process makes; set it for ``ember start`` too, for the objects tasks make.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

_EMBER_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_OFF = ("0", "false", "no", "off")


def enabled(env: Mapping[str, str]) -> bool:
    """Whether call sites are recorded, from ``EMBER_RECORD_CALLSITE`` (default off), else
    Ray's ``RAY_record_ref_creation_sites``. Pure."""
    raw = env.get("EMBER_RECORD_CALLSITE", env.get("RAY_record_ref_creation_sites", "0"))
    return raw.strip().lower() not in (*_OFF, "")


_OURS: dict[str, bool] = {}  # file name -> inside the ember package
_NAMES: dict[str, str] = {}  # file name -> its base name


def call_site(skip: int = 1) -> str:
    """``file.py:LINE`` of the nearest caller outside the ember package ("" if none)."""
    f = sys._getframe(skip)
    ours = _OURS
    while f is not None:
        name = f.f_code.co_filename
        inside = ours.get(name)
        if inside is None:
            inside = ours[name] = name.startswith(_EMBER_DIR)
            _NAMES[name] = os.path.basename(name)
        if not inside:
            return f"{_NAMES[name]}:{f.f_lineno}"
        f = f.f_back
    return ""
