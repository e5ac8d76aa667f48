"""runtime_env ``pip`` for tasks, actors and ``init``, as Ray documents it: the packages are
installed on the node into a virtualenv made once per set of requirements (cached under
``EMBER_RUNTIME_ENV_DIR``, here the test's temporary directory), the task imports them, work
without that runtime_env does not see them, and a requirement pip cannot install fails the
task with ``RuntimeEnvSetupError`` carrying pip's output. The package is a wheel the test
builds itself; pip never reaches the network (a local wheel file, ``--no-index``). A real
embedded cluster."""

from __future__ import annotations

import os
import sys

import ember
import pytest
from ember.exceptions import RayActorError, RuntimeEnvSetupError

from tests.rayapi.helpers import build_wheel, output_lines, run_ray_program

T = 120  # the first task of a new environment waits for the venv and pip


@pytest.fixture
def env_dir(tmp_path, monkeypatch):
    """The node's pip environment cache, inside the test's temporary directory."""
    path = tmp_path / "envs"
    monkeypatch.setenv("EMBER_RUNTIME_ENV_DIR", str(path))
    return path


def _venvs(env_dir) -> list[str]:
    return sorted(p.name for p in env_dir.iterdir() if p.is_dir()) if env_dir.exists() else []


@ember.remote
def value_of(module: str):
    import importlib

    return importlib.import_module(module).VALUE


@ember.remote
def venv_on_path(env_dir: str) -> bool:
    return any(p.startswith(env_dir) for p in sys.path)


@ember.remote
class Reader:
    def value(self):
        import tinyember_pkg

        return tinyember_pkg.VALUE


def test_tasks_and_actors_import_what_pip_installed(new_cluster, tmp_path, env_dir):
    wheel = build_wheel(tmp_path)
    new_cluster(num_cpus=2)
    env = {"pip": [wheel]}
    assert ember.get([value_of.options(runtime_env=env).remote("tinyember_pkg") for _ in range(4)],
                     timeout=T) == [42] * 4
    actor = Reader.options(runtime_env=env).remote()
    assert ember.get(actor.value.remote(), timeout=T) == 42
    assert len(_venvs(env_dir)) == 1  # made once, for every worker that asked
    assert ember.get(venv_on_path.options(runtime_env=env).remote(str(env_dir)), timeout=T) is True
    # work without the runtime_env does not have the venv on its path (workers are reused)
    assert ember.get([venv_on_path.remote(str(env_dir)) for _ in range(4)], timeout=T) == [False] * 4
    req = tmp_path / "requirements.txt"
    req.write_text(f"# the same package, from a file\n{wheel}\n")
    assert ember.get(value_of.options(runtime_env={"pip": str(req)}).remote("tinyember_pkg"), timeout=T) == 42
    assert len(_venvs(env_dir)) == 1  # the same requirements: the same venv
    ember.kill(actor)


def test_the_job_pip_env_reaches_every_task(new_cluster, tmp_path, env_dir):
    wheel = build_wheel(tmp_path, "tinyember_job", 7)
    new_cluster(num_cpus=1, runtime_env={"pip": {"packages": [wheel], "pip_install_options": ["--no-index"]}})
    assert ember.get(value_of.remote("tinyember_job"), timeout=T) == 7
    assert ember.get_runtime_context().runtime_env["pip"]["packages"] == [wheel]


def test_a_requirement_pip_cannot_install_fails_the_task_with_pip_output(new_cluster, tmp_path, env_dir):
    new_cluster(num_cpus=1)
    missing = str(tmp_path / "no_such_pkg-1.0-py3-none-any.whl")
    with pytest.raises(RuntimeEnvSetupError) as info:
        ember.get(value_of.options(runtime_env={"pip": [missing]}).remote("no_such_pkg"), timeout=T)
    assert "pip install" in str(info.value) and "no_such_pkg-1.0" in str(info.value)
    bad = {"pip": {"packages": ["ember-test-not-a-package==0.0.1"], "pip_install_options": ["--no-index"]}}
    with pytest.raises(RuntimeEnvSetupError) as info:
        ember.get(value_of.options(runtime_env=bad).remote("x"), timeout=T)
    assert "No matching distribution found for ember-test-not-a-package" in str(info.value)  # pip's own words
    # an actor whose packages cannot be installed is not created; its calls say why
    actor = Reader.options(runtime_env={"pip": [missing]}).remote()
    with pytest.raises(RayActorError, match="RuntimeEnvSetupError"):
        ember.get(actor.value.remote(), timeout=T)
    assert ember.get(venv_on_path.remote(str(env_dir)), timeout=T) is False  # the node still runs tasks
    assert not any(os.path.exists(os.path.join(env_dir, v, ".ember-ready")) for v in _venvs(env_dir))


def test_tasks_of_different_pip_envs_in_one_worker_see_their_own_version(new_cluster, tmp_path, env_dir):
    """One CPU, so one worker runs them all in turn: a module of the same name comes from the
    venv of the task that runs, not from the one a task before it imported."""
    one = build_wheel(tmp_path / "one", "tinyember_same", 1)
    two = build_wheel(tmp_path / "two", "tinyember_same", 2)
    new_cluster(num_cpus=1)
    got = [ember.get(value_of.options(runtime_env={"pip": [w]}).remote("tinyember_same"), timeout=T)
           for w in (one, two, one, two)]
    assert got == [1, 2, 1, 2]
    assert len(_venvs(env_dir)) == 2


PROGRAM = """
import sys
import ray
from ray.exceptions import RuntimeEnvSetupError

ray.init(num_cpus=1)

@ray.remote(runtime_env={"pip": [sys.argv[1]]})
def value():
    import tinyember_prog
    return tinyember_prog.VALUE

@ray.remote
class Holder:
    def value(self):
        import tinyember_prog
        return tinyember_prog.VALUE

print("task", ray.get(value.remote()))
h = Holder.options(runtime_env={"pip": [sys.argv[1]]}).remote()
print("actor", ray.get(h.value.remote()))
try:
    ray.get(value.options(runtime_env={"pip": [sys.argv[1] + ".missing"]}).remote())
except RuntimeEnvSetupError:
    print("setup error")
ray.shutdown()
"""


def test_a_ray_program_with_pip_runs_unchanged(tmp_path, env_dir):
    wheel = build_wheel(tmp_path, "tinyember_prog", 5)
    lines = output_lines(run_ray_program(tmp_path, PROGRAM, wheel, timeout=240))
    assert lines == ["task 5", "actor 5", "setup error"]
