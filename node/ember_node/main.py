"""``python -m ember_node``: run a node agent (the head, or an embedded cluster's node)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

from ember._local_cluster import end_session, write_pid_file
from ember._oom import keep_agent_last
from ember._private_dir import UnsafePathError

from ember_node.agent import HEARTBEAT_TIMEOUT_S, Agent
from ember_node.fd_limit import raise_open_file_limit
from ember_node.leftovers import sweep_stale_arenas
from ember_node.session_dir import prepare_session_dir
from ember_node.store import available_memory, default_capacity, task_memory

log = logging.getLogger("ember.agent")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ember_node", description="ember node agent")
    p.add_argument("--session-dir", required=True)
    p.add_argument("--num-cpus", type=float, default=None)
    p.add_argument("--num-gpus", type=float, default=0)
    p.add_argument("--resources", default="{}")
    p.add_argument("--object-store-memory", type=int, default=None)
    p.add_argument("--memory", type=int, default=None)
    p.add_argument("--ready-fd", type=int, default=None)
    p.add_argument("--embedded", action="store_true")
    p.add_argument("--host", default="127.0.0.1", help="address the gRPC port binds to")
    p.add_argument("--port", type=int, default=None, help="gRPC port for remote drivers (none: local only)")
    p.add_argument("--token-file", default=None, help="file holding the cluster token (required with --port)")
    p.add_argument("--heartbeat-timeout", type=float, default=HEARTBEAT_TIMEOUT_S,
                   help="declare a worker node dead after this many seconds without a heartbeat")
    p.add_argument("--tls-cert", default=None, help="PEM certificate: serve gRPC over TLS")
    p.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus /metrics and /healthz on this port (none: no endpoint)")
    p.add_argument("--state-dir", default=None,
                   help="keep the cluster directory in DIR/head.db (ember_node.head_state)")
    p.add_argument("--metrics-host", default=None, help="address the metrics port binds to (default: --host)")
    p.add_argument("--dashboard-port", type=int, default=None, help="serve the web dashboard on this port")
    p.add_argument("--dashboard-host", default=None, help="address the dashboard binds to (default 127.0.0.1)")
    p.add_argument("--dashboard-next-free", action="store_true",
                   help="if --dashboard-port is taken, use the next free port after it")
    return p.parse_args(argv)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _serve_dashboard(agent: Agent, args: argparse.Namespace, jobs: Any, token: str) -> Any:
    """Start the web dashboard (ember_node.dashboard) and note its URL in the session; a
    port in use is logged, not fatal: the cluster runs without it. An embedded cluster has
    no cluster token: it makes one for the dashboard, and its URL carries it."""
    import secrets

    from ember_node.dashboard.data import AgentQuery, DashboardData
    from ember_node.dashboard.server import PORT_TRIES, Dashboard

    if not token:
        token = secrets.token_urlsafe(24)
        with_token = True
    else:
        with_token = False

    def finished() -> int:
        return sum(c[1] + c[2] for c in agent.metrics.task_counts().values())

    data = DashboardData(AgentQuery(agent.socket_path), jobs, os.path.join(args.session_dir, "logs"), finished)
    dashboard = Dashboard(data, token)
    host = args.dashboard_host or "127.0.0.1"
    try:
        dashboard.serve(args.dashboard_port, host, PORT_TRIES if args.dashboard_next_free else 1)
    except OSError as exc:
        log.warning("%s; the cluster runs without its dashboard", exc)
        agent.session["dashboard_error"] = str(exc)
        return None
    agent.session["dashboard_url"] = dashboard.url(host)
    if with_token:
        agent.session["dashboard_login_url"] = dashboard.url(host, with_token=True)
    log.info("dashboard at %s", dashboard.url(host))
    return dashboard


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    before, after = raise_open_file_limit()
    if after != before:
        log.info("raised the open-file limit from %d to %d", before, after)
    try:
        prepare_session_dir(args.session_dir)
    except UnsafePathError as exc:
        raise SystemExit(f"ember agent: {exc}") from None
    if (adj := keep_agent_last()) is not None and adj > 0:
        logging.getLogger("ember.agent").warning(
            "this agent's oom_score_adj is %d and cannot be lowered to 0: under memory pressure the "
            "kernel may kill it before the workers; start it from a process with oom_score_adj <= 0", adj)
    write_pid_file(args.session_dir)
    totals: dict[str, float] = {"CPU": float(args.num_cpus if args.num_cpus is not None else os.cpu_count() or 1)}
    if args.num_gpus:
        totals["GPU"] = float(args.num_gpus)
    totals.update({k: float(v) for k, v in json.loads(args.resources).items()})
    capacity = args.object_store_memory or default_capacity()
    totals["object_store_memory"] = float(capacity)
    totals["memory"] = float(args.memory or task_memory(available_memory(), capacity))
    signal.signal(signal.SIGTERM, _exit_on_signal)
    sweep_stale_arenas()  # what agents killed with SIGKILL left in /dev/shm
    try:
        agent = Agent(args.session_dir, totals, capacity, args.embedded)
    except BaseException:
        end_session(args.session_dir)  # its logs stay
        raise
    agent.heartbeat_timeout = args.heartbeat_timeout
    if args.state_dir:
        from ember_node.head_state import HeadState, StateVersionError

        try:
            agent.head_state = HeadState(args.state_dir)
        except (UnsafePathError, StateVersionError, OSError) as exc:
            agent.close()
            end_session(args.session_dir)
            raise SystemExit(f"ember head: cannot use --state-dir {args.state_dir}: {exc}") from None
        log.info("keeping the cluster directory in %s", agent.head_state.path)
        from ember_node.head_resume import resume

        resume(agent, agent.head_state)
    server = None
    jobs = None
    dashboard = None
    token = ""
    try:
        if args.port is not None:
            from ember_node.grpc_server import serve

            if not args.token_file:
                raise SystemExit("--port needs --token-file: every gRPC call is checked against the cluster token")
            with open(args.token_file) as f:
                token = f.read().strip()
            tls = None
            if args.tls_cert or args.tls_key:
                if not (args.tls_cert and args.tls_key):
                    raise SystemExit("TLS needs both --tls-cert and --tls-key")
                with open(args.tls_cert, "rb") as c, open(args.tls_key, "rb") as k:
                    tls = (c.read(), k.read())
            from ember_node.jobs import JobManager

            jobs = JobManager(args.session_dir, f"unix:{agent.socket_path}")
            server, bound = serve(agent, args.host, args.port, token, agent.metrics.auth_failure, tls, jobs)
            host = args.host
            if host in ("0.0.0.0", "::", ""):  # bound everywhere: advertise a reachable address
                host = os.environ.get("EMBER_POD_IP") or socket.gethostname()
            agent.address = f"{host}:{bound}"
            agent.local.address = agent.address
            agent.session["address"] = agent.address
        if args.metrics_port is not None:
            agent.session["metrics_port"] = agent.metrics.serve(args.metrics_port, args.metrics_host or args.host)
        if args.dashboard_port is not None:
            dashboard = _serve_dashboard(agent, args, jobs, token)
        if args.ready_fd is not None:
            os.write(args.ready_fd, json.dumps(agent.session).encode() + b"\n")
            os.close(args.ready_fd)
        profile_path = os.environ.get("EMBER_AGENT_PROFILE")
        if profile_path:  # developer aid: cProfile the event loop
            import cProfile

            cProfile.runctx("agent.run()", globals(), {"agent": agent}, profile_path)
        else:
            agent.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    except BaseException:
        log.exception("the node agent failed; its logs stay in %s", os.path.join(args.session_dir, "logs"))
        raise
    finally:
        try:
            if jobs is not None:  # the entrypoints end first (SIGTERM, then SIGKILL), like drivers
                jobs.close()
            if dashboard is not None:
                dashboard.close()
            if server is not None and not server.stop(grace=0).wait(5):
                log.warning("the gRPC server did not stop within 5 s; exiting anyway")
            agent.metrics.close()
            agent.close()
            if agent.head_state is not None:
                agent.head_state.close()
        finally:
            end_session(args.session_dir)  # its logs stay (ember._local_cluster prunes old ones)
