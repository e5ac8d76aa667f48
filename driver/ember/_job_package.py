"""A job's working directory as a zip: packed by the submitter, unpacked on the head.

``excludes`` follow the shape of Ray's (gitignore-like) patterns: a pattern without a ``/``
matches a file or directory name at any depth (``*.log``, ``data``); one with a ``/`` is a
path from the top of the working directory (``/build``, ``tests/fixtures/*.bin``); a
trailing ``/`` matches directories only. An excluded directory is left out with everything
under it.
"""

from __future__ import annotations

import fnmatch
import io
import os
import stat
import zipfile
from collections.abc import Iterable

MAX_UPLOAD_BYTES = int(os.environ.get("EMBER_JOB_MAX_UPLOAD_BYTES", str(32 << 20)))


def size_text(n: int) -> str:
    """``n`` bytes for people: ``512 KiB``, ``32 MiB``."""
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


class WorkingDirTooLarge(ValueError):
    """The packed working directory is larger than a job may upload."""


def excluded(relpath: str, is_dir: bool, patterns: Iterable[str]) -> bool:
    """True when ``relpath`` (``/``-separated, relative to the working directory) matches one
    of ``patterns``. Pure: no I/O."""
    name = relpath.rsplit("/", 1)[-1]
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        if "/" in pattern:
            if fnmatch.fnmatchcase(relpath, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def files_to_pack(root: str, patterns: list[str]) -> list[tuple[str, str]]:
    """(absolute path, archive name) of every regular file under ``root`` not excluded;
    symbolic links to files are packed as the files they point to, to directories skipped."""
    out: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))
                             and not excluded(rel_dir + d, True, patterns))
        for fname in sorted(filenames):
            rel = rel_dir + fname
            path = os.path.join(dirpath, fname)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):
                    continue
            except OSError:
                continue  # a dangling link
            if not excluded(rel, False, patterns):
                out.append((path, rel))
    return out


def pack(root: str, excludes: list[str] | None = None, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The files of ``root`` (without ``excludes``) as a zip; raises ``WorkingDirTooLarge``
    naming the size, the limit and the largest files when it exceeds ``limit``."""
    if not os.path.isdir(root):
        raise ValueError(f"working_dir {root!r} is not a directory on this machine")
    files = files_to_pack(root, list(excludes or []))
    total = sum(os.path.getsize(p) for p, _ in files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, rel in files:
            zf.write(path, rel)
            if buf.tell() > limit:
                break
    size = buf.tell()
    if size > limit:
        largest = sorted(files, key=lambda f: -os.path.getsize(f[0]))[:3]
        names = ", ".join(f"{rel} ({os.path.getsize(p) >> 10} KiB)" for p, rel in largest)
        raise WorkingDirTooLarge(
            f"the working directory {root} packs to more than {size_text(limit)} ({size_text(total)} "
            f"before compression), the most a job may upload; its largest files: {names}. Leave "
            f"files out with runtime_env={{'excludes': [...]}} (or --runtime-env-json), or put large "
            f"data where the cluster's nodes can read it")
    return buf.getvalue()


def unpack(data: bytes, dest: str, limit: int = MAX_UPLOAD_BYTES) -> None:
    """Extract a zip made by ``pack`` into ``dest`` (which must exist); refuses names that
    would land outside ``dest`` and contents larger than 8 times ``limit`` unpacked."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > 8 * limit:
            raise ValueError(f"the uploaded working directory unpacks to more than {size_text(8 * limit)}; "
                             "refused")
        root = os.path.realpath(dest)
        for info in infos:
            target = os.path.realpath(os.path.join(root, info.filename))
            if os.path.isabs(info.filename) or not target.startswith(root + os.sep):
                raise ValueError(f"the uploaded working directory names a file outside it: {info.filename!r}")
        for info in infos:
            zf.extract(info, root)


JOB_ENV_KEYS = ("working_dir", "excludes", "env_vars", "config", "pip")


def split_runtime_env(runtime_env: dict | None) -> tuple[str | None, list[str], dict]:
    """A job's ``runtime_env`` as (local working directory, excludes, what the head keeps:
    ``env_vars``, ``config`` and ``pip``, a requirements file read here); raises
    ``ValueError`` for what a job cannot have. Pure, but for reading a requirements file."""
    env = dict(runtime_env or {})
    for key in env:
        if key not in JOB_ENV_KEYS:
            raise ValueError(f"a job's runtime_env key {key!r} is not supported by ember "
                             f"(supported: {', '.join(JOB_ENV_KEYS)})")
    if "pip" in env:
        from ember._runtime_pip import as_dict, parse_pip

        spec = parse_pip(env.pop("pip"))
        if spec is not None:
            env["pip"] = as_dict(spec)
    working_dir = env.pop("working_dir", None)
    if working_dir is not None:
        if not isinstance(working_dir, str) or "://" in working_dir:
            raise ValueError(f"runtime_env working_dir must be a local directory, got {working_dir!r} "
                             "(ember uploads it; remote URIs are not supported)")
    excludes = env.pop("excludes", None) or []
    if not isinstance(excludes, list) or not all(isinstance(p, str) for p in excludes):
        raise TypeError("runtime_env excludes must be a list of patterns, e.g. ['*.log', 'data/']")
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in env_vars.items()):
        raise TypeError("runtime_env env_vars must be a dict of str to str, e.g. {'OMP_NUM_THREADS': '1'}")
    return working_dir, excludes, env
