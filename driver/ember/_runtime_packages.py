"""Code a ``runtime_env`` ships to the workers: ``working_dir`` (a local directory or zip
file) and ``py_modules`` (package directories, ``.py`` files, zip files or imported modules),
with ``excludes`` leaving files out; and ``pip`` (packages installed into a cached virtualenv
on each node, ``ember._runtime_pip``), whose site-packages the task imports from.

Each is packed into a zip once per driver (the first time a task, an actor or ``init`` uses
it), named by the SHA-256 of its bytes, and stored as an object in the cluster (``put``:
through the head's gRPC port for a remote driver, into the node's store otherwise), so any
node's worker can read it. A worker unpacks it once per node into
``<session dir>/runtime_resources/<hash>/`` and runs the task with its working directory as
the current directory and first on ``sys.path``, followed by the ``py_modules``; both are put
back after a task (workers are reused), and an actor keeps them for its lifetime.

The function or class is pickled inside the wrapper (``PackagedCall``, ``ActorPackages``)
and loaded only after the path is set, so code defined in modules of the working directory
works too.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import shutil
import sys
import types
import weakref
import zipfile
from dataclasses import dataclass
from typing import Any

from ember import _context
from ember._job_package import (
    MAX_UPLOAD_BYTES,
    WorkingDirTooLarge,
    files_to_pack,
    size_text,
    unpack,
)
from ember._runtime_pip import PipSpec, ensure_env, import_paths, parse_pip
from ember.runtime_env import ActorEnv

CACHE_DIR = "runtime_resources"


# ------------------------------------------------------------------ what a runtime_env asks for
@dataclass(frozen=True)
class PackageSpec:
    """The code-shipping part of a runtime_env, checked but not yet packed."""

    working_dir: str | None = None
    py_modules: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    pip: PipSpec | None = None


def _setup_timeout(runtime_env: dict) -> float | None:
    config = runtime_env.get("config") or {}
    value = config.get("setup_timeout_seconds") if isinstance(config, dict) else None
    if value is None or value == -1:  # Ray's -1: no timeout
        return None if value is None else 24 * 3600.0
    if not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"runtime_env config setup_timeout_seconds must be a positive number of seconds "
                         f"(or -1 for none), not {value!r}")
    return float(value)


def _local_path(value: Any, key: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"runtime_env {key} must be a local path, got {value!r}")
    if "://" in value:
        raise ValueError(f"runtime_env {key} {value!r} is a remote URI; ember ships local directories and "
                         "zip files only: download it first and give its local path")
    return value


def _module_path(module: Any) -> str:
    if isinstance(module, types.ModuleType):
        paths = list(getattr(module, "__path__", None) or [])
        if paths:
            return paths[0]  # a package: its directory
        file = getattr(module, "__file__", None)
        if not file:
            raise ValueError(f"runtime_env py_modules: module {module.__name__!r} has no file to ship")
        return file
    return _local_path(module, "py_modules entry")


def parse(runtime_env: dict | None) -> PackageSpec | None:
    """The ``working_dir``/``py_modules``/``excludes``/``pip`` of ``runtime_env`` (None when
    it has none); raises ``TypeError``/``ValueError`` naming what is wrong. Pure, but for
    reading a pip requirements file."""
    if not runtime_env:
        return None
    wd = runtime_env.get("working_dir")
    mods = runtime_env.get("py_modules")
    excludes = runtime_env.get("excludes")
    pip = parse_pip(runtime_env.get("pip"))
    if pip is not None:
        pip = PipSpec(pip.packages, pip.pip_check, pip.install_options, _setup_timeout(runtime_env))
    if wd is None and mods is None:
        if excludes:
            raise ValueError("runtime_env excludes applies to working_dir and py_modules; give one of them")
        return PackageSpec(pip=pip) if pip is not None else None
    working_dir = _local_path(wd, "working_dir") if wd is not None else None
    if mods is not None and not isinstance(mods, list | tuple):
        raise TypeError("runtime_env py_modules must be a list of directories, .py or .zip files, or modules")
    py_modules = tuple(_module_path(m) for m in mods or ())
    for path in py_modules:
        if path.endswith(".whl"):
            raise ValueError(f"runtime_env py_modules: wheel {path!r} is not supported by ember (it would need "
                             "pip); give the package's directory instead")
    if excludes is not None and (not isinstance(excludes, list | tuple)
                                 or not all(isinstance(p, str) for p in excludes)):
        raise TypeError("runtime_env excludes must be a list of patterns, e.g. ['*.log', 'data/']")
    return PackageSpec(working_dir, py_modules, tuple(excludes or ()), pip)


def top_dir(names: list[str]) -> str:
    """The single directory every entry of a zip lies in (``"proj"`` for ``proj/a.py``,
    ``proj/b/c.py``), else ``""``: a working_dir zip made by zipping a folder is used from
    inside that folder. Pure."""
    tops = {n.split("/", 1)[0] for n in names if n}
    if len(tops) != 1 or all("/" not in n for n in names):
        return ""
    return tops.pop()


# ------------------------------------------------------------------ packing (driver)
def _zip(entries: list[tuple[str, str]], what: str, limit: int) -> bytes:
    total = sum(os.path.getsize(p) for p, _ in entries)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, rel in entries:
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))  # same files, same hash
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (os.stat(path).st_mode & 0o777) << 16
            with open(path, "rb") as f:
                zf.writestr(info, f.read())
            if buf.tell() > limit:
                break
    if buf.tell() > limit:
        largest = sorted(entries, key=lambda e: -os.path.getsize(e[0]))[:3]
        names = ", ".join(f"{rel} ({os.path.getsize(p) >> 10} KiB)" for p, rel in largest)
        raise WorkingDirTooLarge(
            f"runtime_env {what} packs to more than {size_text(limit)} ({size_text(total)} before "
            f"compression), the most ember ships with tasks; its largest files: {names}. Leave files "
            f"out with runtime_env={{'excludes': [...]}}, or put large data where the nodes can read it")
    return buf.getvalue()


def pack_path(path: str, kind: str, excludes: tuple[str, ...], limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The zip that ships ``path``: a working directory's files at the top of the zip, a
    py_module package directory as ``<name>/...``, a ``.py`` file as itself; a ``.zip`` file
    is shipped as it is. Raises ``ValueError`` for a path that is not there or too large."""
    what = f"{kind} {path!r}"
    if os.path.isfile(path) and path.endswith(".zip"):
        size = os.path.getsize(path)
        if size > limit:
            raise WorkingDirTooLarge(f"runtime_env {what} is {size_text(size)}, more than the "
                                     f"{size_text(limit)} ember ships with tasks")
        with open(path, "rb") as f:
            data = f.read()
        try:
            zipfile.ZipFile(io.BytesIO(data)).testzip()
        except zipfile.BadZipFile:
            raise ValueError(f"runtime_env {what} is not a valid zip file") from None
        return data
    if os.path.isdir(path):
        entries = files_to_pack(path, list(excludes))
        if kind == "py_modules":
            name = os.path.basename(os.path.normpath(path))
            entries = [(p, f"{name}/{rel}") for p, rel in entries]
        return _zip(entries, what, limit)
    if kind == "py_modules" and os.path.isfile(path) and path.endswith(".py"):
        return _zip([(path, os.path.basename(path))], what, limit)
    raise ValueError(f"runtime_env {what} is not a directory{' or zip file' if kind == 'working_dir' else ', .py or .zip file'} "
                     "on this machine")


