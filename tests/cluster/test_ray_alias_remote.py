"""``ember run`` against a cluster it did not start (EMBER_ADDRESS): ``import ray`` inside
its tasks and actors, and in subprocesses they start, still resolves to ember; a later
driver that is not under ``ember run`` sees the ``ray`` the workers' path holds (a stand-in
for a real Ray installed beside ember), on the same workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from .helpers import start_head, wait_cluster

ALIAS_PROGRAM = """
import subprocess
import sys

import ray

ray.init()  # EMBER_ADDRESS / EMBER_TOKEN: the running cluster


@ray.remote
def inside():
    import ray as r
    from ray.util.queue import Queue  # noqa: F401
    out = subprocess.check_output([sys.executable, "-c", "import ray; print(ray.__name__)"], text=True)
    return r.__name__, out.strip()


@ray.remote
class Probe:
    def name(self):
        import ray as r
        return r.__name__


print("task", *ray.get(inside.remote()))
print("actor", ray.get(Probe.remote().name.remote()))
ray.shutdown()
"""

PLAIN_PROGRAM = """
import ember

ember.init()


@ember.remote
def inside():
    import ray
    return getattr(ray, "NAME", ray.__name__)


print("plain", *ember.get([inside.remote() for _ in range(3)]))
ember.shutdown()
"""


def _run(procs, args, env, cwd):
    proc = procs.spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=procs.env(env), cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        procs.kill_tree(proc.pid)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err[-5000:]}"
    return out.splitlines()


def test_ember_run_against_a_running_cluster(procs, tmp_short):
    site = tmp_short / "site"
    (site / "ray").mkdir(parents=True)
    (site / "ray" / "__init__.py").write_text("NAME = 'the real ray'\n")
    head = start_head(procs, tmp_short, num_cpus=1, env={"PYTHONPATH": str(site)})
    wait_cluster(head, alive_nodes=1, idle_workers=1)
    env = {"EMBER_ADDRESS": head.address, "EMBER_TOKEN": head.token, "PYTHONPATH": str(site)}
    (tmp_short / "alias.py").write_text(textwrap.dedent(ALIAS_PROGRAM))
    (tmp_short / "plain.py").write_text(textwrap.dedent(PLAIN_PROGRAM))
    ember = os.path.join(os.path.dirname(sys.executable), "ember")
    lines = _run(procs, [ember, "run", str(tmp_short / "alias.py")], env, tmp_short)
    assert lines == ["task ember ember", "actor ember"]
    lines = _run(procs, [sys.executable, str(tmp_short / "plain.py")], env, tmp_short)
    assert lines == ["plain the real ray the real ray the real ray"]
