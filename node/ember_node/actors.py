"""Actors on the agent: creation, per-caller ordered calls, restarts, names and death.

An actor's id is the object id of its creation task's return value. Handles hold refs to
that object, so when it is freed, no handle is left anywhere and the actor is ended (unless
it is named or detached: those are pinned by the agent).
"""

from __future__ import annotations

import logging
import pickle
from collections import deque
from typing import TYPE_CHECKING, Any

from ember import _messages as M
from ember.exceptions import ActorCreationError, ActorDiedError, RayActorError

from ember_node.head_state import ActorRecord
from ember_node.tasks import FINISHED, QUEUED, RUNNING, Task
from ember_node.workers import BUSY, WorkerRec

if TYPE_CHECKING:
    from ember_node.agent import Agent, Client

log = logging.getLogger("ember.agent")

PENDING_CREATION = "PENDING_CREATION"
ALIVE = "ALIVE"
RESTARTING = "RESTARTING"
DEAD = "DEAD"


class Actor:
    """The agent's record of one actor."""

    __slots__ = ("aid", "spec", "create_task", "state", "worker", "queues", "restarts",
                 "death_cause", "owner", "no_restart", "key", "class_name")

    def __init__(self, task: Task, spec: dict, owner: Client) -> None:
        self.aid: bytes = task.rids[0]
        self.spec = spec
        self.create_task = task
        self.state = PENDING_CREATION
        self.worker: WorkerRec | None = None
        self.queues: dict[Any, deque[Task]] = {}
        self.restarts = 0
        self.death_cause: BaseException | None = None
        self.owner = owner
        self.no_restart = False
        ns = spec.get("namespace") or "default"
        self.key = (ns, spec["name"]) if spec.get("name") else None
        self.class_name = task.name.rsplit(".", 1)[0]


def actor_record(actor: Actor) -> ActorRecord:
    """What ``--state-dir`` keeps of a named or detached actor: its creation task as it was
    submitted (data only: ids, names, options, the pickled arguments as bytes; see
    ``ember_node.head_resume``), in the head's own 0700 directory."""
    ns, name = actor.key if actor.key is not None else (actor.spec.get("namespace") or "default", None)
    t = actor.create_task
    submitted = (t.tid, t.fn_id, t.name, t.args, tuple(t.deps), tuple(t.rids), t.resources, t.max_retries,
                 t.retry_exc, tuple(t.contained), t.extra, t.namespace, t.strategy)
    return ActorRecord(actor.aid, ns, name, bool(actor.spec.get("detached")), actor.class_name,
                       pickle.dumps(submitted), actor.restarts)


