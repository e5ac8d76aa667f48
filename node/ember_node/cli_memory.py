"""``ember memory``: the cluster's objects by size and by the call site that made them (as
Ray's ``ray memory``), from the head's object table.

    ember memory [--group-by call_site|kind|state] [--sort-by size|count] [--limit N]
                 [--objects] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ember._state_query import MEMORY_GROUPS, MEMORY_SORTS, memory_groups

from ember_node.log_files import format_size

Query = Callable[[list[tuple[str, Any]]], list[Any]]


def add_parser(sub: Any) -> None:
    """Add the ``memory`` subcommand to the ``ember`` parser's subparsers."""
    p = sub.add_parser("memory", help="objects in the cluster by size and by the call site that made them")
    p.add_argument("--group-by", choices=MEMORY_GROUPS, default="call_site",
                   help="group objects by where they were made (default), their kind or state")
    p.add_argument("--sort-by", choices=MEMORY_SORTS, default="size",
                   help="largest total size first (default), or most objects first")
    p.add_argument("--limit", type=int, default=20, help="at most N groups (and N objects with --objects)")
    p.add_argument("--objects", action="store_true", help="also the N largest objects, one line each")
    p.add_argument("--json", action="store_true")


def memory_cmd(args: argparse.Namespace, query: Query) -> int:
    """Print the groups (and with ``--objects`` the largest objects); the exit status."""
    if args.limit < 0:
        raise ValueError(f"--limit {args.limit}: give 0 or more")
    (answer,) = query([("state", {"what": "objects", "limit": None, "detail": True})])
    rows = answer["rows"]
    groups = memory_groups(rows, args.group_by, args.sort_by, args.limit)
    largest = sorted(rows, key=lambda r: -(r.get("size") or 0))[: args.limit] if args.objects else []
    if args.json:
        print(json.dumps({"groups": groups, "objects": largest}, indent=2, default=str))
        return 0
    total = sum(r.get("size") or 0 for r in rows)
    print(f"{len(rows)} objects, {format_size(total)} in all")
    if not rows:
        return 0
    key = args.group_by
    width = max(len(key), *(len(str(g[key])) for g in groups))
    print(f"{key.upper():{width}}  {'OBJECTS':>7}  {'TOTAL':>10}  {'LARGEST':>10}")
    for g in groups:
        print(f"{g[key]:{width}}  {g['count']:>7}  {format_size(g['total_bytes']):>10}  "
              f"{format_size(g['largest']):>10}")
    shown = len(groups)
    every = len(memory_groups(rows, key))
    if every > shown:
        print(f"({shown} of {every} groups shown; raise --limit to see others)")
    if all(not r.get("call_site") for r in rows):
        print("\nno call sites recorded: run the driver with EMBER_RECORD_CALLSITE=1 (and `ember start` "
              "with it too, for the objects tasks make)")
    if largest:
        print("\nlargest objects:")
        for r in largest:
            print(f"  {r['object_id']}  {format_size(r.get('size') or 0):>10}  {r.get('kind') or 'PENDING':8}"
                  f"  {r.get('call_site') or '(unknown)'}")
    return 0
