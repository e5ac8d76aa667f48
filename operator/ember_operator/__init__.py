"""ember_operator: the Kubernetes operator for ember's ``RayCluster`` resource.

The package is layered so that every decision is a pure function and only a
thin outer shell talks to the API server:

- :mod:`ember_operator.constants`  names, labels, ports and paths shared by every layer;
- :mod:`ember_operator.quantities` Kubernetes resource quantities ("500m", "4Gi");
- :mod:`ember_operator.spec`       validation of a RayCluster spec and its parsed, defaulted form;
- :mod:`ember_operator.kuberay`    KubeRay's fields: start params, managedBy, what is not acted on;
- :mod:`ember_operator.builders`   the Pods, Service and Secret a cluster owns, as plain dicts;
- :mod:`ember_operator.planner`    which pods to create and delete to reach the desired state;
- :mod:`ember_operator.autoscaler` in-tree autoscaling: which idle workers to remove;
- :mod:`ember_operator.status`     the RayCluster status computed from what exists;
- :mod:`ember_operator.kube`       a small dict-in, dict-out client over the ``kubernetes`` package;
- :mod:`ember_operator.leader`     leader election on a coordination.k8s.io Lease;
- :mod:`ember_operator.reconciler` one level-triggered reconcile pass, serialized per cluster;
- :mod:`ember_operator.metrics`    Prometheus metrics and the ``/metrics`` + ``/healthz`` server;
- :mod:`ember_operator.runtime`    the running operator: config, threads, client, periodic resync;
- :mod:`ember_operator.handlers`   kopf handlers that trigger reconciles;
- :mod:`ember_operator.main`       the ``ember-operator`` command line.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
