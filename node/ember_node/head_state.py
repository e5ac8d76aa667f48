"""The head's directory on disk: what a head started with ``--state-dir DIR`` keeps across a
restart, in one SQLite database (``DIR/head.db``, WAL mode, Python's own ``sqlite3``).

Only rare events are written (a node joining, a named or detached actor created or ending,
a function registered, a job changing); nothing on the per-task path. Records are typed
(``ActorRecord``, ``JobRecord``, ``NodeRecord``); payloads the agent never decodes (a creation
spec's pickled parts, a function body) are stored as the bytes they came as.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field

from ember._private_dir import ensure_dir

DB_NAME = "head.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (node_id TEXT PRIMARY KEY, address TEXT NOT NULL,
    hostname TEXT NOT NULL, resources TEXT NOT NULL, alive INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS actors (actor_id BLOB PRIMARY KEY, namespace TEXT NOT NULL,
    name TEXT, detached INTEGER NOT NULL, class_name TEXT NOT NULL, spec BLOB NOT NULL,
    restarts INTEGER NOT NULL, node_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS functions (fn_id BLOB PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, record TEXT NOT NULL);
"""


@dataclass(frozen=True)
class NodeRecord:
    """A node that joined the cluster."""

    node_id: str
    address: str
    hostname: str
    resources: dict[str, float]
    alive: bool = True


@dataclass(frozen=True)
class ActorRecord:
    """A named or detached actor: enough to create it again (``spec`` is the creation task as
    the agent received it, opaque here) and how often it was restarted."""

    actor_id: bytes
    namespace: str
    name: str | None
    detached: bool
    class_name: str
    spec: bytes
    restarts: int = 0
    node_id: str = ""  # the node whose worker hosted it last


@dataclass(frozen=True)
class JobRecord:
    """A submitted job as ``ember job status`` shows it."""

    job_id: str
    status: str
    entrypoint: str
    exit_code: int | None = None
    log_path: str = ""
    message: str = ""
    extra: dict = field(default_factory=dict)


class StateVersionError(RuntimeError):
    """The state directory was written by a newer ember."""


class HeadState:
    """The head's persistent directory. Thread-safe (one connection behind a lock)."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = ensure_dir(os.path.abspath(state_dir), tighten=True)
        self.path = os.path.join(self.state_dir, DB_NAME)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # the database is ours alone
        os.close(fd)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a process crash
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            self._db.close()
            raise StateVersionError(
                f"{self.path} was written by a newer ember (schema {row[0]}, this one reads "
                f"{SCHEMA_VERSION}): run the newer ember, or start with an empty --state-dir")

    def _run(self, sql: str, params: tuple = ()) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def _all(self, sql: str) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql).fetchall()

    # ---------------------------------------------------------------- nodes
    def save_node(self, node: NodeRecord) -> None:
        self._run("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?)",
                  (node.node_id, node.address, node.hostname, json.dumps(node.resources), int(node.alive)))

    def node_dead(self, node_id: str) -> None:
        self._run("UPDATE nodes SET alive=0 WHERE node_id=?", (node_id,))

    def nodes(self) -> list[NodeRecord]:
        return [NodeRecord(n, a, h, json.loads(r), bool(alive))
                for n, a, h, r, alive in self._all("SELECT * FROM nodes ORDER BY rowid")]

    # ---------------------------------------------------------------- actors
    def save_actor(self, actor: ActorRecord) -> None:
        self._run("INSERT OR REPLACE INTO actors VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (actor.actor_id, actor.namespace, actor.name, int(actor.detached), actor.class_name,
                   actor.spec, actor.restarts, actor.node_id))

    def actor_restarted(self, actor_id: bytes, restarts: int, node_id: str = "") -> None:
        self._run("UPDATE actors SET restarts=?, node_id=? WHERE actor_id=?", (restarts, node_id, actor_id))

    def drop_actor(self, actor_id: bytes) -> None:
        """The actor ended for good (killed, or out of restarts): it is not brought back."""
        self._run("DELETE FROM actors WHERE actor_id=?", (actor_id,))

    def actors(self) -> list[ActorRecord]:
        return [ActorRecord(bytes(a), ns, name, bool(d), c, bytes(s), r, n)
                for a, ns, name, d, c, s, r, n in self._all("SELECT * FROM actors ORDER BY rowid")]

    # ---------------------------------------------------------------- functions
    def save_function(self, fn_id: bytes, body: bytes) -> None:
        self._run("INSERT OR IGNORE INTO functions VALUES (?, ?)", (fn_id, body))

    def functions(self) -> dict[bytes, bytes]:
        return {bytes(k): bytes(v) for k, v in self._all("SELECT fn_id, body FROM functions")}

    # ---------------------------------------------------------------- jobs
    def save_job(self, job: JobRecord) -> None:
        record = {"status": job.status, "entrypoint": job.entrypoint, "exit_code": job.exit_code,
                  "log_path": job.log_path, "message": job.message, "extra": job.extra}
        self._run("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (job.job_id, json.dumps(record)))

    def jobs(self) -> list[JobRecord]:
        out = []
        for job_id, text in self._all("SELECT job_id, record FROM jobs ORDER BY rowid"):
            r = json.loads(text)
            out.append(JobRecord(job_id, r["status"], r["entrypoint"], r["exit_code"], r["log_path"],
                                 r["message"], r["extra"]))
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


def jobs_after_restart(jobs: list[JobRecord], alive: set[str]) -> list[JobRecord]:
    """Jobs as a restarted head reports them: one that was still running whose driver is gone
    (not in ``alive``) is FAILED, saying why."""
    out = []
    for job in jobs:
        if job.status in ("PENDING", "RUNNING") and job.job_id not in alive:
            job = JobRecord(job.job_id, "FAILED", job.entrypoint, job.exit_code, job.log_path,
                            "the head restarted and this job's driver, which ran on the head, was gone; "
                            "submit it again", job.extra)
        out.append(job)
    return out
