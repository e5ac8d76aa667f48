"""What the dashboard shows, asked of the agent the way ``ember list`` and ``ember status``
ask: REQUESTs over the agent's own socket, answered by its event loop (so nothing here
reads the agent's tables from another thread), plus the job table and the session's log
files, which are thread-safe to read."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ember_node import log_files as lf

TAIL_LINES = 200  # a log view starts with the last lines of the file
ROW_LIMIT = 500  # at most this many rows per table


class AgentQuery:
    """One connection to the agent's socket, shared by the server's threads (under a lock),
    opened on first use and again after a failure."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._rt: Any = None

    def __call__(self, requests: list[tuple[str, Any]]) -> list[Any]:
        """The answers to (what, argument) REQUESTs, in order."""
        from ember import _messages as M

        with self._lock:
            for attempt in (0, 1):
                rt = self._rt or self._connect()
                try:
                    return [rt.request(M.REQUEST, what, arg, timeout=self.timeout) for what, arg in requests]
                except (ConnectionError, OSError):
                    self._drop()
                    if attempt:
                        raise
            raise AssertionError("unreachable")

    def _connect(self) -> Any:
        from ember import _messages as M
        from ember._runtime import CoreRuntime
        from ember._wire import ClientConnection

        rt = CoreRuntime(ClientConnection.connect(self.socket_path), None, "driver")
        rt.send((M.HELLO, "tool", os.getpid(), None, None))
        self._rt = rt
        return rt

    def _drop(self) -> None:
        rt, self._rt = self._rt, None
        if rt is not None:
            try:
                rt.close()
            except Exception:  # noqa: BLE001 - it is gone either way
                pass

    def close(self) -> None:
        """Close the connection (the next call opens another)."""
        with self._lock:
            self._drop()


class DashboardData:
    """The pages' data. ``query`` answers REQUESTs (an :class:`AgentQuery`); ``jobs`` is the
    head's JobManager (None: no job runner, as in an embedded cluster); ``log_dir`` the
    session's ``logs/``; ``finished_total`` counts tasks ended so far (for the throughput)."""

    def __init__(self, query: Callable[[list[tuple[str, Any]]], list[Any]], jobs: Any, log_dir: str,
                 finished_total: Callable[[], int] = lambda: 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.query = query
        self.jobs = jobs
        self.log_dir = log_dir
        self.finished_total = finished_total
        self.clock = clock

    def overview(self) -> dict[str, Any]:
        """Nodes, resources used/total, store use, task counts: what ``ember status`` prints."""
        nodes, total, avail, stats, tasks = self.query([
            ("nodes", None), ("cluster_resources", None), ("available_resources", None),
            ("stats", None), ("list", "tasks")])
        resources = {k: {"used": v - avail.get(k, 0.0), "total": v} for k, v in total.items()}
        return {
            "time": self.clock(),
            "nodes": [{"node_id": n["NodeID"], "address": n["NodeManagerAddress"], "alive": n["Alive"],
                       "is_head": n["IsHead"], "death_cause": n.get("DeathCause") or "",
                       "resources": n["Resources"], "object_store": n.get("object_store"),
                       "memory_usage": n.get("memory_usage")} for n in nodes],
            "nodes_alive": sum(1 for n in nodes if n["Alive"]),
            "resources": resources,
            "store": {"used": stats["store_bytes"], "capacity": stats["store_capacity"],
                      "objects": stats["objects"], "spilled": stats["spilled_bytes"]},
            "workers": stats["workers"], "idle_workers": stats["idle_workers"],
            "tasks_running": sum(1 for t in tasks if t["state"] == "RUNNING"),
            "tasks_pending": sum(1 for t in tasks if t["state"] != "RUNNING"),
            "tasks_finished_total": self.finished_total(),
        }

    def rows(self, what: str, filters: list[tuple[str, str, str]] | None = None,
             search: str = "", limit: int = ROW_LIMIT) -> dict[str, Any]:
        """Tasks, actors or objects as ``ember list --detail`` gives them; ``search`` keeps
        rows with the text anywhere in them (case-insensitive)."""
        (answer,) = self.query([("state", {"what": what, "filters": filters or [],
                                           "limit": None if search else limit, "detail": True})])
        rows, total = answer["rows"], answer["total"]
        if search:
            needle = search.lower()
            rows = [r for r in rows if any(needle in str(v).lower() for v in r.values() if v is not None)]
            total = len(rows)
            rows = rows[:limit]
        return {"rows": rows, "total": total}

    def jobs_rows(self) -> list[dict[str, Any]]:
        """The submitted jobs, newest first (empty without a job runner)."""
        if self.jobs is None:
            return []
        out = []
        for rec in self.jobs.list():
            row = asdict(rec)
            row["status"] = str(getattr(rec.status, "value", rec.status))
            out.append(row)
        out.sort(key=lambda r: r.get("start_time_ms") or 0, reverse=True)
        return out

    def log_files(self) -> list[dict[str, Any]]:
        """The session's log files (``ember logs``' list)."""
        return [{"name": f.name, "size": f.size, "mtime": f.mtime, "kind": f.kind, "pid": f.pid,
                 "job": f.job} for f in lf.list_logs(self.log_dir)]

    def log_chunk(self, name: str, offset: int) -> dict[str, Any]:
        """What ``name`` holds from ``offset`` (-1: its last lines), at most one chunk, and
        the offset to ask from next. Raises LogNotFound / ValueError for a bad name."""
        path = lf.path_in(self.log_dir, name)
        if offset < 0:
            offset = lf.tail_start(path, TAIL_LINES)
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if offset > size:  # the file was truncated or replaced: start again
                offset = 0
            f.seek(offset)
            data = f.read(lf.CHUNK)
        text = lf.MarkRenderer().feed(data, final=True).decode("utf-8", errors="replace")
        return {"name": name, "offset": offset + len(data), "data": text}