@dataclass(frozen=True)
class Package:
    """One shipped zip: its content hash and the object holding its bytes."""

    digest: str
    ref: Any  # ObjectRef
    nested_top: bool  # a working_dir zip with one folder at the top: used from inside it


@dataclass(frozen=True)
class PackageSet:
    """What a task or actor runs with, and what tasks started from it inherit."""

    working_dir: Package | None
    py_modules: tuple[Package, ...]
    pip: PipSpec | None = None

    def key(self) -> tuple:
        wd = self.working_dir.digest if self.working_dir else ""
        return (wd, *(p.digest for p in self.py_modules), self.pip.digest() if self.pip else "")


_uploaded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # runtime -> {(path, kind, excludes): Package}


def _upload(rt: Any, path: str, kind: str, excludes: tuple[str, ...]) -> Package:
    cache = _uploaded.setdefault(rt, {})
    key = (os.path.realpath(path), kind, excludes)
    pkg = cache.get(key)
    if pkg is None:
        data = pack_path(path, kind, excludes)
        digest = hashlib.sha256(data).hexdigest()
        for other in cache.values():  # the same bytes from another path: one object
            if other.digest == digest:
                pkg = other
                break
        else:
            from ember.api import put

            nested = kind == "working_dir" and path.endswith(".zip") and bool(
                top_dir(zipfile.ZipFile(io.BytesIO(data)).namelist()))
            pkg = Package(digest, put(data), nested)
        cache[key] = pkg
    return pkg


