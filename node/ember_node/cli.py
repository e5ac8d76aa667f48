"""The ``ember`` command: start, stop, status and list for a cluster on this machine.

    ember start --head [--port 6380] [--num-cpus N] [--block]   start a node agent (the head)
    ember stop                                                  stop what `ember start` started here
    ember status                                                nodes, resources, what runs, what waits
    ember list nodes|tasks|actors|objects [--filter K=V] [--limit N] [--detail] [--json]
    ember summary tasks|actors|objects [--json]                 counts by state and name
    ember timeline [--output FILE]                              Chrome trace of finished tasks
    ember run script.py [args]                                  run a Ray program unchanged (ray -> ember)
    ember job submit|status|logs|stop|list|delete               jobs run on the head (see cli_jobs)
    ember list jobs [--address HOST:PORT] [--json]              the same as `ember job list`
    ember logs [FILE | --worker-pid P | --actor-id A | --task-id T | --job J] [--tail N] [--follow]
                                                                a session's log files (see cli_logs)
    ember memory [--group-by call_site|kind|state] [--sort-by size|count] [--limit N]
                                                                objects by size and call site
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from ember import _messages as M
from ember._local_cluster import (
    all_records,
    base_dir,
    new_session_dir,
    read_record,
    remove_record,
    write_record,
)

from ember_node import cli_jobs, cli_logs, cli_memory, cli_state
from ember_node.start_flags import RAY_IGNORED, parse_bool, parse_resources


class _IgnoredRayFlag(argparse.Action):
    """A ``ray start`` flag with no meaning here: remembered, to be warned about, not refused."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        namespace.ray_ignored = [*getattr(namespace, "ray_ignored", []), str(option).lstrip("-")]


def _start_parser(sub: Any) -> None:
    p = sub.add_parser("start", help="start a node agent on this machine")
    p.add_argument("--head", action="store_true", help="start the head node of a new cluster")
    p.add_argument("--address", help="join the cluster whose head is at HOST:PORT")
    p.add_argument("--port", type=int, default=6380, help="gRPC port of the head (default 6380)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--node-ip-address", default=None,
                   help="this node's IP address, as Ray's: the head binds it (unless --host), a "
                        "worker node advertises it to its peers")
    p.add_argument("--num-cpus", type=float, default=None)
    p.add_argument("--num-gpus", type=float, default=None)
    p.add_argument("--memory", type=int, default=None)
    p.add_argument("--resources", default=None, help='custom resources as JSON, e.g. \'{"gpu_type_a": 1}\'')
    p.add_argument("--object-store-memory", type=int, default=None)
    p.add_argument("--metrics-port", "--metrics-export-port", dest="metrics_port", type=int, default=None,
                   help="serve /metrics and /healthz on this port (Ray's --metrics-export-port)")
    p.add_argument("--heartbeat-timeout", type=float, default=None,
                   help="head: declare a worker node dead after this many seconds without a heartbeat (10)")
    p.add_argument("--dashboard-port", type=int, default=None,
                   help="head: serve the web dashboard on this port (default 8265, or the next free one)")
    p.add_argument("--dashboard-host", default=None,
                   help="head: address the dashboard binds to (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--include-dashboard", nargs="?", const="true", default=None, type=parse_bool,
                   help="head: serve the dashboard (true, the default) or not (false)")
    p.add_argument("--token-file", default=None, help="use this token instead of generating one")
    p.add_argument("--state-dir", default=None,
                   help="head: keep the cluster directory (named/detached actors, functions, jobs, "
                        "nodes) in DIR/head.db (SQLite), created 0700")
    p.add_argument("--tls-cert", default=None, help="head: PEM certificate, serve gRPC over TLS")
    p.add_argument("--tls-key", default=None, help="head: PEM private key for --tls-cert")
    p.add_argument("--tls-ca", default=None, help="worker node: PEM CA to verify the head's certificate")
    p.add_argument("--block", action="store_true", help="stay in the foreground (for containers)")
    p.set_defaults(ray_ignored=[])
    for flag in sorted(RAY_IGNORED):
        # Ray flags with no meaning here: a value is optional, so switches and options both parse
        p.add_argument(f"--{flag}", nargs="?", action=_IgnoredRayFlag, help=argparse.SUPPRESS)


