"""Where ember used to differ from Ray without saying so (issue 15), now as Ray documents:
cancelling a running async actor call raises TaskCancelledError; sys.exit()/exit_actor() in
an actor method ends the actor for good (RayActorError now and later, no restart); an
exception that cannot be pickled arrives with a RayError cause saying why; runtime_env keys
ember lacks are refused by name, and env_vars work."""

from __future__ import annotations

import os
import sys

import ember
import pytest
from ember.actor import exit_actor
from ember.exceptions import RayActorError, RayError, TaskCancelledError, UnserializableException
from ember_testkit import wait_until

from tests.rayapi.helpers import output_lines, run_ray_program

CLUSTER_ARGS = {"num_cpus": 4, "runtime_env": {"env_vars": {"JOB_LEVEL": "job", "SHARED": "job"}}}


def test_cancel_running_async_actor_call(cluster, tmp_path):
    started = tmp_path / "started"

    @ember.remote
    class Sleeper:
        async def nap(self, path):
            import asyncio

            open(path, "w").close()
            await asyncio.sleep(300)
            return "woke up"

        async def quick(self):
            return "ok"

    s = Sleeper.remote()
    ref = s.nap.remote(str(started))
    assert wait_until(started.exists, 60)
    ember.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ember.get(ref, timeout=60)
    assert ember.get(s.quick.remote(), timeout=60) == "ok"  # the actor lives on


def test_cancel_queued_async_actor_call(cluster, tmp_path):
    @ember.remote(max_concurrency=1)
    class One:
        async def hold(self, path):
            import asyncio

            while not os.path.exists(path):
                await asyncio.sleep(0.01)
            return "held"

    gate = tmp_path / "gate"
    a = One.remote()
    first = a.hold.remote(str(gate))
    second = a.hold.remote(str(gate))
    ember.cancel(second)
    gate.touch()
    assert ember.get(first, timeout=60) == "held"
    with pytest.raises(TaskCancelledError):
        ember.get(second, timeout=60)


@pytest.mark.parametrize("how", ["sys.exit", "exit_actor", "async"])
def test_sys_exit_in_an_actor_method_ends_the_actor(cluster, how):
    @ember.remote(max_restarts=3)
    class Quitter:
        def pid(self):
            return os.getpid()

        def quit(self):
            sys.exit(0)

        def leave(self):
            exit_actor()

    @ember.remote(max_restarts=3)
    class AsyncQuitter:
        async def pid(self):
            return os.getpid()

        async def quit(self):
            sys.exit(1)

    a = AsyncQuitter.remote() if how == "async" else Quitter.remote()
    pid = ember.get(a.pid.remote(), timeout=60)
    call = a.leave.remote() if how == "exit_actor" else a.quit.remote()
    with pytest.raises(RayActorError) as info:
        ember.get(call, timeout=60)
    assert "exit" in str(info.value)
    with pytest.raises(RayActorError):  # not restarted, although max_restarts allows it
        ember.get(a.pid.remote(), timeout=60)
    assert wait_until(lambda: not _alive(pid), 30)


def test_exit_actor_outside_an_actor():
    with pytest.raises(TypeError):
        exit_actor()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_unpicklable_exception_has_a_ray_error_cause(cluster):
    @ember.remote
    def fails():
        import threading

        class Locked(Exception):
            def __init__(self):
                super().__init__("holds a lock")
                self.lock = threading.Lock()

        raise Locked()

    with pytest.raises(RayError) as info:
        ember.get(fails.remote(), timeout=60)
    cause = info.value.cause
    assert isinstance(cause, UnserializableException) and isinstance(cause, RayError)
    assert "could not be sent" in str(cause) and "holds a lock" in str(cause)


def test_runtime_env_unsupported_keys_are_refused_by_name(cluster):
    with pytest.raises(ValueError, match="'conda'"):
        ember.remote(runtime_env={"conda": {"dependencies": ["requests"]}})(lambda: 1)
    with pytest.raises(ValueError, match="'uv'"):
        ember.remote(runtime_env={"uv": ["requests"]})(lambda: 1)
    with pytest.raises(ValueError, match="'container'"):
        @ember.remote(runtime_env={"container": {"image": "x"}})
        class A:
            pass
    f = ember.remote(lambda: 1)
    with pytest.raises(ValueError, match="'worker_process_setup_hook'"):
        f.options(runtime_env={"worker_process_setup_hook": print})
    with pytest.raises(ValueError, match="no key 'bogus'"):
        f.options(runtime_env={"bogus": 1})
    with pytest.raises(TypeError, match="env_vars"):
        f.options(runtime_env={"env_vars": {"A": 1}})


