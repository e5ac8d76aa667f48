"""An agent's session directory, made private before use (ember._local_cluster.end_session
crash its ``logs`` stay)."""

from __future__ import annotations

import os

from ember._private_dir import ensure_dir


def prepare_session_dir(session_dir: str) -> None:
    """Create ``session_dir`` (mode 0700) and its ``logs``; one of ours that others may enter
    is made 0700, another user's is refused (``UnsafePathError``)."""
    parent = os.path.dirname(os.path.abspath(session_dir))
    os.makedirs(parent, exist_ok=True)
    ensure_dir(session_dir, tighten=True)
    ensure_dir(os.path.join(session_dir, "logs"), tighten=True)