class ActorManager:
    """All actors on this node."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.actors: dict[bytes, Actor] = {}
        self.names: dict[tuple[str, str], bytes] = {}

    # -------------------------------------------------------------- creation
    def on_create(self, task: Task, client: Client) -> bool:
        """A creation task was submitted; False when it was failed right away."""
        spec = task.extra[1]
        actor = Actor(task, spec, client)
        if actor.key is not None:
            existing = self.names.get(actor.key)
            if existing is not None and self.actors[existing].state != DEAD:
                self.agent._fail(task, ValueError(
                    f"an actor named {spec['name']!r} already exists in namespace {actor.key[0]!r}; "
                    f"use ember.get_actor({spec['name']!r}) or .options(get_if_exists=True)"), pinned=False)
                return False
        self.actors[actor.aid] = actor
        if actor.key is not None:
            self.names[actor.key] = actor.aid
        if actor.key is not None or spec.get("detached"):
            self.agent.table.pin(actor.aid)  # lives without handles
            if self.agent.head_state is not None:
                self.agent.head_state.save_actor(actor_record(actor))
        return True

    def start(self, actor: Actor, rec: WorkerRec) -> None:
        """Give ``rec`` to the actor and run its constructor there."""
        actor.worker = rec
        rec.actor = actor
        rec.state = BUSY
        spec = actor.spec
        rec.shape = None  # (the agent gave it the actor's resources: Agent._hold)
        self.agent._send_exec(rec, actor.create_task, ("create", spec["max_concurrency"], spec["is_async"],
                                                         actor.restarts, spec.get("concurrency_groups", {})))

    def on_created(self, actor: Actor, task: Task, results: list) -> None:
        failed = any(kind == M.ERROR for _, kind, _, _ in results)
        if failed:
            actor.death_cause = ActorCreationError(
                f"actor {actor.class_name} could not be created: its constructor raised", results[0][2])
            self._die(actor, kill=True)
            return
        actor.state = ALIVE
        self.dispatch(actor)

    def on_create_failed(self, task: Task, blob: bytes) -> None:
        """The creation task failed before running (an argument's task failed, or it was
        cancelled): the actor is dead, and its calls fail with the reason."""
        actor = self.actors.get(task.rids[0])
        if actor is None or actor.state == DEAD:
            return
        if actor.death_cause is None:
            actor.death_cause = ActorCreationError(f"actor {actor.class_name} could not be created:", blob)
        self._die(actor, kill=True)

    # -------------------------------------------------------------- calls
    def on_call(self, task: Task, client: Client) -> bool:
        """A method call was submitted; False when it was failed right away."""
        aid = task.extra[1]
        actor = self.actors.get(aid)
        if actor is None or actor.state == DEAD:
            self.agent._fail(task, self._dead_error(actor, task), pinned=False)
            return False
        task.contained = [*task.contained, aid]
        q = actor.queues.get(client)
        if q is None:
            q = actor.queues[client] = deque()
        q.append(task)
        return True

    def dispatch(self, actor: Actor, caller: Any = None) -> None:
        """Send every call that is next in its caller's order and has its arguments.

        ``caller``: only that caller's calls can have become ready.
        """
        if actor.state != ALIVE:
            return
        rec = actor.worker
        agent = self.agent
        if caller is not None:
            q = actor.queues.get(caller)
            queues = [(caller, q)] if q else []
        else:
            queues = list(actor.queues.items())
        for client, q in queues:
            while q:
                task = q[0]
                if task.state == FINISHED or task.cancelled:
                    q.popleft()
                    continue
                if task.missing or task.state != QUEUED or task.failed_dep is not None:
                    break
                q.popleft()
                agent._send_exec(rec, task, ("call", *task.extra[2:]))  # method[, group]
            if not q:
                del actor.queues[client]

    # -------------------------------------------------------------- failure
    def on_worker_lost(self, rec: WorkerRec, cause: str, inflight: list[Task]) -> None:
        actor = rec.actor
        rec.actor = None
        agent = self.agent
        if actor.worker is not rec:
            return
        actor.worker = None
        if actor.state == PENDING_CREATION and actor.create_task in inflight:
            inflight = [t for t in inflight if t is not actor.create_task]
        pid = rec.pid
        can_restart = (not actor.no_restart and actor.state != DEAD
                       and (actor.spec["max_restarts"] < 0 or actor.restarts < actor.spec["max_restarts"]))
        if actor.death_cause is None:
            how = "was killed with ember.kill()" if actor.no_restart else cause
            actor.death_cause = ActorDiedError(
                f"actor {actor.class_name} died: its worker process (pid {pid}) {how}")
        if can_restart:
            actor.restarts += 1
            actor.state = RESTARTING
            if self.agent.head_state is not None and (actor.key is not None or actor.spec.get("detached")):
                self.agent.head_state.actor_restarted(actor.aid, actor.restarts)
            log.warning("actor %s (pid %s) %s; restarting (%d/%s)", actor.class_name, pid, cause,
                        actor.restarts, actor.spec["max_restarts"])
            # calls that were running: retried (in order, before queued ones) when allowed
            retry: dict[Any, list[Task]] = {}
            for task in inflight:
                task.worker = None
                if task.retries_left() != 0:
                    task.attempt += 1
                    agent.metrics.task_retried(task.name)
                    task.state = QUEUED
                    retry.setdefault(task.owner, []).append(task)
                else:
                    agent._fail(task, actor.death_cause)
            for owner, tasks in retry.items():
                q = actor.queues.setdefault(owner, deque())
                q.extendleft(reversed(tasks))
            actor.death_cause = None
            create = actor.create_task
            create.state = QUEUED
            create.worker = None
            agent._requeue(create, front=True)
            return
        for task in inflight:
            task.worker = None
            agent._fail(task, actor.death_cause)
        self._die(actor, kill=False)

    def _dead_error(self, actor: Actor | None, task: Task) -> BaseException:
        if actor is None:
            return ActorDiedError(f"cannot run {task.name}: the actor is gone (killed, or every handle to it was dropped)")
        cause = actor.death_cause
        if isinstance(cause, RayActorError):
            return cause
        return ActorDiedError(f"cannot run {task.name}: the actor is dead")

    def _die(self, actor: Actor, kill: bool) -> None:
        """Mark dead, fail every queued call, free its worker and resources."""
        agent = self.agent
        actor.state = DEAD
        if actor.death_cause is None:
            actor.death_cause = ActorDiedError(f"actor {actor.class_name} is dead")
        agent.history.actor_died(actor)
        for q in actor.queues.values():
            for task in q:
                agent._fail(task, actor.death_cause)
        actor.queues.clear()
        rec = actor.worker
        if rec is not None and kill:
            agent._kill_worker(rec)
        create = actor.create_task
        if create.state != FINISHED:
            agent._fail(create, actor.death_cause)  # it never ran: its result becomes the error
        elif agent.tasks.get(create.tid) is create:
            agent._release_task(create)
        if actor.key is not None and self.names.get(actor.key) == actor.aid:
            del self.names[actor.key]
        if actor.key is not None or actor.spec.get("detached"):
            if agent.head_state is not None:
                agent.head_state.drop_actor(actor.aid)
            actor.spec = {**actor.spec, "detached": False}
            actor.key = None
            agent.table.unpin(actor.aid)

    def kill(self, aid: bytes, no_restart: bool, reason: str | None = None) -> None:
        actor = self.actors.get(aid)
        if actor is None or actor.state == DEAD:
            return
        actor.no_restart = actor.no_restart or no_restart
        if reason is not None and actor.death_cause is None:
            actor.death_cause = ActorDiedError(f"actor {actor.class_name} {reason}")
        if no_restart and actor.key is not None and self.names.get(actor.key) == aid:
            del self.names[actor.key]  # the name is free again at once, as in Ray
        if actor.worker is not None:
            self.agent._kill_worker(actor.worker)
        elif no_restart:
            actor.death_cause = ActorDiedError(f"actor {actor.class_name} was killed with ember.kill()")
            self.agent._fail(actor.create_task, actor.death_cause)
            self._die(actor, kill=False)

    def on_freed(self, oid: bytes) -> None:
        """The creation object is gone: no handle is left, so the actor ends."""
        actor = self.actors.pop(oid, None)
        if actor is None:
            return
        if actor.state != DEAD:
            actor.no_restart = True
            actor.death_cause = ActorDiedError(
                f"actor {actor.class_name} was ended because every handle to it was dropped")
            self._die(actor, kill=True)

    def on_client_gone(self, client: Client) -> None:
        """Non-detached actors end with the driver that created them."""
        for actor in list(self.actors.values()):
            orphaned = actor.queues.pop(client, None)
            for task in orphaned or ():
                self.agent._fail(task, ActorDiedError("the caller disconnected"))
            if actor.owner is client and not actor.spec.get("detached") and actor.state != DEAD:
                actor.no_restart = True
                actor.death_cause = ActorDiedError(
                    f"actor {actor.class_name} was ended because the driver that created it exited")
                self._die(actor, kill=True)

    def lookup(self, name: str, namespace: str | None) -> tuple[bytes, bytes] | None:
        aid = self.names.get((namespace or "default", name))
        if aid is None:
            return None
        actor = self.actors.get(aid)
        if actor is None or actor.state == DEAD:
            return None
        return aid, actor.spec["meta"]

    def running(self, task: Task) -> bool:
        return task.state == RUNNING