def _warn_ignored(args: argparse.Namespace) -> None:
    for flag in dict.fromkeys(args.ray_ignored):
        print(f"ember start: ignoring the Ray flag --{flag}: {RAY_IGNORED[flag]}", file=sys.stderr)


def _normalize(args: argparse.Namespace) -> None:
    """Ray's spellings to ember's: --resources without shell quotes, --node-ip-address."""
    if args.resources is not None:
        args.resources = json.dumps(parse_resources(args.resources))
    if args.host is None:
        args.host = args.node_ip_address if args.head and args.node_ip_address else "127.0.0.1"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["list", "jobs"]:  # the jobs live with the head's job runner: `ember job list`
        argv = ["job", "list", *argv[2:]]
    if argv and argv[0] == "run":  # everything after `run` belongs to the program
        from ember.run import main as run_main

        return run_main(argv[1:])
    parser = argparse.ArgumentParser(prog="ember", description="ember cluster command line")
    sub = parser.add_subparsers(dest="command", required=True)
    _start_parser(sub)
    sub.add_parser("stop", help="stop the cluster started on this machine")
    st = sub.add_parser("status", help="show nodes, resources and work")
    st.add_argument("--json", action="store_true")
    cli_state.add_parsers(sub)
    cli_jobs.add_parsers(sub)
    cli_logs.add_parser(sub)
    cli_memory.add_parser(sub)
    sub.add_parser("run", help="run a Ray program unchanged: ember run script.py [args]")
    args = parser.parse_args(argv)
    try:
        return {"start": start, "stop": stop, "status": status, "list": list_cmd,
                "summary": summary_cmd, "timeline": timeline_cmd, "job": cli_jobs.job_cmd,
                "logs": logs_cmd, "memory": memory_cmd}[args.command](args)
    except (ConnectionError, ValueError, OSError) as exc:
        print(f"ember {args.command}: {exc}", file=sys.stderr)
        return 1


