"""``runtime_env={"pip": ...}``: Python packages installed for a task or actor, on each node
where one runs.

The driver reads what is asked (``parse_pip``: a list of requirements, the path of a
requirements file, or ``{"packages": ..., "pip_check": ..., "pip_install_options": ...}``)
into a ``PipSpec``. A worker makes sure the environment exists on its node
(``ensure_env``): a virtualenv per hash of the sorted requirements (and of the Python running
the worker), under a per-user cache directory (``EMBER_RUNTIME_ENV_DIR``, default
``$XDG_CACHE_HOME/ember/runtime_env`` or ``~/.cache/ember/runtime_env``), created once per
node, under a file lock so that workers starting together do not race. The venv is made with
``--system-site-packages`` and a ``.pth`` file naming the worker's own site-packages, so ember
and what is installed beside it stay importable and are not installed again; pip then runs in
the venv with the node's own pip configuration (``pip.conf``, ``PIP_INDEX_URL``, ...). The
task imports from the venv's site-packages (``ember._runtime_packages`` puts it on
``sys.path``). A failed install raises ``RuntimeEnvSetupError`` with the tail of pip's output.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from typing import Any

from ember.exceptions import RuntimeEnvSetupError

DIR_VAR = "EMBER_RUNTIME_ENV_DIR"
READY = ".ember-ready"
DEFAULT_TIMEOUT_S = 600.0
TAIL_LINES = 40
PIP_KEYS = ("packages", "pip_check", "pip_install_options")
PARENT_PTH = "_ember_parent.pth"


@dataclass(frozen=True)
class PipSpec:
    """What to install: requirement lines (sorted), whether to run ``pip check`` after, and
    extra ``pip install`` options."""

    packages: tuple[str, ...]
    pip_check: bool = False
    install_options: tuple[str, ...] = ()
    timeout_s: float | None = None  # how long setting it up may take (not part of its name)

    def digest(self, interpreter: str = "") -> str:
        """The venv's name: a hash of what is installed and of the Python it is made for. Pure."""
        text = json.dumps([list(self.packages), self.pip_check, list(self.install_options), interpreter])
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def requirement_lines(text: str) -> list[str]:
    """The requirements of a requirements file's text: one a line, without blank lines and
    ``#`` comments. Pure."""
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def _read_requirements(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return requirement_lines(f.read())
    except OSError as exc:
        raise ValueError(f"runtime_env pip: cannot read requirements file {path!r} ({exc.strerror}); give a "
                         "list of requirements or the path of a requirements.txt on this machine") from None


def _absolute(requirement: str) -> str:
    """A relative path to a local wheel, archive or project (``./dist/x.whl``) made absolute:
    the workers that install it run elsewhere. Anything else is left as pip reads it."""
    looks_local = requirement.startswith(("./", "../")) or requirement.endswith((".whl", ".tar.gz", ".zip"))
    if looks_local and not os.path.isabs(requirement) and os.path.exists(requirement):
        return os.path.abspath(requirement)
    return requirement


def _packages(value: Any) -> list[str]:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        return _read_requirements(value)
    if isinstance(value, list | tuple) and all(isinstance(p, str | os.PathLike) for p in value):
        return [os.fspath(p).strip() for p in value if os.fspath(p).strip()]
    raise TypeError("runtime_env pip must be a list of requirements (['requests==2.31', ...]), the path of a "
                    "requirements.txt, or {'packages': [...], 'pip_check': False}")


def parse_pip(value: Any) -> PipSpec | None:
    """``runtime_env["pip"]`` as a ``PipSpec`` (None for an empty list); a requirements file
    is read here, on the driver. Raises ``TypeError``/``ValueError`` naming what is wrong."""
    if value is None:
        return None
    pip_check = False
    options: tuple[str, ...] = ()
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(PIP_KEYS))
        if unknown:
            raise ValueError(f"runtime_env pip has no key {unknown[0]!r} in ember (keys: {', '.join(PIP_KEYS)}); "
                             "pip_version is not supported: the node's own pip is used")
        if "packages" not in value:
            raise ValueError("runtime_env pip as a dict needs 'packages': {'packages': ['requests'], ...}")
        pip_check = bool(value.get("pip_check", False))
        raw_options = value.get("pip_install_options") or ()
        if not isinstance(raw_options, list | tuple) or not all(isinstance(o, str) for o in raw_options):
            raise TypeError("runtime_env pip_install_options must be a list of pip install options, "
                            "e.g. ['--no-cache-dir']")
        options = tuple(raw_options)
        value = value["packages"]
    packages = [_absolute(p) for p in _packages(value)]
    if not packages:
        return None
    return PipSpec(tuple(sorted(set(packages))), pip_check, options)


