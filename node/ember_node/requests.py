"""The agent's request handlers: store space and pins, introspection, named actors.
A mixin of ``ember_node.agent.Agent``; each ``_req_<what>`` answers REQUEST(what)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ember import _messages as M
from ember._resources import describe_unmet, release
from ember._state_query import DEFAULT_LIMIT, KINDS, check_filters, chrome_trace, select, summarize
from ember.exceptions import (
    ObjectLostError,
    RayError,
    TaskCancelledError,
)

from ember_node.history import TASK_TYPES
from ember_node.tasks import FINISHED, QUEUED
from ember_node.workers import RETIRING

if TYPE_CHECKING:
    from ember_node.agent import Client

# fields a state query returns only with detail=True
DETAIL_ONLY = frozenset({"error_message", "start_time_ms", "end_time_ms", "attempt"})


class Requests:
    """REQUEST handlers (methods of the Agent)."""

    def _on_request(self, client: Client, msg: tuple) -> None:
        _, req_id, what, arg = msg
        try:
            value = getattr(self, "_req_" + what)(client, arg)
        except Exception as exc:  # noqa: BLE001 - the caller gets the error
            value = exc if isinstance(exc, RayError | ValueError | TypeError) else RayError(f"{what} failed: {exc}")
        self._send(client, (M.REPLY, req_id, value))

    def _req_alloc(self, client: Client, arg: tuple) -> int:
        oid, size = arg
        return self.table.alloc(oid, size, client.refs)

    def _req_pin(self, client: Client, oid: bytes) -> tuple:
        try:
            granted = self.table.read_pin(oid, client.refs)
        except KeyError:
            raise ObjectLostError(f"object {oid.hex()} is no longer in the object store") from None
        rec = client.worker
        if rec is not None and rec.node.client is not None:  # its node's store keeps a copy
            peers = self._peers_for(oid, rec.node)
            self._note_reader(rec.node, oid)
            return (*granted, peers)
        return granted

    # placement groups (ember_node.placement_groups; the driver side is ember.util.placement_group)
    def _req_pg_create(self, client: Client, arg: tuple) -> str:
        pg_hex, bundles, strategy, name, detached = arg
        if not isinstance(pg_hex, str) or not isinstance(name, str) or not isinstance(detached, bool):
            raise ValueError("pg_create needs (id hex, bundles, strategy, name, detached)")
        return self.pgs.create(pg_hex, list(bundles), strategy, name, self._job_of(client), detached)

    def _req_pg_remove(self, client: Client, pg_hex: str) -> bool:
        self.pgs.remove(pg_hex)
        return True

    def _req_pg_table(self, client: Client, pg_hex: str | None) -> dict:
        return self.pgs.table(pg_hex)

    def _req_pg_by_name(self, client: Client, name: str) -> dict:
        return next((g.info() for g in self.pgs.groups.values() if g.name == name and g.state != "REMOVED"), {})

    def _req_drain_output(self, client: Client, arg: Any) -> bool:
        """A driver's output connection asks for what workers printed until now (its reply
        comes after those lines)."""
        self._forward_output(self.output.poll())
        return True

    def _req_user_metrics(self, client: Client, records: Any) -> bool:
        """A batch of what a process's ember.util.metrics recorded (see ember_node.user_metrics)."""
        self.metrics.user.merge(records)
        return True

    def _req_retire(self, client: Client, arg: Any) -> bool:
        """A worker exits after this reply (its max_calls function's last call is done):
        nothing more is sent to it, and the tasks queued on it, none started (it waits for
        this answer), go back to the front of their queues."""
        rec = client.worker
        if rec is None or rec.actor is not None:
            return False
        back = list(rec.inflight)
        rec.inflight.clear()
        self.backlogged.discard(rec)
        if rec in rec.node.idle:
            rec.node.idle.remove(rec)
        self._release_held(rec)
        rec.state = RETIRING
        for task in reversed(back):
            task.worker = None
            for d in task.deps:  # the worker never mapped them
                obj = self.table.objs.get(d)
                if obj is not None and obj.kind == M.STORE:
                    self.table.read_unpin(d, client.refs)
            if task.cancelled:
                self._fail(task, TaskCancelledError(f"task {task.name} was cancelled before it ran"))
            else:
                self._requeue(task, front=True)
        return True

    def _req_session(self, client: Client, arg: Any) -> dict:
        return self.session

    def _req_list(self, client: Client, what: str) -> list[dict]:
        if what == "nodes":
            return self._req_nodes(client, None)
        if what == "tasks":
            return self._live_task_rows()
        if what == "actors":
            return [{"actor_id": a.aid.hex(), "class_name": a.class_name, "state": a.state,
                     "name": a.key[1] if a.key else "", "pid": a.worker.pid if a.worker else None,
                     "restarts": a.restarts}
                    for a in list(self.actors.actors.values())]
        if what == "objects":
            kinds = {M.INLINE: "INLINE", M.STORE: "STORE", M.ERROR: "ERROR"}
            readers = self.remote_readers
            return [{"object_id": o.oid.hex(), "state": "READY" if o.state else "PENDING",
                     "kind": ("SPILLED" if o.spilled else kinds[o.kind]) if o.state else "",
                     "size": o.size, "holders": o.holders, "pins": o.pins, "call_site": o.site,
                     # worker nodes whose stores hold a copy too (the head's store has them all)
                     "copies_on": ",".join(sorted(n.node_id[:12] for n in readers.get(o.oid, ())
                                                  if n.alive and o.oid not in n.dropped))}
                    for o in list(self.table.objs.values())]
        raise ValueError(f"cannot list {what!r}; choose nodes, tasks, actors or objects")

    def _live_task_rows(self) -> list[dict]:
        """Tasks not ended yet: running, queued on a worker, or pending with the reason."""
        names = {0: "QUEUED", 1: "RUNNING", 2: "FINISHED"}
        largest = self._largest
        return [{"task_id": t.tid.hex(), "name": t.name,
                 "state": ("PENDING_ARGS" if t.missing else
                           "QUEUED" if t.queued_behind() else names[t.state]),
                 "pending_reason": (f"queued on worker pid {t.worker.pid} behind its running task"
                                    if t.queued_behind() else "" if t.state != QUEUED else
                                    "waiting for its arguments" if t.missing else
                                    t.pending_reason or describe_unmet("it", t.resources, largest)
                                    or "waiting for free resources or a worker"),
                 "attempt": t.attempt, "worker_pid": t.worker.pid if t.worker else None,
                 "type": TASK_TYPES.get(t.extra[0] if t.extra else None, "NORMAL_TASK"),
                 "node_id": t.worker.node.node_id if t.worker else None}
                for t in list(self.tasks.values()) if t.state != FINISHED]

    def state_rows(self, what: str) -> list[dict]:
        """Every task, actor, object or node the head knows, as state rows (live first)."""
        return self._state_rows(what)

    def _state_rows(self, what: str) -> list[dict]:
        """Everything known of one kind: live entries first, then the history, newest first."""
        if what == "tasks":
            return self._live_task_rows() + self.history.task_rows()[::-1]
        if what == "actors":
            live = [r for r in self._req_list(None, "actors") if r["state"] != "DEAD"]
            nodes = {a.aid.hex(): a.worker.node.node_id for a in self.actors.actors.values()
                     if a.worker is not None}
            for r in live:
                r["node_id"] = nodes.get(r["actor_id"])
                r["death_cause"] = ""
            return live + self.history.actor_rows()[::-1]
        if what in ("objects", "nodes"):
            return self._req_list(None, what)
        raise ValueError(f"cannot list {what!r}; choose one of {', '.join(KINDS)}")

    def _req_state(self, client: Client, arg: dict) -> dict:
        """A state query: {"what", "filters", "limit", "detail", "summary"} -> rows (or a
        summary) of tasks, actors, objects or nodes, filtered on the head."""
        if not isinstance(arg, dict):
            raise TypeError("a state query is a dict with 'what', 'filters', 'limit', 'detail'")
        what = arg.get("what")
        filters = check_filters(arg.get("filters"))
        rows = self._state_rows(what)
        if arg.get("summary"):
            return summarize(what, select(rows, filters, None)[0])
        limit = arg.get("limit", DEFAULT_LIMIT)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a whole number of rows, not {limit!r}")
        picked, total = select(rows, filters, limit)
        if not arg.get("detail"):
            picked = [{k: v for k, v in r.items() if k not in DETAIL_ONLY} for r in picked]
        return {"rows": picked, "total": total}

    def _req_timeline(self, client: Client, arg: Any) -> list[dict]:
        """Chrome trace events for the tasks in the history."""
        return chrome_trace(self.history.task_rows())

    def _req_cluster_resources(self, client: Client, arg: Any) -> dict[str, float]:
        total: dict[str, float] = {}
        for node in self.nodes.values():
            if node.alive:
                release(total, node.totals)
        return total

    def _req_available_resources(self, client: Client, arg: Any) -> dict[str, float]:
        avail: dict[str, float] = {}
        for node in self.nodes.values():
            if node.alive:
                release(avail, node.available)
        return {k: v for k, v in avail.items() if v > 1e-9}

    def _req_nodes(self, client: Client, arg: Any) -> list[dict]:
        table = self.table
        head_store = (table.arena.used, table.arena.capacity, len(table.objs))
        monitor = self.memory

        def memory(node: Any) -> tuple[int, int] | None:
            usage = monitor.last_usage if node is self.local else monitor.reported(node)
            return (usage.used, usage.total) if usage is not None else None

        return [{
            "NodeID": node.node_id,
            "Alive": node.alive,
            "NodeManagerAddress": (node.address or self.address or "127.0.0.1").rsplit(":", 1)[0],
            "NodeManagerHostname": node.hostname,
            "NodeName": node.address or node.hostname,
            "Resources": dict(node.totals),
            "IsHead": node.is_head,
            "DeathCause": node.death_cause,
            "alive": node.alive,
            # (bytes used, capacity, objects) of the node's store; a worker node's holds copies
            "object_store": head_store if node.is_head else node.store,
            "peer_address": node.peer,  # where a worker node's store serves copies to other nodes
            # (bytes used, limit) as the memory monitor last read them; None when unknown
            "memory_usage": memory(node) if node.alive else None,
        } for node in self.nodes.values()]

    def _req_stats(self, client: Client, arg: Any) -> dict:
        return {
            **self.table.stats(),
            "workers": len(self.workers),
            "idle_workers": sum(len(n.idle) for n in self.nodes.values()),
            "tasks": len(self.tasks),
            "worker_pids": [r.pid for r in self.workers.values() if r.pid],
        }

    def _req_get_actor(self, client: Client, arg: tuple) -> tuple[bytes, bytes] | None:
        name, namespace = arg
        found = self.actors.lookup(name, namespace)
        if found is not None:
            self.table.addref(found[0], client.refs)  # the caller builds a handle from it
        return found

    def _req_kill_actor(self, client: Client, arg: tuple) -> None:
        aid, no_restart, *reason = arg  # reason: an actor ending itself says why
        self.actors.kill(aid, no_restart, reason[0] if reason else None)

    def _on_shutdown(self, client: Client, msg: tuple) -> None:
        if client is self.owner:  # only the driver that owns an embedded cluster may stop it
            self.stopping = True

