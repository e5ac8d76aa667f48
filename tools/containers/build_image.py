"""Build ember's container image offline: Docker engine, debootstrap base image, wheelhouse, image.

    python tools/containers/build_image.py [--image ember:test] [--step engine|base|wheels|image|all]
    python tools/containers/build_image.py --stop-engine     stop the dockerd this tool started
    python tools/containers/build_image.py --hold PID ...   build, and record PID as a user of the engine
    python tools/containers/build_image.py --release PID    PID is done; stop the dockerd this tool
                                                            started once no live user remains

No image registry is reachable on these machines (see notes/containers.md), so:

1. engine: use a Docker daemon that answers; else (as root) install Debian's ``docker.io``
   (``apt-get update`` once if the install needs it) and start ``dockerd`` in the background,
   its PID recorded in ``/run/ember-containers/dockerd.pid``: one record per machine, since
   there is one daemon per machine whichever clone started it. Test runs hold the engine
   (``--hold``/``--release``, pid files under ``/run/ember-containers/users/``) so that two
   suites side by side never stop the daemon under each other: the last one out stops it.
   Debian's ``/usr/bin/docker`` (20.10) is the client used throughout: a newer client that may
   sit first on PATH lacks buildx.
2. base: ``ember-base:bookworm`` made once per machine with ``debootstrap --variant=minbase``
   (python3, python3-venv, ca-certificates) from the mirror apt already uses, and saved to
   ``.tools/containers/ember-base-bookworm.tar`` so a fresh daemon just ``docker load``s it.
3. wheels: the project wheel (``pip wheel --no-deps .``) and the cp311 manylinux wheels of its
   dependencies (with the ``operator`` extra: one image serves agents and the operator) in
   ``.tools/containers/wheelhouse/``; dependencies are downloaded again only when the list
   of requirements changes.
4. image: ``docker build --network none --build-arg BASE_IMAGE=ember-base:bookworm -t IMAGE .``

When Docker cannot run here (not root and no daemon, no docker.io package, daemon does not
start) it prints ``SKIP: <reason>`` on stderr and exits with status 77, so callers (the test
tier, make) can tell "cannot run here" from "broken".
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".tools" / "containers"
WHEELHOUSE = STATE / "wheelhouse"
SHARED = Path("/run/ember-containers")  # machine-wide: one Docker daemon per machine
DOCKERD_PID = SHARED / "dockerd.pid"
USERS = SHARED / "users"  # a file per process (its pid) that uses the engine
LOCK = SHARED / "lock"
DOCKERD_LOG = STATE / "dockerd.log"
DOCKER = "/usr/bin/docker"
DOCKER_SOCKET = "/var/run/docker.sock"
SKIP_STATUS = 77

DEFAULT_IMAGE = "ember:test"
DEFAULT_BASE = "ember-base:bookworm"
SUITE = "bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
# The platforms the image's Python (Debian bookworm: CPython 3.11, glibc 2.36) accepts.
PIP_TARGET = [
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
]
EXTRAS = ("operator",)


class Skip(Exception):
    """Docker cannot run on this machine; the message says why."""


def log(msg: str) -> None:
    print(f"[containers] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command, failing loudly with its output when it fails."""
    kw.setdefault("check", True)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"") if isinstance(exc.stdout, bytes) else ""
        tail = out[-3000:].decode(errors="replace") if out else ""
        raise SystemExit(
            f"[containers] failed ({exc.returncode}): {' '.join(cmd)}\n{tail}"
        ) from None


# --- 1. the engine ------------------------------------------------------------------------


