"""The agent's request handlers: store space and pins, introspection, named actors.
A mixin of ``ember_node.agent.Agent``; each ``_req_<what>`` answers REQUEST(what)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ember import _messages as M
from ember._resources import describe_unmet, release
from ember.exceptions import (
    ObjectLostError,
    RayError,
)

from ember_node.tasks import FINISHED, QUEUED

if TYPE_CHECKING:
    from ember_node.agent import Client


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

    def _req_drain_output(self, client: Client, arg: Any) -> bool:
        """A driver's output connection asks for what workers printed until now (its reply
        comes after those lines)."""
        self._forward_output(self.output.poll())
        return True

    def _req_session(self, client: Client, arg: Any) -> dict:
        return self.session

    def _req_list(self, client: Client, what: str) -> list[dict]:
        if what == "nodes":
            return self._req_nodes(client, None)
        if what == "tasks":
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
                     "attempt": t.attempt, "worker_pid": t.worker.pid if t.worker else None}
                    for t in list(self.tasks.values()) if t.state != FINISHED]
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
                     "size": o.size, "holders": o.holders, "pins": o.pins,
                     # worker nodes whose stores hold a copy too (the head's store has them all)
                     "copies_on": ",".join(sorted(n.node_id[:12] for n in readers.get(o.oid, ())
                                                  if n.alive and o.oid not in n.dropped))}
                    for o in list(self.table.objs.values())]
        raise ValueError(f"cannot list {what!r}; choose nodes, tasks, actors or objects")

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

