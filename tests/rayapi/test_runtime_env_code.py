"""runtime_env ``working_dir``, ``py_modules`` and ``excludes`` for ``init``, tasks and
actors, as Ray documents them: the code is shipped to the workers (which do not have these
directories on their path), tasks run with the working directory as their current directory
and importable, actors keep it for their lifetime, tasks started inside inherit it, and a
task's own runtime_env replaces the job's key by key. A real embedded cluster."""

from __future__ import annotations

import os
import sys
import zipfile

import ember
import pytest

T = 60


def _write(root, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


@pytest.fixture
def code(tmp_path):
    """A working directory (a module, a data file, a log file to exclude) and a package."""
    wd = _write(tmp_path / "project", {
        "only_here.py": "VALUE = 41\n",
        "data/input.txt": "hello\n",
        "logs/run.log": "noise\n",
        "defined_here.py": ("import ember\n\n@ember.remote\ndef remote_here(x):\n"
                            "    import only_here\n    return only_here.VALUE + x\n"),
    })
    pkg = _write(tmp_path / "libs", {"helpers/__init__.py": "def twice(x):\n    return 2 * x\n"})
    return wd, os.path.join(pkg, "helpers")


@ember.remote
def probe():
    import only_here

    return {"value": only_here.VALUE, "cwd": os.getcwd(), "data": open("data/input.txt").read().strip(),
            "log_shipped": os.path.exists("logs/run.log")}


@ember.remote
def context_env():
    return ember.get_runtime_context().runtime_env


@ember.remote
def nested():
    return ember.get(probe.remote(), timeout=60)


@ember.remote
def with_helpers(x):
    import helpers

    return helpers.twice(x)


@ember.remote
def streamed(n):
    import only_here

    for i in range(n):
        yield only_here.VALUE + i, os.path.exists("data/input.txt")


@ember.remote
class Keeper:
    def __init__(self):
        import only_here

        self.value = only_here.VALUE

    def where(self):
        return self.value, os.getcwd(), open("data/input.txt").read().strip()


def test_init_working_dir_ships_modules_and_files_to_every_task(new_cluster, code):
    wd, _ = code
    new_cluster(num_cpus=2, runtime_env={"working_dir": wd, "excludes": ["logs/"]})
    out = ember.get(probe.remote(), timeout=T)
    assert out["value"] == 41 and out["data"] == "hello"
    assert out["log_shipped"] is False, "an excluded file was shipped"
    assert out["cwd"] != wd and "runtime_resources" in out["cwd"], "the task ran in the driver's directory"
    assert ember.get(nested.remote(), timeout=T)["value"] == 41, "a nested task did not inherit the working_dir"
    assert [ember.get(r, timeout=T) for r in streamed.remote(2)] == [(41, True), (42, True)]
    reported = ember.get(context_env.remote(), timeout=T)
    assert reported["working_dir"].startswith("ember://") and reported["working_dir"].endswith(".zip")
    assert os.path.basename(out["cwd"]) in reported["working_dir"]  # named by its content hash
    assert ember.get_runtime_context().runtime_env["working_dir"] == reported["working_dir"]
    assert ember.get(Keeper.remote().where.remote(), timeout=T) == (41, out["cwd"], "hello")
    assert os.getcwd() != out["cwd"]  # the driver stays where it is


def test_task_and_actor_runtime_env_with_py_modules(new_cluster, code):
    wd, pkg = code
    new_cluster(num_cpus=2)
    with pytest.raises(ember.exceptions.RayTaskError):
        ember.get(probe.remote(), timeout=T)  # without a working_dir: no such module on the workers
    assert ember.get(with_helpers.options(runtime_env={"py_modules": [pkg]}).remote(4), timeout=T) == 8
    both = probe.options(runtime_env={"working_dir": wd, "py_modules": [pkg]})
    assert ember.get(both.remote(), timeout=T)["value"] == 41
    keeper = Keeper.options(runtime_env={"working_dir": wd}).remote()
    value, cwd, data = ember.get(keeper.where.remote(), timeout=T)
    assert (value, data) == (41, "hello") and "runtime_resources" in cwd
    assert ember.get(keeper.where.remote(), timeout=T)[1] == cwd  # kept for the actor's lifetime


def test_a_task_defined_in_a_working_dir_module(new_cluster, code):
    """The driver imports a module of its working directory (as a program run from it does);
    the function is pickled by reference and loads on the worker from the shipped copy."""
    wd, _ = code
    new_cluster(num_cpus=2, runtime_env={"working_dir": wd})
    sys.path.insert(0, wd)
    try:
        import defined_here

        assert ember.get(defined_here.remote_here.remote(1), timeout=T) == 42
    finally:
        sys.path.remove(wd)
        sys.modules.pop("defined_here", None)
        sys.modules.pop("only_here", None)


@ember.remote
def same_name():
    import utils

    return utils.WHO


def test_a_worker_switching_working_dirs_imports_each_ones_own_module(new_cluster, tmp_path):
    """One CPU: the same worker runs the tasks of both working directories in turn."""
    one = _write(tmp_path / "one", {"utils.py": "WHO = 'one'\n"})
    two = _write(tmp_path / "two", {"utils.py": "WHO = 'two'\n"})
    new_cluster(num_cpus=1)
    a = same_name.options(runtime_env={"working_dir": one})
    b = same_name.options(runtime_env={"working_dir": two})
    got = [ember.get(f.remote(), timeout=T) for f in (a, b, a, a, b)]
    assert got == ["one", "two", "one", "one", "two"]


def test_working_dir_as_a_zip_file(new_cluster, code, tmp_path):
    wd, _ = code
    archive = tmp_path / "project.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # a zipped folder: one directory at the top
        for dirpath, _, files in os.walk(wd):
            for name in files:
                full = os.path.join(dirpath, name)
                zf.write(full, os.path.join("project", os.path.relpath(full, wd)))
    new_cluster(num_cpus=2)
    out = ember.get(probe.options(runtime_env={"working_dir": str(archive)}).remote(), timeout=T)
    assert out["value"] == 41 and out["data"] == "hello"


def test_bad_code_paths_fail_with_the_path(new_cluster, tmp_path):
    new_cluster(num_cpus=1)
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError, match="nope.*not a directory"):
        probe.options(runtime_env={"working_dir": missing}).remote()
    with pytest.raises(ValueError, match="remote URI"):
        probe.options(runtime_env={"working_dir": "https://example.com/code.zip"})
    with pytest.raises(ValueError, match="'conda'"):
        probe.options(runtime_env={"working_dir": str(tmp_path), "conda": "env.yaml"})


