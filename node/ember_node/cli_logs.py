"""``ember logs``: list a session's log files, or print one (its end, or following it).

    ember logs [--session DIR] [--node NODE]                      the files, with node, pid, size
    ember logs FILE | --worker-pid PID [--err] | --actor-id ID | --task-id ID | --job ID
               [--node NODE] [--tail N] [--follow]                print one

On this machine it reads the session directories directly: the running head's session and
its worker nodes' (``ember start``), else the newest session (``--session`` picks one, by
path or name; ended sessions keep their logs). With ``--address HOST:PORT`` (or
``EMBER_ADDRESS``) it asks the head over its token-checked gRPC port instead, for the files
of the head's session. An actor or task id is mapped to the worker that ran it with the
head's state, so those need the cluster running.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ember._local_cluster import all_records, sessions_dir

from ember_node import log_files as lf

Query = Callable[[list[tuple[str, Any]]], list[Any]]
DEFAULT_TAIL = 1000


def add_parser(sub: Any) -> None:
    """Add the ``logs`` subcommand to the ``ember`` parser's subparsers."""
    p = sub.add_parser("logs", help="list a session's log files, or print (and follow) one")
    p.add_argument("file", nargs="?", default="", help="a file name from the list")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--worker-pid", type=int, default=None, help="the output of the worker with this pid")
    who.add_argument("--actor-id", default="", help="the output of the worker that runs this actor")
    who.add_argument("--task-id", default="", help="the output of the worker that ran this task")
    who.add_argument("--job", default="", help="the log of this submitted job (its submission id)")
    p.add_argument("--err", action="store_true", help="a worker's stderr instead of its stdout")
    p.add_argument("--node", default="", help="only files of the node whose id (or session name) starts so")
    p.add_argument("--tail", type=int, default=DEFAULT_TAIL,
                   help=f"print the last N lines (default {DEFAULT_TAIL}; -1: the whole file)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing what is appended (Ctrl-C ends)")
    p.add_argument("--session", default=None, help="a session directory (path, or name under the sessions "
                   "directory) instead of the running or newest one")
    p.add_argument("--address", default=None,
                   help="ask the head at HOST:PORT (its gRPC port) for its session's logs")


def logs_cmd(args: argparse.Namespace, query: Query) -> int:
    """Run ``ember logs``; the exit status."""
    wants_one = bool(args.file or args.worker_pid is not None or args.actor_id or args.task_id or args.job)
    remote = args.address or (os.environ.get("EMBER_ADDRESS") if args.session is None else None)
    try:
        if remote:
            return _remote(args, remote, wants_one)
        files, dirs = local_files(args.session)
        if not wants_one:
            return _print_list([f for f in files if f.node.startswith(args.node)])
        pid = args.worker_pid
        for key, value in (("actor_id", args.actor_id), ("task_id", args.task_id)):
            if value:
                (rows,) = query([("state", {"what": key[:-3] + "s", "limit": None})])
                pid, _ = lf.worker_of(rows["rows"], key, value)
        f = lf.pick(files, name=args.file and lf.check_name(args.file), worker_pid=pid, job=args.job,
                    node=args.node, stderr=args.err)
        path = lf.path_in(dirs[f.node], f.name)
        start = lf.tail_start(path, args.tail)
        return _print_stream(f.kind == "worker", lf.read_log(path, start, args.follow))
    except lf.LogNotFound as exc:
        print(f"ember logs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def local_files(session: str | None) -> tuple[list[lf.LogFile], dict[str, str]]:
    """The log files of the sessions in question on this machine, each labelled with its
    session's name as the node, and each label's logs directory."""
    out: list[lf.LogFile] = []
    dirs: dict[str, str] = {}
    for d in session_dirs(session):
        label = os.path.basename(d.rstrip("/"))
        dirs[label] = os.path.join(d, "logs")
        out += lf.list_logs(dirs[label], label)
    return out, dirs


def session_dirs(session: str | None) -> list[str]:
    """``session`` (a path or a name under the sessions directory); else the running head's
    session and its worker nodes' on this machine; else the newest session."""
    root = sessions_dir()
    if session:
        path = session if os.sep in session else os.path.join(root, session)
        if not os.path.isdir(os.path.join(path, "logs")):
            raise lf.LogNotFound(f"{session} is no session directory (it has no logs/); "
                                 f"the sessions are under {root}")
        return [path]
    running = [r["session_dir"] for r in sorted(all_records(), key=lambda r: r.get("role") != "head")
               if r.get("session_dir") and os.path.isdir(r["session_dir"])]
    if running:
        return running
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(os.path.join(path, "logs")) and not os.path.islink(path):
            found.append((os.stat(path).st_mtime, path))
    if not found:
        raise lf.LogNotFound(f"no ember session on this machine (none under {root}); start one with "
                             f"`ember start --head`, or give --address HOST:PORT")
    return [max(found)[1]]


def _print_list(files: list[lf.LogFile]) -> int:
    if not files:
        print("no log files")
        return 0
    rows = [(f.node, f.kind, str(f.pid or ""), lf.format_size(f.size), f.name) for f in files]
    heads = ("NODE", "KIND", "PID", "SIZE", "FILE")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    for r in (heads, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _print_stream(worker: bool, chunks: Iterator[bytes]) -> int:
    out = sys.stdout.buffer
    render = lf.MarkRenderer() if worker else None
    for data in chunks:
        out.write(render.feed(data) if render else data)
        out.flush()
    if render:
        out.write(render.feed(b"", final=True))
        out.flush()
    return 0


def _remote(args: argparse.Namespace, address: str, wants_one: bool) -> int:
    import grpc
    from ember._proto import node_pb2 as pb
    from ember._proto import node_pb2_grpc as pb_grpc
    from ember._remote import channel
    from ember.job_submission import resolve_address

    address, token = resolve_address(address, None)
    auth = [("authorization", f"Bearer {token}")]
    ch = channel(address, os.environ.get("EMBER_TLS_CA"))
    stub = pb_grpc.NodeStub(ch)
    try:
        if not wants_one:
            reply = stub.LogFiles(pb.LogFilesRequest(), metadata=auth, timeout=30)
            files = [lf.LogFile(f.name, f.size, f.mtime, f.kind, f.pid or None, f.job, reply.node_id[:12])
                     for f in reply.files]
            return _print_list([f for f in files if f.node.startswith(args.node)])
        call = stub.StreamLog(pb.StreamLogRequest(
            name=args.file, worker_pid=args.worker_pid or 0, actor_id=args.actor_id, task_id=args.task_id,
            job=args.job, stderr=args.err, tail_lines=args.tail, follow=args.follow), metadata=auth)

        def chunks() -> Iterator[bytes]:
            for chunk in call:
                if chunk.data:
                    yield chunk.data

        first = next(iter(call))
        worker = lf.classify(first.name)[0] == "worker"
        try:
            return _print_stream(worker, chunks())
        finally:
            call.cancel()
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise ConnectionError(f"the head at {address} refused the token: set EMBER_TOKEN") from None
        if code == grpc.StatusCode.UNAVAILABLE:
            raise ConnectionError(f"cannot reach the head at {address}: {exc.details()}") from None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            raise ConnectionError(f"{address} serves no logs: give the head's gRPC address") from None
        if code == grpc.StatusCode.CANCELLED:
            return 0
        print(f"ember logs: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        ch.close()
