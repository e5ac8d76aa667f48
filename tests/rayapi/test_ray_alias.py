"""``ember run`` runs an unmodified Ray program: ``ray`` resolves to ember in the driver, in
the cluster's workers and in the Python subprocesses the program starts; a real ``ray``
beside it is untouched outside ``ember run``; Ray names ember lacks raise
NotImplementedError when used, never ImportError/AttributeError."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.rayapi.helpers import output_lines, run_ray_program

PROGRAM = """
import multiprocessing
import subprocess
import sys

import ray
import ray.exceptions
from ray.util.state import list_actors


@ray.remote
def imports_ray_inside():
    import ray as again
    from ray.exceptions import RayTaskError
    return again.__name__, RayTaskError.__module__


@ray.remote
def fails():
    raise KeyError("boom")


def child(q):
    import ray
    q.put(ray.__name__)


if __name__ == "__main__":
    print("driver", ray.__name__, ray.exceptions.RayTaskError.__module__)
    ray.init(num_cpus=2)
    print("task", *ray.get(imports_ray_inside.remote()))
    try:
        ray.get(fails.remote())
    except ray.exceptions.RayTaskError as e:
        print("error", type(e).__name__, isinstance(e, KeyError))
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    print("multiprocessing", q.get(timeout=60))
    p.join()
    out = subprocess.check_output([sys.executable, "-c", "import ray; print(ray.__name__)"], text=True)
    print("subprocess", out.strip())
    print("argv", *sys.argv[1:])
    ray.shutdown()
"""


@pytest.mark.parametrize("via", ["cli", "module"])
def test_ray_program_runs_unchanged(tmp_path, via):
    lines = output_lines(run_ray_program(tmp_path, PROGRAM, "one", "--two", via=via))
    assert "driver ember ember.exceptions" in lines
    assert "task ember ember.exceptions" in lines
    assert "error RayTaskError(KeyError) True" in lines
    assert "multiprocessing ember" in lines
    assert "subprocess ember" in lines
    assert "argv one --two" in lines


def test_exit_status_and_traceback_are_the_programs(tmp_path):
    proc = run_ray_program(tmp_path, "import sys\nimport ray\nprint('hi')\nsys.exit(3)\n")
    assert proc.returncode == 3 and proc.stdout == "hi\n"
    proc = run_ray_program(tmp_path, "import ray\nraise ValueError('bad input')\n")
    assert proc.returncode == 1 and "ValueError: bad input" in proc.stderr


FAKE_RAY = "NAME = 'the real ray'\n"


def test_a_real_ray_beside_ember_is_untouched_outside_ember_run(tmp_path):
    """A package named ray on the path (standing in for an installed Ray) is what ``import
    ray`` gives in plain Python, also with ember imported; under ``ember run`` it is hidden."""
    site = tmp_path / "site"
    (site / "ray").mkdir(parents=True)
    (site / "ray" / "__init__.py").write_text(FAKE_RAY)
    env = {"PYTHONPATH": str(site)}
    plain = subprocess.run(
        [sys.executable, "-c", "import ember, ray; print(ray.NAME)"],
        capture_output=True, text=True, timeout=60, env={**__import__("os").environ, **env},
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "the real ray"
    lines = output_lines(run_ray_program(tmp_path, "import ray\nprint(ray.__name__)\n", env=env))
    assert lines == ["ember"]


NOT_IMPLEMENTED = """
import ray
import ray.util.state
import ray.data
from ray.util.collective import allreduce
from ray.experimental import get_object_locations
from ray.train.torch import TorchTrainer
from ray.types import ObjectRef

def check(what, fn):
    try:
        fn()
    except NotImplementedError as e:
        print(what, "NotImplementedError", "ember" in str(e))

check("list_workers", lambda: ray.util.state.list_workers())
check("read_csv", lambda: ray.data.read_csv("x.csv"))
check("allreduce", lambda: allreduce(None))
check("get_object_locations", lambda: get_object_locations([]))
check("TorchTrainer", lambda: TorchTrainer(None))
check("java_function", lambda: ray.java_function("Cls", "f"))
from ray.util.placement_group import placement_group
import ray.util.placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
print("placement groups", placement_group is ray.util.placement_group, callable(NodeAffinitySchedulingStrategy))
print("util attributes", ray.util.queue.Queue.__name__, ray.util.multiprocessing.Pool.__name__)
def subclass():
    class Client(ray.util.state.StateApiClient):
        pass

check("subclass", subclass)
print("ObjectRef", ObjectRef is ray.ObjectRef)
try:
    import ray.not_a_ray_module
except ModuleNotFoundError as e:
    print("missing", e.name)
"""


def test_ray_names_ember_lacks_fail_when_used_not_on_import(tmp_path):
    lines = output_lines(run_ray_program(tmp_path, NOT_IMPLEMENTED))
    for what in ("list_workers", "read_csv", "allreduce", "get_object_locations", "TorchTrainer", "java_function",
                 "subclass"):
        assert f"{what} NotImplementedError True" in lines, lines
    assert "ObjectRef True" in lines
    assert "placement groups True True" in lines
    assert "util attributes Queue Pool" in lines
    assert "missing ray.not_a_ray_module" in lines


def test_ember_run_without_a_program_says_how_to_use_it():
    from tests.rayapi.helpers import ember_command

    proc = subprocess.run([ember_command(), "run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "usage: ember run script.py" in proc.stderr
    proc = subprocess.run([ember_command(), "run", "/nonexistent/prog.py"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "no such file" in proc.stderr