def merge(inherited: PackageSet | None, working_dir: Package | None,
          py_modules: tuple[Package, ...] | None, pip: PipSpec | None = None) -> PackageSet | None:
    """A task's packages: its own ``working_dir``/``py_modules``/``pip`` (None: not given)
    replace those it inherits (the job's, or those of the task it is started from), key by
    key. Pure."""
    wd = working_dir if working_dir is not None else (inherited.working_dir if inherited else None)
    mods = py_modules if py_modules is not None else (inherited.py_modules if inherited else ())
    pip = pip if pip is not None else (inherited.pip if inherited else None)
    if wd is None and not mods and pip is None:
        return None
    return PackageSet(wd, tuple(mods), pip)


def resolve(rt: Any, spec: PackageSpec | None) -> PackageSet | None:
    """``spec``'s paths packed and stored (each once per process), over what ``rt``'s job or
    current task inherits; None when there is nothing to ship."""
    inherited = getattr(rt, "inherited_packages", None)
    if spec is None:
        return inherited
    wd = _upload(rt, spec.working_dir, "working_dir", spec.excludes) if spec.working_dir else None
    mods = tuple(_upload(rt, p, "py_modules", spec.excludes) for p in spec.py_modules) if spec.py_modules else None
    return merge(inherited, wd, mods, spec.pip)


def describe(packages: PackageSet | None) -> dict[str, Any]:
    """``packages`` as the runtime context reports them: ``{"working_dir":
    "ember://<hash>.zip", "py_modules": [...]}`` (only what is set). Pure."""
    if packages is None:
        return {}
    out: dict[str, Any] = {}
    if packages.working_dir is not None:
        out["working_dir"] = f"ember://{packages.working_dir.digest}.zip"
    if packages.py_modules:
        out["py_modules"] = [f"ember://{p.digest}.zip" for p in packages.py_modules]
    if packages.pip is not None:
        out["pip"] = {"packages": list(packages.pip.packages), "pip_check": packages.pip.pip_check}
    return out


# ------------------------------------------------------------------ using (worker)
def set_job_packages(rt: Any, runtime_env: dict | None) -> None:
    """``init(runtime_env=...)``: pack and store the job's working_dir and py_modules now
    (a bad path fails ``init``), for every task and actor of the job."""
    rt.inherited_packages = resolve(rt, parse(runtime_env))