PROGRAM = """
import os
import ray
import mylib  # next to the program: the driver has it, the workers get it from working_dir

ray.init(runtime_env={"working_dir": ".", "excludes": ["*.tmp"]})


@ray.remote
def scaled(x):
    return mylib.scale(x), open("table.csv").read().split(",")[1].strip(), os.path.exists("scratch.tmp")


@ray.remote
class Holder:
    def name(self):
        return mylib.NAME


print("task", ray.get(scaled.remote(3)))
print("actor", ray.get(Holder.options(name="holder").remote().name.remote()))
print("found", ray.get(ray.get_actor("holder").name.remote()))
print("namespace-is-anonymous", len(ray.get_runtime_context().namespace) == 36)
"""


def test_a_ray_program_ships_its_directory_under_ember_run(tmp_path):
    from tests.rayapi.helpers import output_lines, run_ray_program

    (tmp_path / "mylib.py").write_text("NAME = 'lib'\n\ndef scale(x):\n    return 10 * x\n")
    (tmp_path / "table.csv").write_text("a, b\n")
    (tmp_path / "scratch.tmp").write_text("not shipped\n")
    assert output_lines(run_ray_program(tmp_path, PROGRAM)) == [
        "task (30, 'b', False)", "actor lib", "found lib", "namespace-is-anonymous True"]
