"""Memory pressure in a real memory cgroup (issue 11, part 6): a driver, its node agent and
the workers run in a cgroup limited to 1 GiB, and a task allocates far past the limit.

- With the memory monitor on (threshold 0.6 of the cgroup's limit), the monitor kills the
  task's worker before the kernel acts: the driver gets OutOfMemoryError naming the task, the
  cgroup's usage and the setting; the kernel's OOM killer never ran in the cgroup.
- With the monitor off, the kernel's OOM killer acts, and it takes the worker
  (oom_score_adj 1000), not the agent: the driver gets WorkerCrashedError and the cluster
  keeps working.

Needs root and a writable memory cgroup (v2 with the memory controller, or v1's ``memory``
hierarchy) under /sys/fs/cgroup; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from .helpers import wait_until

GiB = 1 << 30
CGROUP = Path("/sys/fs/cgroup")


class MemoryCgroup:
    """A memory cgroup made for one test (v2 or v1), removed afterwards."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @classmethod
    def create(cls, limit: int) -> MemoryCgroup:
        """A new cgroup under this process's own, limited to ``limit`` bytes; pytest.skip
        with the reason when none can be made here."""
        if os.geteuid() != 0:
            pytest.skip("making a memory cgroup needs root")
        own_v2 = own_v1 = None
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hid, controllers, path = line.split(":", 2)
            if hid == "0" and not controllers:
                own_v2 = path
            elif "memory" in controllers.split(","):
                own_v1 = path
        name = f"ember-test-{uuid.uuid4().hex[:8]}"
        errors = []
        if own_v2 is not None and (CGROUP / "cgroup.controllers").exists():
            parent = CGROUP / own_v2.lstrip("/")
            try:
                if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                    (parent / "cgroup.subtree_control").write_text("+memory")
                path = parent / name
                path.mkdir()
                group = cls(path, 2)
                try:
                    (path / "memory.max").write_text(str(limit))
                    if (path / "memory.swap.max").exists():
                        (path / "memory.swap.max").write_text("0")
                except OSError:
                    group.remove()
                    raise
                return group
            except OSError as exc:
                errors.append(f"cgroup v2 under {parent}: {exc}")
        if own_v1 is not None and (CGROUP / "memory").is_dir():
            parent = CGROUP / "memory" / own_v1.lstrip("/")
            try:
                path = parent / name
                path.mkdir()
                group = cls(path, 1)
                try:
                    (path / "memory.limit_in_bytes").write_text(str(limit))
                except OSError:
                    group.remove()
                    raise
                return group
            except OSError as exc:
                errors.append(f"cgroup v1 under {parent}: {exc}")
        pytest.skip("no memory cgroup can be made here: " + ("; ".join(errors) or "no memory controller"))

    def oom_kills(self) -> int:
        """How many times the kernel's OOM killer killed a process of this cgroup."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self) -> None:
        """Kill what is left in it (only processes this test started), then remove it."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not self.pids(), 30)
        wait_until(lambda: _rmdir(self.path), 30)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


@pytest.fixture
def cgroup():
    group = MemoryCgroup.create(1 * GiB)
    try:
        yield group
    finally:
        group.remove()


DRIVER = """
    import json
    import ember
    import ember.exceptions as exc
    import psutil

    ember.init(num_cpus=1, object_store_memory=64 << 20)
    agents = [p for p in psutil.Process().children() if "ember_node" in " ".join(p.cmdline())]

    @ember.remote(max_retries=0)
    def hog():
        import time
        chunks = []
        for _ in range(512):  # 4 GiB in 8 MiB steps, far past the cgroup's 1 GiB
            chunks.append(b"x" * (8 << 20))
            time.sleep(0.01)
        return len(chunks)

    @ember.remote
    def ping(i):
        return i

    out = {"agents": [a.pid for a in agents]}
    try:
        ember.get(hog.remote(), timeout=120)
        out["error"] = None
    except exc.RayError as e:
        out["error"] = type(e).__name__
        out["message"] = str(e)
    out["agent_alive"] = all(a.is_running() and a.status() != psutil.STATUS_ZOMBIE for a in agents)
    out["after"] = ember.get([ping.remote(i) for i in range(5)], timeout=60)
    ember.shutdown()
    print(json.dumps(out))
"""


def _run_in(group: MemoryCgroup, tmp_path: Path, env: dict[str, str]) -> dict:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    procs = group.path / "cgroup.procs"
    # the shell joins the cgroup, then becomes the driver; the agent and workers inherit it
    cmd = ["sh", "-c", f'echo $$ > "{procs}" && exec "$0" "$@"', sys.executable, str(script)]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                            env={**os.environ, **env})
    assert result.returncode == 0, f"driver failed\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"
    out = json.loads(result.stdout.splitlines()[-1])
    assert len(out["agents"]) == 1, out
    return out


def test_monitor_acts_before_the_kernel(cgroup, tmp_path):
    out = _run_in(cgroup, tmp_path, {"EMBER_MEMORY_USAGE_THRESHOLD": "0.6",
                                     "EMBER_MEMORY_MONITOR_REFRESH_MS": "50"})
    assert out["error"] == "OutOfMemoryError", out
    msg = out["message"]
    assert "task hog" in msg and f"from cgroup {cgroup.path}" in msg
    assert "of 1.0 GiB" in msg and "EMBER_MEMORY_USAGE_THRESHOLD=0.6" in msg
    assert out["agent_alive"] and out["after"] == list(range(5))
    assert cgroup.oom_kills() == 0, "the kernel's OOM killer ran before the monitor"


def test_kernel_takes_the_worker_not_the_agent(cgroup, tmp_path):
    out = _run_in(cgroup, tmp_path, {"EMBER_MEMORY_MONITOR_REFRESH_MS": "0"})
    assert out["error"] == "WorkerCrashedError", out
    assert "SIGKILL" in out["message"]
    assert out["agent_alive"] and out["after"] == list(range(5))
    assert cgroup.oom_kills() >= 1