def engine_answers(timeout: float = 2.0) -> bool:
    """True when a Docker API answers ``/_ping`` on the default Unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(DOCKER_SOCKET)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0] + b" "
    except OSError:
        return False


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(cmd, env=env, capture_output=True).returncode == 0:
        return
    log("apt-get install failed; running apt-get update once")
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
    done = subprocess.run(cmd, env=env, capture_output=True)
    if done.returncode != 0:
        raise Skip(
            f"cannot install {' '.join(packages)} with apt-get: "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}"
        )


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True)
    return done.returncode == 0 and b"install ok installed" in done.stdout


def ensure_engine() -> None:
    """Make sure Debian's docker client exists and a daemon answers (start one if needed)."""
    if os.path.exists(DOCKER) and engine_answers():
        return
    if os.geteuid() != 0:
        raise Skip(
            "Docker is not running and starting it needs root (install docker.io, run dockerd)"
        )
    if shutil.which("apt-get") is None and not os.path.exists(DOCKER):
        raise Skip("no apt-get to install Debian's docker.io, and no /usr/bin/docker")
    if not os.path.exists(DOCKER) or shutil.which("dockerd") is None:
        log("installing Debian's docker.io")
        _apt_install(["docker.io"])
    if engine_answers():
        return
    STATE.mkdir(parents=True, exist_ok=True)
    SHARED.mkdir(mode=0o700, parents=True, exist_ok=True)
    log("starting dockerd")
    with open(DOCKERD_LOG, "ab") as out:
        proc = subprocess.Popen(
            ["dockerd", "--log-level=warn"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    DOCKERD_PID.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if engine_answers(0.5):
            log(f"dockerd is up (pid {proc.pid}, recorded in {DOCKERD_PID})")
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = DOCKERD_LOG.read_text(errors="replace")[-1500:] if DOCKERD_LOG.exists() else ""
    if proc.poll() is None:
        proc.terminate()
    DOCKERD_PID.unlink(missing_ok=True)
    raise Skip(f"dockerd did not start (see {DOCKERD_LOG}):\n{tail}")


def stop_engine() -> None:
    """Stop the dockerd this tool started (by its recorded PID), if it still runs."""
    if not DOCKERD_PID.exists():
        log("no dockerd started by this tool is recorded")
        return
    pid = int(DOCKERD_PID.read_text().strip())
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            is_dockerd = b"dockerd" in f.read().split(b"\0")[0]
    except OSError:
        is_dockerd = False
    if is_dockerd:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
        log(f"stopped dockerd (pid {pid})")
    DOCKERD_PID.unlink(missing_ok=True)


@contextlib.contextmanager
def engine_lock() -> Iterator[None]:
    """Serialises starting, holding and stopping the engine between processes of this machine."""
    SHARED.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(LOCK, "a") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_users() -> list[int]:
    """The pids holding the engine that still run (records of dead ones are dropped)."""
    out = []
    for f in USERS.glob("*") if USERS.exists() else []:
        pid = int(f.name) if f.name.isdigit() else 0
        if pid and _alive(pid):
            out.append(pid)
        else:
            f.unlink(missing_ok=True)
    return sorted(out)


def hold(pid: int) -> None:
    """Record ``pid`` as a user of the engine (call with :func:`engine_lock` held)."""
    USERS.mkdir(mode=0o700, parents=True, exist_ok=True)
    (USERS / str(pid)).touch()


def release(pid: int) -> None:
    """``pid`` no longer uses the engine: stop the dockerd this tool started once nobody does."""
    with engine_lock():
        (USERS / str(pid)).unlink(missing_ok=True)
        others = live_users()
        if others:
            log(f"dockerd left running: still used by pid(s) {', '.join(map(str, others))}")
            return
        stop_engine()
        # the lock file itself stays (empty, in /run's tmpfs): removing it while another
        # process waits on it would let a third one lock a new file beside it
        with contextlib.suppress(OSError):
            USERS.rmdir()


def docker(*args: str, **kw) -> subprocess.CompletedProcess:
    return run([DOCKER, *args], **kw)


def image_exists(name: str) -> bool:
    return subprocess.run([DOCKER, "image", "inspect", name], capture_output=True).returncode == 0


# --- 2. the base image --------------------------------------------------------------------


def apt_mirror() -> str:
    """The Debian mirror apt already uses on this machine (deb822 or one-line sources)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if (
                uris
                and suites
                and SUITE in suites.group(1).split()
                and "security" not in uris.group(1)
            ):
                return uris.group(1)
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in line:
                uri = next(p for p in parts[1:] if not p.startswith("["))
                return uri
    return "http://deb.debian.org/debian"


def base_cache_file(base: str) -> Path:
    return STATE / (re.sub(r"[^A-Za-z0-9._-]", "-", base) + ".tar")


def ensure_base(base: str) -> None:
    """``base`` exists in the daemon: already there, loaded from the cache file, or built."""
    if image_exists(base):
        return
    cache = base_cache_file(base)
    if cache.exists():
        log(f"loading {base} from {cache.relative_to(ROOT)}")
        docker("load", "-i", str(cache), capture_output=True)
        if image_exists(base):
            return
    if os.geteuid() != 0:
        raise Skip(f"building the base image {base} with debootstrap needs root")
    if shutil.which("debootstrap") is None:
        log("installing debootstrap")
        _apt_install(["debootstrap"])
    STATE.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=STATE))
    mirror = apt_mirror()
    started = time.monotonic()
    log(f"debootstrap {SUITE} minbase from {mirror} (about a minute)")
    try:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            capture_output=True,
        )
        tar = subprocess.Popen(
            [
                "tar",
                "-C",
                str(rootfs),
                "--exclude=./var/cache/apt/archives/*.deb",
                "--exclude=./var/lib/apt/lists/*",
                "--exclude=./usr/share/doc/*",
                "--exclude=./usr/share/man/*",
                "--exclude=./usr/share/locale/*",
                "-c",
                ".",
            ],
            stdout=subprocess.PIPE,
        )
        docker(
            "import",
            "-c",
            "ENV LANG=C.UTF-8",
            "-c",
            'CMD ["/bin/bash"]',
            "-",
            base,
            stdin=tar.stdout,
            capture_output=True,
        )
        tar.stdout.close()
        if tar.wait() != 0:
            raise SystemExit("[containers] tar of the debootstrap rootfs failed")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    log(
        f"built {base} in {time.monotonic() - started:.0f} s; saving it to {cache.relative_to(ROOT)}"
    )
    tmp = cache.with_suffix(".tmp")
    docker("save", "-o", str(tmp), base)
    tmp.replace(cache)


# --- 3. the wheelhouse --------------------------------------------------------------------


def requirements() -> list[str]:
    """The project's runtime requirements plus the extras the image carries."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in EXTRAS:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def build_wheels(python: str) -> None:
    """Fill ``.tools/containers/wheelhouse/{deps,ember}`` for an offline ``docker build``."""
    deps, project = WHEELHOUSE / "deps", WHEELHOUSE / "ember"
    reqs = "\n".join(requirements()) + "\n"
    stamp_text = hashlib.sha256(json.dumps([reqs, PIP_TARGET]).encode()).hexdigest()
    stamp = deps / ".stamp"
    if not (stamp.exists() and stamp.read_text() == stamp_text):
        shutil.rmtree(deps, ignore_errors=True)
        deps.mkdir(parents=True)
        (deps / "requirements.txt").write_text(reqs)
        log("downloading the dependencies' cp311 manylinux wheels")
        run(
            [
                python,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--dest",
                str(deps),
                *PIP_TARGET,
                "-r",
                str(deps / "requirements.txt"),
            ],
            capture_output=True,
        )
        stamp.write_text(stamp_text)
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="ember-wheel-") as build_dir:
        # --no-build-isolation: the venv's setuptools builds it, no network needed
        run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                str(project),
                str(ROOT),
            ],
            capture_output=True,
            # a fixed zip timestamp: the same sources give the same wheel, so docker's
            # layer cache holds when nothing changed
            env={**os.environ, "TMPDIR": build_dir, "SOURCE_DATE_EPOCH": "315532800"},
        )
    wheels = list(project.glob("ember-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"[containers] expected one ember wheel in {project}, found {wheels}")


# --- 4. the image -------------------------------------------------------------------------


def image_id(name: str) -> str | None:
    done = subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Id}}", name], capture_output=True)
    return done.stdout.decode().strip() if done.returncode == 0 else None


