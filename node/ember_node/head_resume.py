"""A head restarted with the same ``--state-dir``: the directory it kept is loaded back.

The function table comes back whole. Each named or detached actor that was alive is created
again from its recorded creation task, counted as a restart (``max_restarts``): its worker
died with the old head (the head's own workers die with it, and a worker node ends its
workers when it loses the head), so its constructor runs again and the state it had in
memory is gone; its id, name and namespace stay, so handles and ``get_actor(name)`` work
again. An actor out of restarts, or one whose constructor took object refs (those objects
died with the head), is not brought back; the log says which and why.
"""

from __future__ import annotations

import io
import logging
import pickle
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ember import _messages as M
from ember._wire import ServerConnection

from ember_node.head_state import ActorRecord, HeadState

if TYPE_CHECKING:
    from ember_node.agent import Agent

log = logging.getLogger("ember.agent")


class _DataOnly(pickle.Unpickler):
    """Loads what ``actor_record`` pickled: tuples, dicts, bytes, strings, numbers; no class."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"the state database holds a {module}.{name}, not plain data")


def load_submitted(blob: bytes) -> tuple:
    """A recorded creation task, as the SUBMIT spec tuple it was."""
    return _DataOnly(io.BytesIO(blob)).load()


@dataclass(frozen=True)
class Decision:
    """What a restarted head does with one recorded actor."""

    restore: bool
    reason: str = ""


def decide(record: ActorRecord, submitted: tuple) -> Decision:
    """Whether ``record`` can be created again (pure)."""
    spec = submitted[10][1]
    max_restarts = int(spec.get("max_restarts", 0))
    if max_restarts >= 0 and record.restarts >= max_restarts:
        return Decision(False, f"out of restarts ({record.restarts}/{max_restarts}); set max_restarts "
                               f"on the actor for it to come back after a head restart")
    if submitted[4] or submitted[9]:
        return Decision(False, "its constructor took object refs, which died with the old head")
    return Decision(True)


def _restore_owner(agent: Agent):
    """A client standing for the drivers that created the restored actors (long gone)."""
    from ember_node.agent import Client

    a, b = socket.socketpair()
    b.close()
    conn = ServerConnection(a)
    conn.close()
    owner = Client(conn)
    owner.kind = "restore"
    return owner


def resume(agent: Agent, state: HeadState) -> list[str]:
    """Load ``state`` into a freshly started ``agent``; the names of the actors restored."""
    agent.functions.update(state.functions())
    records = state.actors()
    if not records:
        return []
    owner = _restore_owner(agent)
    restored = []
    for record in records:
        label = f"actor {record.class_name}" + (f" {record.name!r}" if record.name else "")
        try:
            submitted = load_submitted(record.spec)
        except Exception as exc:  # noqa: BLE001 - a record this version cannot read
            log.warning("not restoring %s: its record cannot be read (%s)", label, exc)
            state.drop_actor(record.actor_id)
            continue
        decision = decide(record, submitted)
        if not decision.restore:
            log.warning("not restoring %s after the head restart: %s", label, decision.reason)
            state.drop_actor(record.actor_id)
            continue
        agent._on_submit(owner, (M.SUBMIT, submitted))
        actor = agent.actors.actors.get(record.actor_id)
        if actor is None:
            log.warning("not restoring %s: it was refused (see above)", label)
            continue
        actor.restarts = record.restarts + 1
        state.actor_restarted(record.actor_id, actor.restarts)
        restored.append(record.name or record.actor_id.hex())
        log.info("restoring %s from %s (restart %d)", label, state.path, actor.restarts)
    return restored
