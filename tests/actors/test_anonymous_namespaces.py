"""Anonymous namespaces, as in Ray: a driver that calls ``init()`` without ``namespace=``
gets a namespace of its own (a fresh UUID, reported by ``get_runtime_context().namespace``);
its named actors are found by it and by its tasks, not by another driver, and two such
drivers may use the same name at once. Named actors are shared across drivers only when
both name the same namespace. Real drivers (subprocesses) against one ``ember start``
cluster."""

from __future__ import annotations

import uuid

import pytest

from .helpers import CLEANUP_GRACE_S, describe, run_script, session_processes, wait_until
from .test_detached import _cli, _free_port, _result, private_tmpdir  # noqa: F401 - a fixture

CREATOR = """
import json
import ember as ray

ray.init(address="auto", namespace=NAMESPACE)

@ray.remote
class Box:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value

@ray.remote
def look_up(name):
    return ray.get(ray.get_actor(name).get.remote(), timeout=60)

box = Box.options(name=NAME, lifetime="detached").remote(VALUE)
print("RESULT " + json.dumps({
    "namespace": ray.get_runtime_context().namespace,
    "direct": ray.get(ray.get_actor(NAME).get.remote(), timeout=60),
    "from_task": ray.get(look_up.remote(NAME), timeout=60),
    "task_namespace": ray.get(ray.remote(lambda: ray.get_runtime_context().namespace).remote(), timeout=60),
}), flush=True)
"""

LOOKER = """
import json
import ember as ray

ray.init(address="auto", namespace=NAMESPACE)
out = {"namespace": ray.get_runtime_context().namespace}
try:
    out["found"] = ray.get(ray.get_actor(NAME).get.remote(), timeout=60)
except ValueError as err:
    out["found"] = None
    out["error"] = str(err)
if OTHER_NAMESPACE:  # reach into the other driver's namespace by its id, then end the actor
    actor = ray.get_actor(NAME, namespace=OTHER_NAMESPACE)
    out["by_id"] = ray.get(actor.get.remote(), timeout=60)
    ray.kill(actor)
print("RESULT " + json.dumps(out), flush=True)
"""


def _prelude(name: str, namespace: str | None, value: int = 0, other: str | None = None) -> str:
    return f"NAME = {name!r}\nNAMESPACE = {namespace!r}\nVALUE = {value!r}\nOTHER_NAMESPACE = {other!r}\n"


@pytest.fixture
def started_cluster(private_tmpdir):  # noqa: F811 - the fixture imported above
    args = ["start", "--head", "--num-cpus", "2", "--port", str(_free_port())]
    started = _cli(*args)
    try:
        assert started.returncode == 0, f"`ember {' '.join(args)}` failed: {started.stderr[-3000:]}"
        yield
    finally:
        stopped = _cli("stop")
        assert stopped.returncode == 0, f"`ember stop` failed: {stopped.stderr[-3000:]}"
        wait_until(lambda: not session_processes(), CLEANUP_GRACE_S, 0.1)
        survivors = session_processes()
        assert not survivors, f"processes left after `ember stop`: {describe(survivors)}"


def test_each_driver_without_a_namespace_has_its_own(tmp_path, started_cluster):
    name = f"box-{uuid.uuid4().hex[:8]}"
    first = _result(run_script(tmp_path, _prelude(name, None, 1) + CREATOR, "a.py"), "driver a")
    uuid.UUID(first["namespace"])  # an anonymous namespace is a UUID, as in Ray
    assert first["direct"] == 1 and first["from_task"] == 1
    assert first["task_namespace"] == first["namespace"]

    second = _result(run_script(tmp_path, _prelude(name, None, 2) + CREATOR, "b.py"), "driver b")
    assert second["namespace"] != first["namespace"]
    assert second["direct"] == 2, "the second driver's actor of the same name is its own"

    third = _result(run_script(tmp_path, _prelude(name, None, other=first["namespace"]) + LOOKER,
                               "c.py"), "driver c")
    assert third["found"] is None, "a driver found a named actor of another driver's anonymous namespace"
    assert "anonymous" in third["error"] and "namespace=" in third["error"]
    assert third["by_id"] == 1  # the namespace given by its id, as Ray allows
    _result(run_script(tmp_path, _prelude(name, None, other=second["namespace"]) + LOOKER, "d.py"),
            "driver d")  # ends driver b's actor


def test_a_named_namespace_is_shared_across_drivers(tmp_path, started_cluster):
    name = f"box-{uuid.uuid4().hex[:8]}"
    first = _result(run_script(tmp_path, _prelude(name, "shared", 7) + CREATOR, "a.py"), "driver a")
    assert first["namespace"] == "shared" and first["task_namespace"] == "shared"
    elsewhere = _result(run_script(tmp_path, _prelude(name, "elsewhere") + LOOKER, "b.py"), "driver b")
    assert elsewhere["found"] is None
    same = _result(run_script(tmp_path, _prelude(name, "shared", other="shared") + LOOKER, "c.py"),
                   "driver c")
    assert same["found"] == 7 and same["by_id"] == 7
