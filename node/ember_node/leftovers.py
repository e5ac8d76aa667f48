"""Shared memory that agents killed with SIGKILL left behind in /dev/shm.

An arena stays resident until someone unlinks it. At start an agent removes every
``ember-*`` file of this user in /dev/shm that no live process has open or mapped: a live
agent keeps its arena's descriptor open, and every driver and worker maps it, so an arena
nobody holds belongs to a session that is gone.
"""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger("ember.agent")

SHM_DIR = "/dev/shm"
PREFIX = "ember-"


def held_paths(under: str, proc: str = "/proc") -> set[str]:
    """Paths below ``under`` that some process (that we may inspect) has open or mapped."""
    held: set[str] = set()
    prefix = under.rstrip("/") + "/"
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return held
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            fds = []
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                held.add(target)
        try:
            with open(f"{proc}/{pid}/maps", "rb") as f:
                for line in f:
                    if prefix.encode() in line:
                        parts = line.split(maxsplit=5)
                        if len(parts) == 6:
                            held.add(parts[5].strip().decode(errors="replace"))
        except OSError:
            continue
    return held


def sweep_stale_arenas(shm_dir: str = SHM_DIR, prefix: str = PREFIX) -> list[str]:
    """Unlink this user's ``prefix*`` files in ``shm_dir`` that no process holds; the removed paths."""
    try:
        names = [n for n in os.listdir(shm_dir) if n.startswith(prefix)]
    except OSError:
        return []
    if not names:
        return []
    uid = os.geteuid()
    candidates = []
    for name in names:
        path = os.path.join(shm_dir, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == uid:
            candidates.append(path)
    if not candidates:
        return []
    held = held_paths(shm_dir)
    removed = []
    for path in candidates:
        if path in held:
            continue
        try:
            os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    if removed:
        log.info("removed %d shared-memory arena(s) of ember sessions that are gone: %s",
                 len(removed), ", ".join(removed))
    return removed
