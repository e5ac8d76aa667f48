"""The agent's open-file limit: raised to the hard limit at start, since every connection,
worker pipe and spill file of the node takes a descriptor of the agent process."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("ember.agent")


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    if soft == resource.RLIM_INFINITY or (soft >= target and target != resource.RLIM_INFINITY):
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft, soft
    return soft, target


def open_file_limit() -> int:
    """The soft RLIMIT_NOFILE now in force."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
