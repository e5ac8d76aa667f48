"""``ember list``, ``ember summary`` and ``ember timeline``: the head's state as tables,
counts or a Chrome trace. Each command gets ``query`` (a list of (request, argument) pairs
to the list of answers), so it holds no connection logic of its own."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ember._state_query import DEFAULT_LIMIT, KINDS, check_filters

Query = Callable[[list[tuple[str, Any]]], list[Any]]
HIDDEN = ("Resources", "object_store", "peer_address", "memory_usage")
WIDTH = 40  # a table cell's widest text; --detail and --json show everything


def add_parsers(sub: Any) -> None:
    """Add the list, summary and timeline subcommands to ``sub``."""
    ls = sub.add_parser("list", help="list nodes, tasks, actors or objects (tasks and actors "
                        "include finished ones and dead ones)")
    ls.add_argument("what", choices=KINDS)
    ls.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="keep rows where KEY=VALUE (or KEY!=VALUE); repeat to combine")
    ls.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="at most N rows (default 100)")
    ls.add_argument("--detail", action="store_true", help="every field, errors in full")
    ls.add_argument("--json", action="store_true")
    sm = sub.add_parser("summary", help="count tasks, actors or objects by state and name")
    sm.add_argument("what", choices=KINDS[:3])
    sm.add_argument("--json", action="store_true")
    tl = sub.add_parser("timeline", help="write a Chrome trace (chrome://tracing, Perfetto) "
                        "of the tasks in the head's history")
    tl.add_argument("--output", default=None, metavar="FILE",
                    help="where to write it (default: ember-timeline-<time>.json here)")


def list_cmd(args: argparse.Namespace, query: Query) -> int:
    """Print the rows of one kind as a table (or JSON)."""
    if args.limit < 0:
        raise ValueError(f"--limit {args.limit}: give 0 or more rows")
    filters = check_filters(args.filter)
    (answer,) = query([("state", {"what": args.what, "filters": filters, "limit": args.limit,
                                  "detail": args.detail})])
    rows, total = answer["rows"], answer["total"]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no {args.what}" + (" match the filters" if filters else ""))
        return 0
    cols: list[str] = []
    for r in rows:  # nodes carry both Alive and alive, as Ray's do: one column is enough
        for c in r:
            if c not in HIDDEN and c.lower() not in {k.lower() for k in cols}:
                cols.append(c)
    width = None if args.detail else WIDTH

    def cell(r: dict, c: str) -> str:
        text = "" if r.get(c) is None else str(r.get(c)).replace("\n", " | ")
        return text if width is None else text[:width]

    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        print("  ".join(cell(r, c).ljust(widths[c]) for c in cols).rstrip())
    if total > len(rows):
        print(f"({len(rows)} of {total} shown; raise --limit or add --filter to see others)")
    return 0


def summary_cmd(args: argparse.Namespace, query: Query) -> int:
    """Print counts by state (and by name) for one kind."""
    (s,) = query([("state", {"what": args.what, "summary": True})])
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    states = ", ".join(f"{n} {k}" for k, n in sorted(s["by_state"].items())) or "none"
    print(f"{args.what}: {s['total']} ({states})")
    if args.what == "objects":
        print(f"  total size: {s['total_bytes']} bytes")
        for kind, n in sorted(s["by_kind"].items()):
            print(f"  {kind or 'PENDING':12} {n}")
        return 0
    by_name = s["by_name"]
    if by_name:
        width = max(len(n) for n in by_name)
        for name, counts in by_name.items():
            print(f"  {name:{width}}  " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    return 0


def timeline_cmd(args: argparse.Namespace, query: Query, now: float) -> int:
    """Write the Chrome trace and say where."""
    import time

    (events,) = query([("timeline", None)])
    path = args.output or time.strftime("ember-timeline-%Y%m%d-%H%M%S.json", time.localtime(now))
    with open(path, "w") as f:
        json.dump(events, f)
    ran = sum(1 for e in events if e.get("ph") == "X")
    print(f"wrote {ran} task events to {path}; open it in chrome://tracing or https://ui.perfetto.dev")
    return 0
