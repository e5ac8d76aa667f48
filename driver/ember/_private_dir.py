"""Checks that a path ember trusts belongs to this user and nobody else can change it.

Another local user who could create ember's state directory (or a record, socket or session
directory in it) before us could point our drivers at their own agent, which answers with
pickles. So every such path is checked with ``lstat`` (a symlink is refused, not followed)
before use: owned by our effective uid, and for directories no group or world access.
"""

from __future__ import annotations

import os
import stat


class UnsafePathError(PermissionError):
    """A path ember would trust is owned by someone else or open to other users."""


def problem(st: os.stat_result, kind: str, uid: int | None = None) -> str | None:
    """Why a path with status ``st`` is not safe to trust as ``kind`` ("dir", "file" or
    "socket"), or None. Pure: no I/O."""
    uid = os.geteuid() if uid is None else uid
    mode = st.st_mode
    want = {"dir": stat.S_ISDIR, "file": stat.S_ISREG, "socket": stat.S_ISSOCK}[kind]
    if stat.S_ISLNK(mode):
        return "it is a symbolic link"
    if not want(mode):
        return f"it is not a {'directory' if kind == 'dir' else kind}"
    if st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by you (uid {uid})"
    loose = mode & (0o077 if kind == "dir" else 0o022)
    if loose:
        return f"its mode {stat.S_IMODE(mode):04o} lets other users {'in' if kind == 'dir' else 'change it'}"
    return None


def check(path: str, kind: str) -> None:
    """Raise ``UnsafePathError`` (naming the problem and the fix) unless ``path`` is safe."""
    reason = problem(os.lstat(path), kind)
    if reason is not None:
        fix = (f"remove it (rm -rf {path}) if you did not make it, or set XDG_RUNTIME_DIR or TMPDIR to a "
               f"directory only you can write" if kind == "dir" else f"remove {path}")
        raise UnsafePathError(f"refusing to use {path}: {reason}; another local user could use it to "
                              f"take over your ember clusters. {fix}")


def ensure_dir(path: str, tighten: bool = False) -> str:
    """Create ``path`` with mode 0700 if it is missing, then ``check`` it; returns it.

    ``tighten``: a directory of ours that others may enter (one named on a command line, made
    with the default umask) is made 0700 instead of refused; another user's is still refused."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if tighten:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
                os.chmod(path, 0o700)
    check(path, "dir")
    return path
