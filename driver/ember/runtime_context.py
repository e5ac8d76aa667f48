"""``get_runtime_context()``: what the calling driver, task or actor is (Ray's
``ray.runtime_context``): job, node, task, actor and worker ids, the resources it was given,
its namespace."""

from __future__ import annotations

import contextvars
from typing import Any, NamedTuple

from ember import _context


class TaskInfo(NamedTuple):
    """The task (or actor call) running in this thread or coroutine of a worker."""

    task_id: bytes
    name: str
    resources: dict[str, float]


class ActorInfo(NamedTuple):
    """The actor this worker process holds."""

    actor_id: bytes
    class_name: str
    methods: dict[str, int]
    is_async: bool
    restarts: int
    resources: dict[str, float]


_current_task: contextvars.ContextVar[TaskInfo | None] = contextvars.ContextVar("ember_task", default=None)


def set_current_task(info: TaskInfo | None) -> contextvars.Token:
    """Mark ``info`` as the running task of this thread/coroutine (the worker calls this)."""
    return _current_task.set(info)


def reset_current_task(token: contextvars.Token) -> None:
    _current_task.reset(token)


def current_task() -> TaskInfo | None:
    return _current_task.get()


def held_resources(rt: Any) -> dict[str, float]:
    """What the running actor or task asked for, as it was sent (zero amounts included: a
    placement group's capture marker is one, see ember.util.placement_group)."""
    actor = rt.actor
    if actor is not None:
        return dict(actor.resources)
    info = _current_task.get()
    return dict(info.resources) if info is not None else {}


class RuntimeContext:
    """The runtime context of the current process; ids are hex strings, as in Ray."""

    def __init__(self, rt: Any) -> None:
        self._rt = rt

    # ------------------------------------------------------------------ ids
    def get_job_id(self) -> str:
        """The job: a driver's own; in a task or actor, the job of the driver it works for."""
        return self._rt.job_id.hex()

    def get_node_id(self) -> str:
        """The node this process runs on."""
        return self._rt.session.node_id

    def get_worker_id(self) -> str:
        """This process (driver or worker)."""
        return self._rt.worker_id.hex()

    def get_task_id(self) -> str | None:
        """The running task or actor call; None in a driver."""
        info = _current_task.get()
        return info.task_id.hex() if info is not None else None

    def get_task_name(self) -> str | None:
        """The running task's name (its function's qualified name unless ``name=`` was given)."""
        info = _current_task.get()
        return info.name if info is not None else None

    def is_canceled(self) -> bool:
        """True once ``cancel()`` was called on the running task or actor call: actor calls
        are not interrupted, so a long one can check this and stop. RuntimeError in a driver
        or an async actor (whose calls are cancelled at their next ``await``)."""
        info = _current_task.get()
        rt = self._rt
        if info is None or (rt.actor is not None and rt.actor.is_async):
            raise RuntimeError("is_canceled() is only available in a task or a (non-async) actor's method")
        return info.task_id in rt.cancelled_tasks or (rt.cancel_current and rt.current_task_id == info.task_id)

    def get_task_function_name(self) -> str | None:
        return self.get_task_name()

    def get_session_name(self) -> str:
        """The cluster session (its directory's name on the head)."""
        import os

        return os.path.basename(self._rt.session.session_dir.rstrip("/"))

    def get_node_labels(self) -> dict[str, str]:
        """Node labels are not implemented by ember yet: always empty."""
        return {}

    def _runtime_env_dict(self) -> dict[str, Any]:
        from ember._runtime_packages import describe

        env = self._rt.env_vars
        out: dict[str, Any] = {"env_vars": dict(env)} if env else {}
        out.update(describe(getattr(self._rt, "inherited_packages", None)))
        return out

    def get_runtime_env_string(self) -> str:
        """The runtime_env in effect here, as JSON: ``env_vars``, and the shipped
        ``working_dir``/``py_modules`` as ``ember://<content hash>.zip`` URIs."""
        import json

        return json.dumps(self._runtime_env_dict())

    @property
    def runtime_env(self) -> dict[str, Any]:
        """The runtime_env in effect here, as a ``RuntimeEnv`` dict (see
        ``get_runtime_env_string``)."""
        from ember.runtime_env import RuntimeEnv

        out = RuntimeEnv()
        out.update(self._runtime_env_dict())  # (package URIs are not paths a RuntimeEnv takes)
        return out

    # Ray's older properties
    job_id = property(lambda self: self.get_job_id())
    node_id = property(lambda self: self.get_node_id())
    task_id = property(lambda self: self.get_task_id())
    actor_id = property(lambda self: self.get_actor_id())
    current_placement_group_id = property(lambda self: self.get_placement_group_id())

    def get_actor_id(self) -> str | None:
        """The actor this code runs in; None in a driver or a task."""
        actor = self._rt.actor
        return actor.actor_id.hex() if actor is not None else None

    def get_placement_group_id(self) -> str | None:
        """The hex id of the placement group the running task or actor is in; None outside one."""
        from ember.util.placement_group import group_of

        return group_of(held_resources(self._rt))

    # ------------------------------------------------------------------ resources
    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the running task or actor holds (``{"CPU": 1.0}`` by default); empty
        in a driver."""
        return {k: v for k, v in held_resources(self._rt).items() if v}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerators this task or actor may use, by type: ``{"GPU": ["0"]}``."""
        return {"GPU": [str(i) for i in self._rt.gpu_ids]}

    # ------------------------------------------------------------------ actor
    @property
    def namespace(self) -> str | None:
        """The namespace named actors are created in and looked up from: the one
        ``init(namespace=)`` named, else the job's anonymous namespace (a UUID of its own, as
        in Ray), for the driver and every task and actor it starts."""
        return self._rt.namespace

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """True in an actor that was restarted after its process died (``max_restarts``)."""
        actor = self._rt.actor
        return actor is not None and actor.restarts > 0

    @property
    def current_actor(self) -> Any:
        """A handle to the actor this code runs in (RuntimeError outside an actor)."""
        actor = self._rt.actor
        if actor is None:
            raise RuntimeError("current_actor is only available inside an actor's methods")
        from ember.actor import ActorHandle, ActorMeta
        from ember.object_ref import ObjectRef

        meta = ActorMeta(actor.class_name, actor.methods, actor.is_async, 0)
        return ActorHandle(ObjectRef(actor.actor_id), meta)

    def get_actor_name(self) -> str | None:
        return None if self._rt.actor is None else getattr(self._rt.actor, "name", None)

    def get(self) -> dict[str, Any]:
        """The ids as a dict (Ray's older form; task and actor ids only where there are)."""
        out = {"job_id": self.get_job_id(), "node_id": self.get_node_id(), "namespace": self.namespace}
        if self.get_task_id() is not None:
            out["task_id"] = self.get_task_id()
        if self.get_actor_id() is not None:
            out["actor_id"] = self.get_actor_id()
        return out


def get_runtime_context() -> RuntimeContext:
    """The runtime context of the calling driver, task or actor (connects first if needed)."""
    return RuntimeContext(_context.require_runtime())
