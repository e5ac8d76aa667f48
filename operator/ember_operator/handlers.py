"""kopf handlers: every one of them only triggers a reconcile pass.

- ``create``/``update``/``resume`` of a RayCluster: a pass; API errors are retried by
  kopf (``TemporaryError``);
- every RayCluster event: keep the operator's list of clusters for its periodic resync
  (its own loop, see :mod:`ember_operator.runtime`), which repairs whatever was missed;
  on DELETED, forget the cluster (its objects are garbage-collected through their
  ownerReferences, so no finalizer is needed);
- events of pods labelled ``app.kubernetes.io/managed-by=ember-operator``: a pass for
  the owning cluster (a pod died, was deleted, became ready...), coalesced;
- login: the pod's service account, else the kubeconfig (as our own client);
- startup/cleanup: kopf settings, then open/close the :class:`~ember_operator.runtime.Operator`.

Handlers are registered into an explicit registry (:func:`register`) so tests can run
several differently configured operators in one process.
"""

import logging
from typing import Any

import kopf

from ember_operator import constants as c
from ember_operator.kube import ApiError
from ember_operator.runtime import Operator

__all__ = ["register", "configure_settings", "owning_cluster"]

logger = logging.getLogger(__name__)

RESOURCE = (c.GROUP, c.VERSION, c.PLURAL)


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """Keep kopf's bookkeeping in ``ember.dev/`` annotations, never in the status.

    The CRD's status schema is ours; a real API server would prune ``status.kopf``.
    """
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # the reconciler posts its own Events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


def owning_cluster(body: Any) -> str | None:
    """The name of the RayCluster controlling this pod, if any."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == c.KIND and ref.get("apiVersion") == c.API_VERSION and ref.get("controller"):
            return str(ref.get("name"))
    return None


def register(registry: kopf.OperatorRegistry, operator: Operator) -> None:
    """Register the operator's handlers into ``registry``."""

    def change(trigger: str, namespace: str, name: str) -> None:
        try:
            operator.reconciler.reconcile(namespace, name, trigger=trigger)
        except ApiError as exc:
            raise kopf.TemporaryError(f"reconcile failed: {exc}", delay=5) from exc

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # Through the kubernetes package, as our own client: the service account, else kubeconfig.
        # (It reads a file or two: brief enough to do on the loop, once at startup.)
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_settings(settings)
        await operator.open()
        settings.execution.executor = operator.executor  # sync handlers run in our own threads

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await operator.close()

    @kopf.on.create(*RESOURCE, registry=registry)
    def cluster_created(namespace: str, name: str, **_: Any) -> None:
        change("create", namespace, name)

    @kopf.on.update(*RESOURCE, registry=registry)
    def cluster_updated(namespace: str, name: str, **_: Any) -> None:
        change("update", namespace, name)

    @kopf.on.resume(*RESOURCE, registry=registry)
    def cluster_resumed(namespace: str, name: str, **_: Any) -> None:
        change("resume", namespace, name)

    @kopf.on.event(*RESOURCE, registry=registry)
    async def cluster_event(event: Any, namespace: str, name: str, **_: Any) -> None:
        # Every RayCluster is seen here (also at startup): keep the resync's list current.
        if event.get("type") == "DELETED":
            operator.untrack(namespace, name)
        else:
            operator.track(namespace, name)

    @kopf.on.event("", "v1", "pods", labels={c.LABEL_MANAGED_BY: c.MANAGER}, registry=registry)
    def pod_event(body: Any, namespace: str, **_: Any) -> None:
        cluster = owning_cluster(body)
        if cluster is None:
            return
        try:
            operator.reconciler.reconcile(namespace, cluster, trigger="pod", coalesce=True)
        except ApiError as exc:
            logger.warning("Reconcile of %s/%s after a pod event failed: %s", namespace, cluster, exc)
