"""Pure parts of the Ray API work (no process started): the memory resource a node
advertises, which ray.* names are Ray modules ember lacks, the environment ember run gives
its children, the runtime_env check, and the DAG's input selection."""

from __future__ import annotations

import os

import pytest
from ember import runtime_env
from ember._ray_alias import BOOT_DIR, ENV_VAR, _ray_only, child_environment
from ember.dag import InputNode, _Execution
from ember_node.store import task_memory

GiB = 1 << 30


def test_task_memory_is_available_less_the_store():
    assert task_memory(10 * GiB, 2 * GiB) == 8 * GiB
    # a store larger than Ray's share of what is free counts for that share only
    assert task_memory(4 * GiB, 8 * GiB) == 4 * GiB - int(4 * GiB * 0.3)
    assert task_memory(0, GiB) == 0


def test_ray_only_modules_cover_their_submodules():
    assert _ray_only("data") and _ray_only("train.torch") and _ray_only("util.state.api")
    assert not _ray_only("util") and not _ray_only("util.queue") and not _ray_only("nonexistent")


def test_child_environment_puts_the_boot_dir_first_once():
    env = child_environment({"PYTHONPATH": f"/a{os.pathsep}{BOOT_DIR}{os.pathsep}/b", "X": "1"})
    assert env[ENV_VAR] == "1" and env["X"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep) == [BOOT_DIR, "/a", "/b"]
    assert child_environment({})["PYTHONPATH"] == BOOT_DIR


def test_runtime_env_check():
    assert runtime_env.check(None) == {}
    assert runtime_env.check({"env_vars": {"A": "1"}, "config": {"setup_timeout_seconds": 5}}) == {"A": "1"}
    assert runtime_env.check(runtime_env.RuntimeEnv(env_vars={"B": "2"})) == {"B": "2"}
    for key in ("conda", "container", "uv", "worker_process_setup_hook"):
        with pytest.raises(ValueError, match=repr(key)):
            runtime_env.check({key: "x"})
    with pytest.raises(ValueError, match="no key 'nonsense'"):
        runtime_env.check({"nonsense": 1})
    with pytest.raises(TypeError):
        runtime_env.check({"env_vars": {"A": 1}})
    with pytest.raises(TypeError):
        runtime_env.check(["env_vars"])


def test_dag_input_selection():
    inp = InputNode()
    assert _Execution((5,), {}).value(inp) == 5
    assert _Execution((1, 2), {}).value(inp[1]) == 2
    assert _Execution((), {"k": 3}).value(inp.k) == 3
    assert _Execution(({"x": 4},), {}).value(inp["x"]) == 4
    with pytest.raises(ValueError):
        _Execution((1, 2), {}).value(inp)
    with pytest.raises(KeyError):
        _Execution((), {"a": 1}).value(inp.b)