def start(args: argparse.Namespace) -> int:
    _warn_ignored(args)
    _normalize(args)
    if args.head == bool(args.address):
        print("ember start: say either --head (a new cluster) or --address HOST:PORT (join one)",
              file=sys.stderr)
        return 2
    if args.address:
        return _start_worker_node(args)
    existing = read_record()
    if existing is not None:
        print(f"ember start: a cluster is already running on this machine (agent pid {existing['pid']}, "
              f"address {existing.get('address')}); run `ember stop` first", file=sys.stderr)
        return 1
    session_dir = new_session_dir("session-")
    token_file = args.token_file
    generated = False
    if token_file is None:
        token_file = os.path.join(base_dir(), "token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        generated = True
    cmd = [sys.executable, "-m", "ember_node", "--session-dir", session_dir, "--host", args.host,
           "--port", str(args.port), "--token-file", os.path.abspath(token_file)]
    for flag, value in (("--num-cpus", args.num_cpus), ("--num-gpus", args.num_gpus),
                        ("--memory", args.memory), ("--object-store-memory", args.object_store_memory),
                        ("--resources", args.resources), ("--metrics-port", args.metrics_port),
                        ("--heartbeat-timeout", args.heartbeat_timeout),
                        ("--state-dir", args.state_dir and os.path.abspath(args.state_dir)),
                        ("--tls-cert", args.tls_cert and os.path.abspath(args.tls_cert)),
                        ("--tls-key", args.tls_key and os.path.abspath(args.tls_key))):
        if value is not None:
            cmd += [flag, str(value)]
    cmd += _dashboard_flags(args)
    proc, info = _launch(cmd, os.path.join(session_dir, "logs", "agent.log"), args.block)
    if info is None:
        return 1
    write_record({"pid": proc.pid, "role": "head", "socket": info["socket"], "address": info.get("address"),
                  "session_dir": session_dir, "token_file": os.path.abspath(token_file),
                  "arena": info.get("arena")})
    with open(token_file) as f:
        token = f.read().strip()
    print(f"ember head started (agent pid {proc.pid}) at {info.get('address')}")
    print("  on this machine:  ember.init(address=\"auto\")")
    print(f"  from elsewhere:   ember.init(\"{info.get('address')}\", token=...)  # or EMBER_TOKEN")
    if generated:
        print(f"  cluster token (stored 0600 in {token_file}): {token}")
    if info.get("dashboard_url"):
        print(f"  dashboard:        {info['dashboard_url']}  (log in with the cluster token)")
    elif info.get("dashboard_error"):
        print(f"  dashboard:        not served: {info['dashboard_error']}")
    print("  stop it with:     ember stop")
    sys.stdout.flush()
    if args.block:
        return _wait_foreground(proc)
    return 0


def _dashboard_flags(args: argparse.Namespace) -> list[str]:
    """The agent's dashboard flags for ``ember start --head``: on by default at 8265 (the
    next free port when that one is taken and no port was asked for)."""
    if args.include_dashboard is False:
        return []
    port = 8265 if args.dashboard_port is None else args.dashboard_port
    flags = ["--dashboard-port", str(port), "--dashboard-host", args.dashboard_host or "127.0.0.1"]
    return flags + (["--dashboard-next-free"] if args.dashboard_port is None else [])


def _wait_foreground(proc: subprocess.Popen) -> int:
    """--block: stay until the agent exits; SIGTERM/SIGINT stop it."""
    def forward(signum: int, frame: Any) -> None:
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = proc.wait()
    remove_record(proc.pid)
    return code


def _start_worker_node(args: argparse.Namespace) -> int:
    token_file = args.token_file
    if token_file is None:
        env_token = os.environ.get("EMBER_TOKEN")
        if not env_token:
            print("ember start: joining a cluster needs its token: --token-file FILE or EMBER_TOKEN",
                  file=sys.stderr)
            return 2
        fd, token_file = tempfile.mkstemp(prefix="token-", dir=base_dir())
        with os.fdopen(fd, "w") as f:
            f.write(env_token)
    session_dir = new_session_dir("node-")
    cmd = [sys.executable, "-m", "ember_node.worker_node", "--address", args.address,
           "--token-file", os.path.abspath(token_file), "--session-dir", session_dir]
    for flag, value in (("--num-cpus", args.num_cpus), ("--num-gpus", args.num_gpus),
                        ("--memory", args.memory), ("--resources", args.resources),
                        ("--object-store-memory", args.object_store_memory),
                        ("--tls-ca", args.tls_ca and os.path.abspath(args.tls_ca))):
        if value is not None:
            cmd += [flag, str(value)]
    if args.metrics_port is not None:
        cmd += ["--metrics-port", str(args.metrics_port), "--metrics-host", args.host]
    cmd += ["--host", args.host]  # the peer port, where other nodes fetch copies of objects
    advertise = os.environ.get("EMBER_NODE_NAME") or os.environ.get("EMBER_POD_IP")
    if advertise:
        cmd += ["--advertise", advertise]
    peer = args.node_ip_address or os.environ.get("EMBER_POD_IP")
    if peer:
        cmd += ["--peer-advertise", peer]
    proc, info = _launch(cmd, os.path.join(session_dir, "logs", "node.log"), args.block)
    if info is None:
        return 1
    write_record({"pid": proc.pid, "role": "worker", "address": args.address, "session_dir": session_dir})
    print(f"ember worker node started (pid {proc.pid}); it joins the head at {args.address} "
          f"and retries until the head answers")
    sys.stdout.flush()
    if args.block:
        return _wait_foreground(proc)
    return 0


def _launch(cmd: list[str], log_path: str, block: bool) -> tuple[subprocess.Popen, dict | None]:
    """Start an agent (in the foreground with ``block``, else detached, logging to
    ``log_path``) and wait for the line it writes once it is ready; (process, that line)."""
    rfd, wfd = os.pipe()
    cmd = [*cmd, "--ready-fd", str(wfd)]
    if block:
        proc = subprocess.Popen(cmd, pass_fds=(wfd,))
    else:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, pass_fds=(wfd,), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, start_new_session=True)
    os.close(wfd)
    try:
        return proc, _wait_ready(rfd, proc, log_path)
    finally:
        os.close(rfd)


def _wait_ready(rfd: int, proc: subprocess.Popen, log_path: str, timeout: float = 30.0) -> dict | None:
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            proc.wait()
            print(f"ember start: the node agent did not start within {timeout:.0f} s; see {log_path}",
                  file=sys.stderr)
            return None
        ready, _, _ = select.select([rfd], [], [], left)
        if ready:
            chunk = os.read(rfd, 65536)
            if not chunk:
                proc.wait()
                tail = ""
                try:
                    with open(log_path) as f:
                        tail = f.read()[-2000:]
                except OSError:
                    pass
                print(f"ember start: the node agent failed to start:\n{tail}", file=sys.stderr)
                return None
            data += chunk
    return json.loads(data)


