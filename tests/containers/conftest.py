"""Fixtures for the container tier (issue 6): ember's image run by a real Docker engine.

``image``   session-scoped: the image's name (``ember:test``, or ``$EMBER_IMAGE``), built or
            reused by ``tools/containers/build_image.py`` (engine, debootstrap base image,
            wheelhouse, offline ``docker build``). Skips the tier, with the tool's reason, where
            Docker cannot run (not root and no daemon, no docker.io package, dockerd does not
            start). The image is kept afterwards: the next run reuses it (the tool removes
            the image a rebuild replaces); the base image and its cache file are kept too.
``docker``  function-scoped ``Docker``: runs ``/usr/bin/docker`` and removes, by name, every
            container and network created through it when the test ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOL = ROOT / "tools" / "containers" / "build_image.py"
DOCKER = "/usr/bin/docker"  # Debian's client: the newer one on PATH may lack buildx
SKIP_STATUS = 77
LABEL = "dev.ember.test-run"


@pytest.fixture(scope="package")
def image() -> Iterator[str]:
    """The image, built or reused; a dockerd this tier had to start is stopped when the tier
    ends (no orphans, also for the other tiers' leak checks: its images stay on disk, so the
    next run starts it again and reuses them)."""
    name = os.environ.get("EMBER_IMAGE", "ember:test")
    try:
        yield _build(name)
    finally:
        # the engine stops only if the build tool started it and no other run (a second
        # suite side by side) still holds it
        subprocess.run([sys.executable, str(BUILD_TOOL), "--release", str(os.getpid())],
                       capture_output=True, timeout=60)


def _build(name: str) -> str:
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(BUILD_TOOL), "--image", name, "--hold", str(os.getpid())],
                          capture_output=True, text=True, timeout=570)
    if done.returncode == SKIP_STATUS:
        reason = next((line for line in done.stderr.splitlines() if line.startswith("SKIP:")),
                      done.stderr.strip()[-300:])
        pytest.skip(f"container tier: {reason.removeprefix('SKIP: ')}")
    if done.returncode != 0:
        pytest.fail(f"building {name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    print(f"image {name} ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return name


class Docker:
    """``/usr/bin/docker`` for one test; what it creates is removed by name afterwards."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.labels = {LABEL: self.run_id}
        self.containers: list[str] = []
        self.networks: list[str] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}{done.stderr}")
        return done.stdout.strip()

    def ok(self, *args: str, timeout: float = 30) -> bool:
        """True when ``docker *args`` exits 0."""
        return subprocess.run([DOCKER, *args], capture_output=True, timeout=timeout).returncode == 0

    def network(self, prefix: str = "ember-test") -> str:
        name = f"{prefix}-{self.run_id}"
        self("network", "create", "--label", f"{LABEL}={self.run_id}", name)
        self.networks.append(name)
        return name

    def run(self, args: list[str]) -> str:
        """``docker run`` (``args`` start with ``run``); the container is tracked by ``--name``."""
        assert args[0] == "run" and "--name" in args, args
        self.containers.append(args[args.index("--name") + 1])
        return self(*args)

    def logs(self, container: str, tail: int = 40) -> str:
        done = subprocess.run([DOCKER, "logs", "--tail", str(tail), container],
                              capture_output=True, text=True, timeout=30)
        return f"--- {container} ---\n{done.stdout}{done.stderr}"

    def all_logs(self) -> str:
        return "\n".join(self.logs(c) for c in self.containers)

    def cleanup(self) -> list[str]:
        """Remove this test's containers and networks; returns what could not be removed."""
        problems = []
        for name in reversed(self.containers):
            done = subprocess.run([DOCKER, "rm", "--force", "--volumes", name],
                                  capture_output=True, text=True, timeout=60)
            if done.returncode != 0 and "No such container" not in done.stderr:
                problems.append(f"container {name}: {done.stderr.strip()}")
        for name in self.networks:
            done = subprocess.run([DOCKER, "network", "rm", name], capture_output=True, text=True,
                                  timeout=60)
            if done.returncode != 0 and "not found" not in done.stderr:
                problems.append(f"network {name}: {done.stderr.strip()}")
        left = subprocess.run([DOCKER, "ps", "-aq", "--filter", f"label={LABEL}={self.run_id}"],
                              capture_output=True, text=True, timeout=30).stdout.split()
        if left:
            problems.append(f"containers left behind: {left}")
        return problems


@pytest.fixture
def docker(image):
    d = Docker()
    yield d
    problems = d.cleanup()
    assert not problems, problems