def materialize(pkg: Package, session_dir: str) -> str:
    """The directory ``pkg`` is unpacked in on this node (unpacked now if it is not yet)."""
    root = os.path.join(session_dir, CACHE_DIR)
    target = os.path.join(root, pkg.digest)
    if not os.path.isdir(target):
        from ember.api import get

        data = get(pkg.ref, timeout=300)
        os.makedirs(root, exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        unpack(bytes(data), tmp, limit=max(MAX_UPLOAD_BYTES, len(data)))
        try:
            os.rename(tmp, target)  # another worker may have been first: same bytes
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    if pkg.nested_top:
        names = os.listdir(target)
        if len(names) == 1:
            return os.path.join(target, names[0])
    return target


_imported_from: set[str] = set()  # package directories this worker process imported modules from


def _forget_modules_of_other_packages(keep: list[str]) -> None:
    """A worker runs tasks of several runtime_envs in turn: before a task of another one,
    drop the modules earlier ones imported from their packages, so that a module of the same
    name (``utils``) is imported from this task's package, not reused from another's."""
    stale = _imported_from - set(keep)
    if stale:
        prefixes = tuple(d + os.sep for d in stale)
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if isinstance(file, str) and file.startswith(prefixes):
                del sys.modules[name]
        _imported_from.difference_update(stale)
        importlib.invalidate_caches()
    _imported_from.update(keep)


def _enter(packages: PackageSet) -> tuple[str, PackageSet | None, list[str]]:
    """Unpack, chdir and extend sys.path; what ``_leave`` needs to put them back."""
    rt = _context.require_runtime()
    dirs = [materialize(p, rt.session.session_dir) for p in packages.py_modules]
    wd = materialize(packages.working_dir, rt.session.session_dir) if packages.working_dir else None
    site_dir = import_paths(ensure_env(packages.pip, packages.pip.timeout_s)) if packages.pip is not None else []
    cwd = os.getcwd()
    front = ([wd] if wd else []) + dirs + site_dir
    _forget_modules_of_other_packages(front)
    sys.path[:0] = front
    if wd:
        os.chdir(wd)
    saved = getattr(rt, "inherited_packages", None)
    rt.inherited_packages = packages  # what tasks started from here inherit
    return cwd, saved, front


def _leave(state: tuple) -> None:
    cwd, saved, front = state
    for path in front:
        try:
            sys.path.remove(path)
        except ValueError:
            pass
    try:
        os.chdir(cwd)
    except OSError:
        pass
    rt = _context.current_runtime()
    if rt is not None:
        rt.inherited_packages = saved


class PackagedCall:
    """A task's function run inside its runtime_env packages; the function is loaded after
    the path is set (it may live in a module of the working directory)."""

    def __init__(self, blob: bytes, packages: PackageSet) -> None:
        self.blob = blob
        self.packages = packages
        self.fn: Any = None

    def __getstate__(self) -> dict:
        return {"blob": self.blob, "packages": self.packages}

    def __setstate__(self, state: dict) -> None:
        self.blob = state["blob"]
        self.packages = state["packages"]
        self.fn = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = _enter(self.packages)
        value = None
        try:
            if self.fn is None:
                from ember._serialization import loads_function

                self.fn = loads_function(self.blob)
            value = self.fn(*args, **kwargs)
            return _inside(value, self.packages) if isinstance(value, types.GeneratorType | types.AsyncGeneratorType) else value
        finally:
            _leave(state)


def _inside(gen: Any, packages: PackageSet) -> Any:
    """A generator task's generator, run inside the packages while it yields (the worker
    runs its body after the call returned)."""
    if isinstance(gen, types.AsyncGeneratorType):
        async def agen() -> Any:
            state = _enter(packages)
            try:
                async for item in gen:
                    yield item
            finally:
                _leave(state)

        return agen()

    def sgen() -> Any:
        state = _enter(packages)
        try:
            yield from gen
        finally:
            _leave(state)

    return sgen()


class ActorPackages(ActorEnv):
    """An actor class whose process runs inside its runtime_env packages (for its lifetime),
    with its environment variables set."""

    def __init__(self, blob: bytes, packages: PackageSet, env: dict[str, str]) -> None:
        super().__init__(None, env)  # type: ignore[arg-type] - the class is loaded in apply()
        self.blob = blob
        self.packages = packages

    def apply(self) -> type:
        """Unpack and enter the packages, set the variables; the class to instantiate."""
        _enter(self.packages)
        from ember._serialization import loads_function

        self.cls = loads_function(self.blob)
        if self.env:
            return super().apply()
        return self.cls


def dumps_packaged(fn: Any, packages: PackageSet) -> tuple[bytes, list[bytes]]:
    """``fn`` (with its environment variables and call limit already wrapped around it)
    pickled inside a ``PackagedCall``: (blob, the refs it holds) as ``dumps_function``."""
    from ember._serialization import dumps_function

    inner, inner_refs = dumps_function(fn)
    blob, refs = dumps_function(PackagedCall(inner, packages))
    return blob, [*refs, *inner_refs]


def dumps_packaged_class(cls: type, packages: PackageSet, env: dict[str, str]) -> tuple[bytes, list[bytes]]:
    """An actor class pickled inside an ``ActorPackages``, as ``dumps_packaged``."""
    from ember._serialization import dumps_function

    inner, inner_refs = dumps_function(cls)
    blob, refs = dumps_function(ActorPackages(inner, packages, env))
    return blob, [*refs, *inner_refs]
