"""Filtering, limiting and summarizing state rows (tasks, actors, objects, nodes), and
building a Chrome trace from finished tasks: pure functions shared by the head (which
answers state queries), ``ember.util.state`` and the ``ember`` CLI.

Filters follow Ray's state API: a list of ``(key, predicate, value)`` with predicate ``"="``
or ``"!="``; values compare as text, case-insensitively for ``state``. The CLI's
``key=value`` and ``key!=value`` strings parse into the same tuples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

Filter = tuple[str, str, str]
PREDICATES = ("=", "!=")
DEFAULT_LIMIT = 100
KINDS = ("tasks", "actors", "objects", "nodes")


def parse_filter(text: str) -> Filter:
    """``"state=RUNNING"`` or ``"name!=f"`` as a filter tuple; ValueError says the form."""
    for pred in ("!=", "="):
        key, sep, value = text.partition(pred)
        if sep and key.strip():
            return (key.strip(), pred, value.strip())
    raise ValueError(f"cannot read filter {text!r}: write it as key=value or key!=value, "
                     f"e.g. --filter state=RUNNING")


def check_filters(filters: Iterable[Any] | None) -> list[Filter]:
    """Filters as a list of (key, predicate, value) tuples, each checked; strings are parsed
    as ``key=value``. Raises ValueError naming the bad filter and the accepted form."""
    out: list[Filter] = []
    for f in filters or ():
        if isinstance(f, str):
            f = parse_filter(f)
        if not (isinstance(f, tuple | list) and len(f) == 3 and isinstance(f[0], str)
                and f[1] in PREDICATES):
            raise ValueError(f"cannot use filter {f!r}: give (key, '=' or '!=', value), "
                             f'e.g. [("state", "=", "RUNNING")]')
        out.append((f[0], f[1], str(f[2])))
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def matches(row: dict[str, Any], filters: Sequence[Filter]) -> bool:
    """Whether ``row`` passes every filter (a key the row lacks compares as empty text)."""
    for key, pred, value in filters:
        have = _text(row.get(key))
        if key == "state":
            equal = have.upper() == value.upper()
        else:
            equal = have == value
        if equal != (pred == "="):
            return False
    return True


def select(rows: Iterable[dict[str, Any]], filters: Sequence[Filter],
           limit: int | None) -> tuple[list[dict[str, Any]], int]:
    """The rows passing ``filters``, at most ``limit`` of them (None: all), and how many
    passed in all."""
    picked: list[dict[str, Any]] = []
    total = 0
    for row in rows:
        if matches(row, filters):
            total += 1
            if limit is None or len(picked) < limit:
                picked.append(row)
    return picked, total


def placement_group_rows(table: dict[str, dict[str, Any]], detail: bool) -> list[dict[str, Any]]:
    """``placement_group_table()`` (id hex -> entry) as Ray's ``list_placement_groups`` rows:
    placement_group_id, name, creator_job_id, state; with ``detail`` also bundles (a list of
    {"bundle_id", "node_id", "unit_resources"}), is_detached and stats."""
    rows = []
    for pg_hex, info in table.items():
        row: dict[str, Any] = {"placement_group_id": pg_hex, "name": info.get("name", ""),
                               "creator_job_id": info.get("job_id", ""), "state": info.get("state", "")}
        if detail:
            nodes = info.get("bundles_to_node_id", {})
            row["bundles"] = [{"bundle_id": f"{pg_hex}_{i}", "node_id": nodes.get(i),
                               "unit_resources": dict(b)}
                              for i, b in sorted(info.get("bundles", {}).items())]
            row["is_detached"] = info.get("lifetime") == "detached"
            row["stats"] = dict(info.get("stats", {}))
        rows.append(row)
    return rows


def summarize(kind: str, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts by state (per function or class name for tasks and actors), and total bytes
    for objects: what ``ember summary`` prints."""
    rows = list(rows)
    if kind == "objects":
        by_state = Counter(r.get("state", "") for r in rows)
        return {"total": len(rows), "total_bytes": sum(r.get("size") or 0 for r in rows),
                "by_state": dict(by_state),
                "by_kind": dict(Counter(r.get("kind") or "" for r in rows))}
    key = "name" if kind == "tasks" else "class_name"
    groups: dict[str, Counter] = {}
    for r in rows:
        groups.setdefault(_text(r.get(key)), Counter())[_text(r.get("state"))] += 1
    return {"total": len(rows),
            "by_state": dict(Counter(_text(r.get("state")) for r in rows)),
            "by_name": {name: dict(c) for name, c in sorted(groups.items())}}


def chrome_trace(tasks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chrome trace events ("X" complete events, microseconds) for tasks that ran: one
    process per node, one thread per worker pid, so chrome://tracing or Perfetto draws a
    row per worker. Tasks without a start or end time (never ran) are left out."""
    events: list[dict[str, Any]] = []
    nodes: dict[str, int] = {}
    threads: set[tuple[int, int]] = set()
    for t in tasks:
        start, end = t.get("start_time_ms"), t.get("end_time_ms")
        if start is None or end is None:
            continue
        node = _text(t.get("node_id")) or "unknown"
        pid = nodes.setdefault(node, len(nodes) + 1)
        tid = int(t.get("worker_pid") or 0)
        threads.add((pid, tid))
        events.append({
            "name": _text(t.get("name")), "cat": _text(t.get("type")) or "task", "ph": "X",
            "ts": start * 1000.0, "dur": max(end - start, 0.0) * 1000.0, "pid": pid, "tid": tid,
            "args": {"task_id": t.get("task_id"), "state": t.get("state"),
                     "attempt": t.get("attempt"), "error": t.get("error_message") or None},
        })
    meta: list[dict[str, Any]] = []
    for node, pid in nodes.items():
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                     "args": {"name": f"node {node[:12]}"}})
    for pid, tid in sorted(threads):
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"name": f"worker {tid}" if tid else "no worker"}})
    return meta + events


MEMORY_GROUPS = ("call_site", "kind", "state")
MEMORY_SORTS = ("size", "count")


def memory_groups(objects: Iterable[dict[str, Any]], group_by: str = "call_site", sort_by: str = "size",
                  limit: int | None = None) -> list[dict[str, Any]]:
    """Objects (state rows) grouped by ``group_by`` (call_site, kind or state), each group's
    ``count``, ``total_bytes`` and ``largest`` (bytes), the largest ``total_bytes`` (or the
    most objects, ``sort_by="count"``) first, at most ``limit`` groups: what ``ember memory``
    prints. Objects without a recorded call site group as ``"(unknown)"``."""
    if group_by not in MEMORY_GROUPS:
        raise ValueError(f"cannot group by {group_by!r}; choose one of {', '.join(MEMORY_GROUPS)}")
    if sort_by not in MEMORY_SORTS:
        raise ValueError(f"cannot sort by {sort_by!r}; choose one of {', '.join(MEMORY_SORTS)}")
    groups: dict[str, dict[str, Any]] = {}
    for o in objects:
        key = _text(o.get(group_by)) or "(unknown)"
        g = groups.setdefault(key, {group_by: key, "count": 0, "total_bytes": 0, "largest": 0})
        size = int(o.get("size") or 0)
        g["count"] += 1
        g["total_bytes"] += size
        g["largest"] = max(g["largest"], size)
    order = ("total_bytes", "count") if sort_by == "size" else ("count", "total_bytes")
    out = sorted(groups.values(), key=lambda g: (-g[order[0]], -g[order[1]], g[group_by]))
    return out if limit is None else out[:limit]
