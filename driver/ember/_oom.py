"""Which of this machine's processes the kernel's out-of-memory killer takes first.

Linux kills the process with the highest badness: its memory use plus ``oom_score_adj``
(-1000 to 1000, in ``/proc/<pid>/oom_score_adj``). Workers, which run user code, raise theirs
to 1000, so that they go before the node agent (which keeps the cluster alive) and drivers,
which stay at 0 or below. Raising the value needs no privilege; lowering it below what a
privileged process set does, so the agent only lowers its own when it was started above 0.
"""

from __future__ import annotations

WORKER_OOM_SCORE_ADJ = 1000


def _path(pid: int | None) -> str:
    return f"/proc/{'self' if pid is None else pid}/oom_score_adj"


def oom_score_adj(pid: int | None = None) -> int | None:
    """The ``oom_score_adj`` of ``pid`` (this process when None), or None if unreadable."""
    try:
        with open(_path(pid)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def set_oom_score_adj(value: int) -> bool:
    """Set this process's ``oom_score_adj``; False when the kernel refuses (or has none)."""
    try:
        with open(_path(None), "w") as f:
            f.write(f"{value}\n")
        return True
    except OSError:
        return False


def make_worker_first() -> bool:
    """Called in each worker right after fork: the OOM killer takes workers first."""
    return set_oom_score_adj(WORKER_OOM_SCORE_ADJ)


def keep_agent_last() -> int | None:
    """Called by node agents at start: bring this process to 0 if it was started above
    (e.g. from a worker); returns the value it has afterwards."""
    current = oom_score_adj()
    if current is not None and current > 0 and set_oom_score_adj(0):
        current = 0
    return current