def as_dict(spec: PipSpec) -> dict[str, Any]:
    """``spec`` as the ``{"packages", "pip_check", "pip_install_options"}`` dict that
    ``parse_pip`` reads back (a submitted job's pip travels so). Pure."""
    return {"packages": list(spec.packages), "pip_check": spec.pip_check,
            "pip_install_options": list(spec.install_options)}


# ------------------------------------------------------------------ on the node (worker)
def cache_root() -> str:
    """Where this user's pip environments live on this node."""
    explicit = os.environ.get(DIR_VAR)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ember", "runtime_env")


def venv_site_packages(venv: str) -> str:
    """The site-packages directory of the venv at ``venv`` (made by this Python)."""
    return sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv})


def _tail(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-TAIL_LINES:])


def _run(cmd: list[str], what: str, timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        raise RuntimeEnvSetupError(f"runtime_env pip: {what} took more than {timeout:g} s (raise it with "
                                   f"runtime_env={{'config': {{'setup_timeout_seconds': ...}}}}); its output "
                                   f"ended with:\n{_tail(out)}") from None
    if proc.returncode != 0:
        raise RuntimeEnvSetupError(f"runtime_env pip: {what} failed (exit code {proc.returncode}); its output "
                                   f"ended with:\n{_tail(proc.stdout)}")


def _create(spec: PipSpec, venv: str, timeout: float) -> None:
    shutil.rmtree(venv, ignore_errors=True)  # a half-made one from a worker that died
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
         "creating the virtualenv", timeout)
    site_dir = venv_site_packages(venv)
    os.makedirs(site_dir, exist_ok=True)
    parents = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(p)]
    with open(os.path.join(site_dir, PARENT_PTH), "w") as f:
        f.write("".join(p + "\n" for p in parents))  # ember and its deps, and pip itself
    python = os.path.join(venv, "bin", "python")
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
          *spec.install_options, *spec.packages], "pip install " + " ".join(spec.packages), timeout)
    if spec.pip_check:
        _run([python, "-m", "pip", "check", "--disable-pip-version-check"], "pip check", timeout)
    with open(os.path.join(venv, READY), "w") as f:
        f.write(json.dumps(list(spec.packages)))


def import_paths(site_dir: str) -> list[str]:
    """The directories a task of the venv imports from: its site-packages, then the
    directories its packages' ``.pth`` files name (as ``site`` would add them; their
    ``import`` lines are not run)."""
    paths = [site_dir]
    try:
        names = sorted(n for n in os.listdir(site_dir) if n.endswith(".pth") and n != PARENT_PTH)
    except OSError:
        return paths
    for name in names:
        try:
            with open(os.path.join(site_dir, name), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue
            path = os.path.normpath(os.path.join(site_dir, line))
            if os.path.isdir(path) and path not in paths:
                paths.append(path)
    return paths


def ensure_env(spec: PipSpec, timeout: float | None = None) -> str:
    """The site-packages directory of ``spec``'s venv on this node, made now if it is not
    there yet (once: other workers wait on the lock). Raises ``RuntimeEnvSetupError``."""
    root = cache_root()
    venv = os.path.join(root, "pip-" + spec.digest(os.path.realpath(sys.executable)))
    if not os.path.exists(os.path.join(venv, READY)):
        os.makedirs(root, exist_ok=True)
        with open(venv + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not os.path.exists(os.path.join(venv, READY)):
                    _create(spec, venv, timeout or DEFAULT_TIMEOUT_S)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return venv_site_packages(venv)