def stop(args: argparse.Namespace) -> int:
    records = all_records()
    if not records:
        print("ember stop: nothing started by `ember start` is running on this machine")
        return 0
    # worker nodes first, so they do not keep retrying a head that is gone
    records.sort(key=lambda r: r.get("role") == "head")
    for rec in records:
        pid = int(rec["pid"])
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        remove_record(pid)
        print(f"ember stopped the {rec.get('role', 'head')} agent (pid {pid})")
    return 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _query(requests: list[tuple[str, Any]]) -> list[Any]:
    rec = read_record()
    if rec is None:
        raise ConnectionError("no cluster started by `ember start` is running on this machine")
    from ember._runtime import CoreRuntime
    from ember._wire import ClientConnection

    rt = CoreRuntime(ClientConnection.connect(rec["socket"]), None, "driver")
    try:
        rt.send((M.HELLO, "tool", os.getpid(), None, M.hello_info()))
        return [rt.request(M.REQUEST, what, arg, timeout=30) for what, arg in requests]
    finally:
        rt.close()


def status(args: argparse.Namespace) -> int:
    nodes, total, avail, stats, tasks, actors = _query([
        ("nodes", None), ("cluster_resources", None), ("available_resources", None), ("stats", None),
        ("list", "tasks"), ("list", "actors")])
    if args.json:
        print(json.dumps({"nodes": nodes, "resources": total, "available": avail, "stats": stats,
                          "tasks": tasks, "actors": actors}, indent=2, default=str))
        return 0
    alive = sum(1 for n in nodes if n["Alive"])
    print(f"nodes: {alive} alive, {len(nodes) - alive} dead")
    for n in nodes:
        res = ", ".join(f"{k} {_num(v)}" for k, v in n["Resources"].items()
                        if k not in ("object_store_memory", "memory"))  # bytes: in the totals
        store = n.get("object_store")
        if store and n["Alive"]:
            res += f"; store {_bytes(store[0])} / {_bytes(store[1])}"
        mem = n.get("memory_usage")
        if mem and mem[1]:
            res += f"; memory {_bytes(mem[0])} / {_bytes(mem[1])} ({mem[0] / mem[1]:.0%})"
        print(f"  {n['NodeID'][:12]}  {n['NodeManagerAddress']:15}  {'ALIVE' if n['Alive'] else 'DEAD'}  {res}")
    print("resources (used / total):")
    for k, v in total.items():
        used = v - avail.get(k, 0.0)
        if k in ("memory", "object_store_memory"):
            print(f"  {k:22} {_bytes(used)} / {_bytes(v)}")
        else:
            print(f"  {k:22} {_num(used)} / {_num(v)}")
    running = [t for t in tasks if t["state"] == "RUNNING"]
    pending = [t for t in tasks if t["state"] != "RUNNING"]
    print(f"tasks: {len(running)} running, {len(pending)} pending")
    for t in pending[:20]:
        print(f"  {t['name']:30} {t.get('pending_reason', '')}")
    print(f"actors: {sum(1 for a in actors if a['state'] == 'ALIVE')} alive of {len(actors)}")
    print(f"object store: {_bytes(stats['store_bytes'])} / {_bytes(stats['store_capacity'])}, "
          f"{stats['objects']} objects, {_bytes(stats['spilled_bytes'])} spilled")
    print(f"workers: {stats['workers']} ({stats['idle_workers']} idle)")
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    return cli_state.list_cmd(args, _query)


def logs_cmd(args: argparse.Namespace) -> int:
    return cli_logs.logs_cmd(args, _query)


def memory_cmd(args: argparse.Namespace) -> int:
    return cli_memory.memory_cmd(args, _query)


def summary_cmd(args: argparse.Namespace) -> int:
    return cli_state.summary_cmd(args, _query)


def timeline_cmd(args: argparse.Namespace) -> int:
    return cli_state.timeline_cmd(args, _query, time.time())


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


if __name__ == "__main__":
    sys.exit(main())
