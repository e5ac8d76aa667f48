"""The agent's worker pool and cluster membership: starting and losing workers, worker
nodes joining, heart-beating and dying. A mixin of ``ember_node.agent.Agent``."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from ember import _messages as M
from ember.exceptions import (
    NodeDiedError,
    OutOfMemoryError,
    TaskCancelledError,
    WorkerCrashedError,
)

from ember_node.demand import Demand, WorkRequest, unmet_demand, waiting_demand
from ember_node.memory_usage import MemoryUsage
from ember_node.placement_groups import in_placement_group
from ember_node.scheduler import holders_of
from ember_node.tasks import QUEUED
from ember_node.workers import BUSY, DEAD, NodeRec, WorkerRec, describe_exit

if TYPE_CHECKING:
    from ember_node.agent import Client

log = logging.getLogger("ember.agent")


class Membership:
    """Workers and nodes (methods of the Agent)."""

    def _start_worker(self, node: NodeRec) -> None:
        wid = next(self._wids)
        self.workers[wid] = WorkerRec(wid, node)
        node.starting += 1
        node.nworkers += 1
        if node.client is None:
            self.zygote.fork(wid)
        else:
            self._send(node.client, (M.START_WORKER, wid))
        self.metrics.worker_started()

    def _on_zygote(self, key: Any, mask: int) -> None:
        events = self.zygote.read_events()
        if events is None:
            log.error("the worker zygote exited; stopping the node")
            self.stopping = True
            return
        for kind, a, b in events:
            self._worker_event(self.local, kind, a, b)

    def _on_node_event(self, client: Client, msg: tuple) -> None:
        if client.node is not None:
            self._worker_event(client.node, msg[1], msg[2], msg[3])

    def _worker_event(self, node: NodeRec, kind: str, a: int, b: int) -> None:
        """A zygote's report: ('P', wid, pid) a worker was forked, ('X', pid, status) one exited."""
        if kind == "P":
            rec = self.workers.get(a)
            if rec is not None and rec.node is node:
                rec.pid = b
                self.by_pid[(node.node_id, b)] = rec
                if node is self.local:
                    self.output.watch(b)
        elif kind == "X":
            if node is self.local:  # everything it wrote is in its files now
                self._forward_output(self.output.forget(a))
            rec = self.by_pid.pop((node.node_id, a), None)
            if rec is None:
                return
            rec.exit_status = b
            if rec.client is None and rec.state != DEAD:
                # died before it connected
                rec.state = DEAD
                node.starting -= 1
                node.nworkers -= 1
                self.metrics.worker_lost(rec)
                self.workers.pop(rec.wid, None)
            elif rec.state == DEAD:
                self._finalize_worker(rec)

    def _on_heartbeat(self, client: Client, msg: tuple) -> None:
        if client.node is not None:
            client.node.last_heartbeat = time.monotonic()
            if len(msg) > 1:  # the node's store: (bytes used, capacity, copies held)
                client.node.store = msg[1]
            if len(msg) > 2:  # copies it dropped to make room: locality and peers skip them
                # (it stays among the readers told when the object is freed: a report that
                # crosses a fetch of the same object again must not leave that copy behind)
                readers = self.remote_readers
                client.node.dropped.update(oid for oid in msg[2] if client.node in readers.get(oid, ()))
            if len(msg) > 3 and msg[3] is not None:  # its memory usage: (used, total, where read)
                used, total, source = msg[3]
                self.memory.note_report(client.node, MemoryUsage(int(used), int(total), str(source)))

    def _node_dead(self, node: NodeRec, cause: str) -> None:
        """Declare a worker node dead: its tasks are retried elsewhere, its actors restarted."""
        if not node.alive:
            return
        node.alive = False
        node.death_cause = cause
        if self.head_state is not None:
            self.head_state.node_dead(node.node_id)
        self.pgs.node_dead(node)  # its placement-group bundles are placed again elsewhere
        self._nodes_changed()
        node.idle.clear()
        log.warning("%s is dead: %s", node.describe(), cause)
        for rec in list(self.workers.values()):
            if rec.node is node:
                rec.state = DEAD
                self._finalize_worker(rec)
                if rec.client is not None:
                    # cut it off: a worker of a dead node must not report results
                    rec.client.worker = None
                    self._on_disconnect(rec.client)
        if node.client is not None and not node.client.conn.closed:
            self._on_disconnect(node.client)

    def _finalize_worker(self, rec: WorkerRec) -> None:
        if self.workers.pop(rec.wid, None) is None:
            return
        node = rec.node
        node.nworkers -= 1
        if rec.claim is not None:
            rec.claim.close(unlink=True)
        self.backlogged.discard(rec)
        if rec.pid is not None:
            self.by_pid.pop((node.node_id, rec.pid), None)
        if rec in node.idle:
            node.idle.remove(rec)
        oom = self.memory.kill_cause(rec)
        if oom:
            cause = f"was killed because the node was low on memory ({oom})"
        elif node.alive:
            cause = describe_exit(rec.exit_status)
        else:
            cause = f"was lost because {node.describe()} died ({node.death_cause})"
        self.metrics.worker_lost(rec)
        inflight = list(rec.inflight)
        rec.inflight.clear()
        self._release_held(rec)
        if rec.actor is not None:
            self.actors.on_worker_lost(rec, cause, inflight)
            inflight = []
        for i, task in enumerate(inflight):
            task.worker = None
            if task.cancelled:
                self._fail(task, TaskCancelledError(f"task {task.name} was cancelled (its worker was killed)"))
            elif i > 0:
                self._requeue(task, front=True)
            elif task.retries_left() != 0:
                task.attempt += 1
                self.metrics.task_retried(task.name)
                log.warning("worker pid %s %s while running %s; retrying", rec.pid, cause, task.name)
                self._requeue(task, front=True)
            elif oom:
                self._fail(task, OutOfMemoryError(
                    f"{oom} The task ran {task.attempt + 1} time(s) (max_retries={task.max_retries})."))
            else:
                error = WorkerCrashedError if node.alive else NodeDiedError
                self._fail(task, error(
                    f"the worker process (pid {rec.pid}) running task {task.name} {cause}. "
                    f"The task ran {task.attempt + 1} time(s) (max_retries={task.max_retries}); "
                    f"raise max_retries to retry it more."))
        if rec.client is not None:
            self.table.drop_client(rec.client.refs)

    def _kill_worker(self, rec: WorkerRec) -> None:
        if not rec.pid:
            return
        if rec.node.client is not None:
            self._send(rec.node.client, (M.KILL_WORKER, rec.pid))
            return
        try:
            os.kill(rec.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def idle_seconds(self) -> dict[str, float]:
        """Per live node, seconds since one of its workers last ran something (0 while busy).

        Read from the gRPC threads: works on copies.
        """
        now = time.monotonic()
        last: dict[str, float] = {}
        busy: set[str] = set()
        for rec in list(self.workers.values()):
            node_id = rec.node.node_id
            if rec.state == BUSY:
                busy.add(node_id)
            last[node_id] = max(last.get(node_id, 0.0), rec.idle_since)
        return {node_id: 0.0 if node_id in busy else max(now - t, 0.0) for node_id, t in last.items()}

    def pending_demand(self) -> tuple[list[Demand], list[Demand]]:
        """Queued tasks and actor creations by resource shape: those no node fits, and those
        that fit some node but wait for room (tasks queued behind busy workers included).

        Read from the gRPC threads: works on copies.
        """
        requests = [WorkRequest(shape) for shape in self.pgs.pending_shapes()]
        for queue in list(self.queues.values()):
            for task in list(queue):
                if task.state != QUEUED or task.cancelled or in_placement_group(task.resources):
                    continue  # (work in a group counts through the group's bundles)
                create = task.extra is not None and task.extra[0] == "create"
                requests.append(WorkRequest(task.resources,
                                            needs_cpu_node=create and bool(task.extra[1].get("cpu_node"))))
        for rec in list(self.backlogged):
            requests += [WorkRequest(t.resources) for t in list(rec.inflight)[1:] if not t.cancelled]
        largest = dict(self._largest)
        return unmet_demand(requests, largest), waiting_demand(requests, largest)

    def _nodes_changed(self) -> None:
        """Recompute, per resource, the most any one live node has (what one task can get),
        and which live nodes have any (``scheduler.holders_of``)."""
        largest: dict[str, float] = {}
        for node in self.nodes.values():
            if node.alive:
                for name, amount in node.totals.items():
                    if amount > largest.get(name, 0.0):
                        largest[name] = amount
        self._largest = largest
        self._holders = holders_of(self.nodes.values())

