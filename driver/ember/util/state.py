"""``ember.util.state`` (Ray's ``ray.util.state``): what the cluster runs, ran and holds.

Every function asks the head of the cluster this process is connected to (``ember.init``
first). Tasks and actors include the head's bounded history of ended tasks and dead actors
(10,000 each by default; ``EMBER_TASK_HISTORY`` / ``EMBER_ACTOR_HISTORY`` on the head).
``filters`` are Ray's ``[("state", "=", "RUNNING")]`` tuples (predicates ``=`` and ``!=``);
``limit`` caps the rows (default 100); ``detail=True`` adds times, attempts and full errors.
"""

from __future__ import annotations

from typing import Any

from ember import _context
from ember import _messages as M
from ember._state_query import DEFAULT_LIMIT, check_filters, placement_group_rows, select
from ember._unsupported import module_getattr

__all__ = [
    "get_actor", "get_placement_group", "get_task", "list_actors", "list_nodes", "list_objects",
    "list_placement_groups", "list_tasks",
    "summarize_actors", "summarize_objects", "summarize_tasks",
]


def _ask(what: str, filters: Any, limit: int | None, detail: bool,
         summary: bool = False) -> Any:
    rt = _context.current_runtime()
    if rt is None:
        raise RuntimeError("ember is not initialized; call ember.init() (or ember.init(address=...)) first")
    query = {"what": what, "filters": check_filters(filters), "limit": limit,
             "detail": detail, "summary": summary}
    return rt.request(M.REQUEST, "state", query, timeout=30)


def _rows(what: str, filters: Any, limit: int | None, detail: bool) -> list[dict[str, Any]]:
    return _ask(what, filters, limit, detail)["rows"]


def list_tasks(filters: list[tuple[str, str, Any]] | None = None, limit: int = DEFAULT_LIMIT,
               detail: bool = False, **_ignored: Any) -> list[dict[str, Any]]:
    """Tasks: running, pending (with ``pending_reason``), then finished and failed ones from
    the history, newest first. Each row has task_id, name, state, type, node_id, worker_pid,
    duration_s and error (one line); detail adds start/end times, attempt, error_message."""
    return _rows("tasks", filters, limit, detail)


def list_actors(filters: list[tuple[str, str, Any]] | None = None, limit: int = DEFAULT_LIMIT,
                detail: bool = False, **_ignored: Any) -> list[dict[str, Any]]:
    """Actors: live ones, then dead ones from the history (with ``death_cause``)."""
    return _rows("actors", filters, limit, detail)


def list_objects(filters: list[tuple[str, str, Any]] | None = None, limit: int = DEFAULT_LIMIT,
                 detail: bool = False, **_ignored: Any) -> list[dict[str, Any]]:
    """Objects the cluster holds now: id, state, kind, size, holders, where copies are, and
    ``call_site``, the ``file:line`` of the ``put()`` or ``.remote()`` call that made it
    ("" unless recorded: ``EMBER_RECORD_CALLSITE=1`` for the process that made it)."""
    return _rows("objects", filters, limit, detail)


def list_nodes(filters: list[tuple[str, str, Any]] | None = None, limit: int = DEFAULT_LIMIT,
               detail: bool = False, **_ignored: Any) -> list[dict[str, Any]]:
    """Nodes, as ``ember.nodes()`` describes them."""
    return _rows("nodes", filters, limit, detail)


def list_placement_groups(filters: list[tuple[str, str, Any]] | None = None,
                          limit: int = DEFAULT_LIMIT, detail: bool = False,
                          **_ignored: Any) -> list[dict[str, Any]]:
    """Placement groups, including removed ones the head still knows: placement_group_id,
    name, creator_job_id and state (PENDING, CREATED, REMOVED, RESCHEDULING); detail adds
    bundles, is_detached and stats."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a whole number of rows, not {limit!r}")
    table = _context.require_runtime().request(M.REQUEST, "pg_table", None, timeout=30)
    rows, _total = select(placement_group_rows(table, detail), check_filters(filters), limit)
    return rows


def get_placement_group(id: str, **_ignored: Any) -> dict[str, Any] | None:  # noqa: A002 - Ray's name
    """The placement group with this hex id (with details), or None if unknown."""
    rows = list_placement_groups([("placement_group_id", "=", id)], 1, True)
    return rows[0] if rows else None


def summarize_tasks(**_ignored: Any) -> dict[str, Any]:
    """Task counts: ``total``, ``by_state`` and ``by_name`` (function name -> state -> count)."""
    return _ask("tasks", None, None, False, summary=True)


def summarize_actors(**_ignored: Any) -> dict[str, Any]:
    """Actor counts: ``total``, ``by_state`` and ``by_name`` (class name -> state -> count)."""
    return _ask("actors", None, None, False, summary=True)


def summarize_objects(**_ignored: Any) -> dict[str, Any]:
    """Object counts and bytes: ``total``, ``total_bytes``, ``by_state``, ``by_kind``."""
    return _ask("objects", None, None, False, summary=True)


def _one(what: str, key: str, ident: str) -> dict[str, Any] | None:
    rows = _rows(what, [(key, "=", ident)], 1, True)
    return rows[0] if rows else None


def get_task(id: str, **_ignored: Any) -> dict[str, Any] | None:  # noqa: A002 - Ray's name
    """The task with this hex id (latest attempt, with details), or None if unknown."""
    return _one("tasks", "task_id", id)


def get_actor(id: str, **_ignored: Any) -> dict[str, Any] | None:  # noqa: A002 - Ray's name
    """The actor with this hex id (with details), or None if unknown."""
    return _one("actors", "actor_id", id)


# Ray's ray.util.state names ember does not implement: they resolve, and raise
# NotImplementedError naming themselves when used (never AttributeError).
_RAY_ONLY_NAMES = frozenset({
    "StateApiClient", "get_job", "get_log", "get_node", "get_objects", "get_worker",
    "list_cluster_events", "list_jobs", "list_logs", "list_runtime_envs", "list_workers",
})
__getattr__ = module_getattr("ray.util.state", _RAY_ONLY_NAMES)
