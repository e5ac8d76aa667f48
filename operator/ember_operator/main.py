"""The ``ember-operator`` command: run the RayCluster operator with kopf, standalone.

    ember-operator --namespace team-a --namespace team-b
    ember-operator --all-namespaces --metrics-port 8080

kopf runs with ``standalone`` (no peering objects); several replicas may run: with
``--leader-elect`` (the default) they elect one leader on a ``coordination.k8s.io``
Lease (``--leader-election-namespace``/``--leader-election-id``) and only it acts.
``/metrics`` and ``/healthz`` are served on ``--metrics-port`` by every replica.
"""

import argparse
import os
import socket
import threading
from collections.abc import Sequence

import kopf

from ember_operator import constants as c
from ember_operator.handlers import register
from ember_operator.leader import LeaseConfig
from ember_operator.runtime import Operator, OperatorConfig

__all__ = ["parse_args", "lease_config", "config_from_args", "kopf_settings", "build_registry", "run", "main"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; exits with a usage message on errors."""
    parser = argparse.ArgumentParser(
        prog="ember-operator",
        description="Run the ember RayCluster operator (ember.dev/v1alpha1).",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", dest="namespaces", action="append", metavar="NS",
                       help="watch this namespace (repeat for several; globs like team-* work "
                            "if the operator may list namespaces)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--metrics-port", type=int, default=c.METRICS_PORT,
                        help="port for /metrics and /healthz (default %(default)s)")
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address to bind (default %(default)s)")
    parser.add_argument("--resync-seconds", type=float, default=30.0,
                        help="period of the full reconcile of every cluster (default %(default)s)")
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                        help="elect a leader among replicas on a Lease; only it acts (default: on)")
    parser.add_argument("--leader-election-namespace", default=None,
                        help="namespace of the Lease (default: $POD_NAMESPACE, else the service "
                             "account's namespace, else default)")
    parser.add_argument("--leader-election-id", default="ember-operator", help="name of the Lease")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("-d", "--debug", action="store_true", help="log everything")
    return parser.parse_args(argv)


def kopf_settings(args: argparse.Namespace) -> kopf.OperatorSettings:
    """kopf settings for this command line (the rest is set by the startup handler).

    With only exact namespace names, kopf need not observe namespaces (nor CRDs): that
    spares the operator cluster-wide RBAC on them. Patterns (``team-*``) need it.
    """
    settings = kopf.OperatorSettings()
    names = args.namespaces or ()
    settings.scanning.disabled = bool(names) and not any(set(n) & set("*?[!") for n in names)
    return settings


def build_registry(operator: Operator) -> kopf.OperatorRegistry:
    """A fresh kopf registry holding the operator's handlers."""
    registry = kopf.OperatorRegistry()
    register(registry, operator)
    return registry


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _own_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def lease_config(args: argparse.Namespace) -> LeaseConfig | None:
    """The leader-election Lease the command line asks for (None with --no-leader-elect)."""
    if not args.leader_elect:
        return None
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    return LeaseConfig(namespace=args.leader_election_namespace or _own_namespace(),
                       name=args.leader_election_id, identity=identity)


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    """The operator configuration the command line asks for."""
    return OperatorConfig(
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        resync_seconds=args.resync_seconds,
        head_idleness=True,
        leader_election=lease_config(args),
    )


def run(
    args: argparse.Namespace,
    *,
    config: OperatorConfig | None = None,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> Operator:
    """Run the operator until stopped (a signal, or ``stop_flag``); returns it when done."""
    operator = Operator(config or config_from_args(args))
    kopf.run(
        registry=build_registry(operator),
        settings=kopf_settings(args),
        standalone=True,
        clusterwide=bool(args.all_namespaces),
        namespaces=tuple(args.namespaces or ()),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
    return operator


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ember-operator`` console script."""
    args = parse_args(argv)
    kopf.configure(debug=args.debug, verbose=args.verbose)
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