def _build_stage_id(output: str) -> str | None:
    """The ID of the Dockerfile's ``build`` stage in a classic ``docker build`` log: the
    last `` ---> ID`` before the second ``FROM``."""
    last, froms = None, 0
    for line in output.splitlines():
        if re.match(r"Step \d+/\d+ : FROM ", line):
            froms += 1
            if froms == 2:
                return last
        found = re.match(r" ---> ([0-9a-f]{12,})$", line)
        if found:
            last = found.group(1)
    return None


def build_image(image: str, base: str) -> None:
    """``docker build`` offline (the classic builder: no buildx needed); the image it replaces
    is removed by ID when nothing else uses it."""
    started = time.monotonic()
    old = image_id(image)
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    done = docker(
        "build",
        "--network",
        "none",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        image,
        "-f",
        str(ROOT / "Dockerfile"),
        str(ROOT),
        capture_output=True,
        env=env,
    )
    new = image_id(image)
    stage_file = STATE / (re.sub(r"[^A-Za-z0-9._-]", "-", image) + ".build-stage")
    old_stage = stage_file.read_text().strip() if stage_file.exists() else None
    new_stage = _build_stage_id(done.stdout.decode(errors="replace"))
    if new_stage:
        stage_file.write_text(new_stage + "\n")
    # What this tool built before and the new build replaced: untagged now; `docker image rm`
    # refuses (and leaves alone) an image a container still uses.
    for stale in {old} - {new, None} | {old_stage} - {new_stage, None}:
        subprocess.run([DOCKER, "image", "rm", stale], capture_output=True)
    log(f"built {image} in {time.monotonic() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", default=os.environ.get("EMBER_IMAGE", DEFAULT_IMAGE))
    p.add_argument("--base", default=os.environ.get("EMBER_BASE_IMAGE", DEFAULT_BASE))
    p.add_argument("--python", default=sys.executable, help="Python whose pip builds the wheels")
    p.add_argument("--step", choices=["engine", "base", "wheels", "image", "all"], default="all")
    p.add_argument("--stop-engine", action="store_true", help="stop the dockerd this tool started")
    p.add_argument("--hold", type=int, metavar="PID", help="record PID as a user of the engine")
    p.add_argument("--release", type=int, metavar="PID",
                   help="PID is done with the engine; stop the dockerd this tool started if no one uses it")
    args = p.parse_args(argv)
    if args.stop_engine:
        with engine_lock():
            stop_engine()
        return 0
    if args.release:
        release(args.release)
        return 0
    started = time.monotonic()
    try:
        if args.step in ("engine", "base", "image", "all"):
            with engine_lock():  # one starter at a time; a holder is recorded before it is used
                ensure_engine()
                if args.hold:
                    hold(args.hold)
        if args.step in ("base", "image", "all"):
            ensure_base(args.base)
        if args.step in ("wheels", "image", "all"):
            build_wheels(args.python)
        if args.step in ("image", "all"):
            build_image(args.image, args.base)
    except Skip as exc:
        print(f"SKIP: {exc}", file=sys.stderr)
        return SKIP_STATUS
    log(f"{args.step}: done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