def test_init_runtime_env_unsupported_key_is_refused(cluster):
    """init checks runtime_env first (before it would start or refuse to re-start a cluster)."""
    with pytest.raises(ValueError, match="'conda'"):
        ember.init(runtime_env={"conda": "env.yaml"}, ignore_reinit_error=True)
    with pytest.raises(ValueError, match="'worker_process_setup_hook'"):
        ember.init(runtime_env={"worker_process_setup_hook": print}, ignore_reinit_error=True)


def test_env_vars_job_task_actor_and_nested(cluster):
    @ember.remote
    def read(*names):
        return [os.environ.get(n) for n in names]

    @ember.remote(runtime_env={"env_vars": {"TASK_LEVEL": "task", "SHARED": "task"}})
    def nested():
        return ember.get(read.remote("JOB_LEVEL", "TASK_LEVEL", "SHARED"))

    @ember.remote(runtime_env={"env_vars": {"ACTOR_LEVEL": "actor"}})
    class Reader:
        def read(self, *names):
            return [os.environ.get(n) for n in names]

    assert ember.get(read.remote("JOB_LEVEL", "SHARED"), timeout=60) == ["job", "job"]
    opts = read.options(runtime_env={"env_vars": {"SHARED": "override"}})
    assert ember.get(opts.remote("JOB_LEVEL", "SHARED"), timeout=60) == ["job", "override"]
    assert ember.get(nested.remote(), timeout=60) == ["job", "task", "task"]
    r = Reader.remote()
    assert ember.get(r.read.remote("JOB_LEVEL", "ACTOR_LEVEL"), timeout=60) == ["job", "actor"]
    # a worker that ran a task with its own variables does not keep them for the next task
    for _ in range(4):
        assert ember.get(read.remote("TASK_LEVEL"), timeout=60) == [None]


PROGRAM = """
import os
import ray

ray.init(num_cpus=1, runtime_env={"env_vars": {"GREETING": "hi"}})

@ray.remote
def greet():
    return os.environ["GREETING"]

print(ray.get(greet.remote()))
try:
    ray.get(greet.options(runtime_env={"conda": {"dependencies": ["numpy"]}}).remote())
except ValueError as e:
    print("refused", "'conda'" in str(e))
ray.shutdown()
"""


def test_runtime_env_under_ember_run(tmp_path):
    assert output_lines(run_ray_program(tmp_path, PROGRAM)) == ["hi", "refused True"]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_running_actor_call_is_not_interrupted_but_sees_is_canceled(cluster, tmp_path, concurrency):
    """As Ray documents for regular and threaded actors: a running call is not interrupted;
    it can poll get_runtime_context().is_canceled(); get on it raises TaskCancelledError."""
    started = tmp_path / "started"

    @ember.remote(max_concurrency=concurrency)
    class Poller:
        def __init__(self):
            self.saw_cancel = False

        def work(self, path):
            import time

            open(path, "w").close()
            for _ in range(3000):
                if ember.get_runtime_context().is_canceled():
                    self.saw_cancel = True
                    return "stopped"
                time.sleep(0.01)
            return "finished"

        def saw(self):
            return self.saw_cancel

    p = Poller.remote()
    ref = p.work.remote(str(started))
    assert wait_until(started.exists, 60)
    ember.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ember.get(ref, timeout=60)
    assert ember.get(p.saw.remote(), timeout=60) is True
    with pytest.raises(RuntimeError):
        ember.get_runtime_context().is_canceled()  # in a driver


def test_method_accepts_enable_task_events(cluster):
    @ember.remote
    class Quiet:
        @ember.method(enable_task_events=False)
        def ping(self):
            return "pong"

    assert ember.get(Quiet.remote().ping.remote(), timeout=60) == "pong"
