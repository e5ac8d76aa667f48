"""get_runtime_context() as Ray documents it: ids of the job, node, task, actor and worker,
the resources given to a task or actor, namespace, reconstruction and the current actor
handle; in the driver, in tasks, in nested tasks, in sync, threaded and async actors."""

from __future__ import annotations

import os
import signal

import ember
import pytest

from tests.rayapi.helpers import output_lines, run_ray_program

CLUSTER_ARGS = {"num_cpus": 4, "resources": {"slot": 2}, "namespace": "ctx-tests"}


def test_driver_context(cluster):
    ctx = ember.get_runtime_context()
    assert len(ctx.get_job_id()) == 8 and int(ctx.get_job_id(), 16) >= 0
    assert ctx.get_node_id() == ember.nodes()[0]["NodeID"]
    assert ctx.get_task_id() is None and ctx.get_actor_id() is None
    assert ctx.get_worker_id() and ctx.get_placement_group_id() is None
    assert ctx.namespace == "ctx-tests"
    assert ctx.get_assigned_resources() == {}
    assert ctx.get_accelerator_ids() == {"GPU": []}
    with pytest.raises(RuntimeError):
        ctx.current_actor  # noqa: B018
    assert ctx.get() == {"job_id": ctx.get_job_id(), "node_id": ctx.get_node_id(), "namespace": "ctx-tests"}
    assert ctx.job_id == ctx.get_job_id() and ctx.get_session_name()
    assert ctx.get_node_labels() == {} and ctx.runtime_env == {}


def test_task_context_ids_and_resources(cluster):
    @ember.remote
    def where():
        ctx = ember.get_runtime_context()
        return (ctx.get_job_id(), ctx.get_node_id(), ctx.get_task_id(), ctx.get_actor_id(),
                ctx.get_worker_id(), ctx.get_assigned_resources(), ctx.namespace)

    @ember.remote
    def outer():
        inner = where.remote()
        return ember.get_runtime_context().get_task_id(), ember.get(inner)

    ctx = ember.get_runtime_context()
    job, node, task, actor, worker, resources, ns = ember.get(where.remote())
    assert (job, node, actor, ns) == (ctx.get_job_id(), ctx.get_node_id(), None, "ctx-tests")
    assert task and worker and worker != ctx.get_worker_id()
    assert resources == {"CPU": 1.0}

    @ember.remote(name="custom")
    def named():
        ctx = ember.get_runtime_context()
        return ctx.get_task_name(), ctx.get()["task_id"] == ctx.get_task_id()

    assert ember.get(named.remote()) == ("custom", True)
    a, b = ember.get([where.remote(), where.remote()])
    assert a[2] != b[2]  # each task its own id
    heavy = ember.get(where.options(num_cpus=2, resources={"slot": 1}).remote())
    assert heavy[5] == {"CPU": 2.0, "slot": 1.0}
    outer_task, nested = ember.get(outer.remote())
    assert nested[0] == ctx.get_job_id()  # a nested task belongs to the driver's job too
    assert nested[2] != outer_task


def test_actor_context_sync_threaded_async(cluster):
    @ember.remote(num_cpus=1)
    class Plain:
        def ids(self):
            ctx = ember.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_task_id(), ctx.get_assigned_resources(), ctx.get_job_id()

        def me(self):
            return ember.get_runtime_context().current_actor

        def ping(self):
            return "pong"

    @ember.remote
    class Default:
        def resources(self):
            return ember.get_runtime_context().get_assigned_resources()

    assert ember.get(Default.remote().resources.remote()) == {}  # as Ray: a default actor holds none

    @ember.remote
    class Async:
        async def ids(self):
            ctx = ember.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_task_id()

    a = Plain.remote()
    actor_id, t1, resources, job = ember.get(a.ids.remote())
    _, t2, _, _ = ember.get(a.ids.remote())
    assert actor_id == a._actor_id.hex() and t1 != t2
    assert resources == {"CPU": 1.0} and job == ember.get_runtime_context().get_job_id()
    handle = ember.get(a.me.remote())
    assert handle == a and ember.get(handle.ping.remote()) == "pong"
    threaded = Plain.options(max_concurrency=4).remote()
    assert ember.get(threaded.ids.remote())[0] == threaded._actor_id.hex()
    b = Async.remote()
    aid, tid = ember.get(b.ids.remote())
    assert aid == b._actor_id.hex() and tid


def test_was_current_actor_reconstructed(cluster):
    @ember.remote(max_restarts=1)
    class Phoenix:
        def state(self):
            return os.getpid(), ember.get_runtime_context().was_current_actor_reconstructed

    p = Phoenix.remote()
    pid, reconstructed = ember.get(p.state.remote())
    assert reconstructed is False
    os.kill(pid, signal.SIGKILL)
    deadline_pid = None
    for _ in range(600):
        try:
            deadline_pid, reconstructed = ember.get(p.state.remote(), timeout=60)
            break
        except ember.exceptions.RayActorError:
            continue
    assert deadline_pid != pid and reconstructed is True


PROGRAM = """
import ray

ray.init(num_cpus=2)

@ray.remote
def task_ids():
    ctx = ray.get_runtime_context()
    return ctx.get_job_id(), ctx.get_task_id() is not None

job, has_task = ray.get(task_ids.remote())
print("same job", job == ray.get_runtime_context().get_job_id(), has_task)
from ray.runtime_context import get_runtime_context
print("module", get_runtime_context().get_actor_id())
ray.shutdown()
"""


def test_runtime_context_under_ember_run(tmp_path):
    assert output_lines(run_ray_program(tmp_path, PROGRAM)) == ["same job True True", "module None"]
