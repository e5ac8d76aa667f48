"""A small synchronous Kubernetes client: dicts in, dicts out.

It rides on the official ``kubernetes`` package for configuration (in-cluster service
account or kubeconfig), authentication and TLS, but speaks plain JSON so the rest of
the operator works with the same dicts the builders produce. Only the verbs the
operator needs are here: get, list (equality label selectors), create, merge-patch
and delete. Calls block: run them in kopf's executor threads, never on an event loop.
"""

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import kubernetes
import urllib3

from ember_operator import constants as c

__all__ = ["ApiError", "KubeClient", "load_configuration", "label_selector"]

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server (status 0: it could not be reached)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")

    @property
    def not_found(self) -> bool:
        """The object (or the resource) does not exist."""
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """The object already exists (or a precondition failed)."""
        return self.status == 409


def load_configuration() -> kubernetes.client.Configuration:
    """The in-cluster service account's configuration, else the kubeconfig's current context."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=config)
    return config


def label_selector(labels: Mapping[str, str]) -> str:
    """An equality-based label selector: ``a=b,c=d``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _core(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def _cluster_path(namespace: str, name: str, subresource: str | None = None) -> str:
    path = f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{quote(namespace)}/{c.PLURAL}/{quote(name)}"
    return f"{path}/{subresource}" if subresource else path


class KubeClient:
    """JSON over the ``kubernetes`` package's transport. Thread-safe; close when done."""

    def __init__(self, configuration: kubernetes.client.Configuration, *, timeout: float = 30.0) -> None:
        self._api = kubernetes.client.ApiClient(configuration)
        self._timeout = timeout

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()
        self._api.rest_client.pool_manager.clear()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API call; returns the decoded JSON answer or raises :class:`ApiError`."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method_, url, headers_, body_, post = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(method_, url, headers_, body_, post, _request_timeout=self._timeout)
        except kubernetes.client.ApiException as exc:  # transport-level refusals
            raise ApiError(exc.status or 0, str(exc.reason), str(exc.body or exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # unreachable, reset, timed out
            raise ApiError(0, "Unreachable", str(exc)) from exc
        data = response.read()
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {"message": data.decode(errors="replace")}
        if not 200 <= response.status < 300:
            raise ApiError(response.status, str(payload.get("reason") or response.reason),
                           str(payload.get("message") or ""))
        return payload

    # --- RayClusters -----------------------------------------------------------------------
    def get_cluster(self, namespace: str, name: str) -> dict[str, Any]:
        """The RayCluster object."""
        return self.request("GET", _cluster_path(namespace, name))

    def patch_cluster_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the RayCluster's status subresource."""
        return self.request("PATCH", _cluster_path(namespace, name, "status"),
                            body={"status": status}, content_type=MERGE_PATCH)

    def json_patch_cluster(self, namespace: str, name: str, operations: list[Mapping[str, Any]]) -> dict[str, Any]:
        """JSON-patch (RFC 6902) the RayCluster; a failed ``test`` operation raises (422)."""
        return self.request("PATCH", _cluster_path(namespace, name), body=list(operations),
                            content_type=JSON_PATCH)

    # --- core objects ----------------------------------------------------------------------
    def get(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        """A core/v1 object (``pods``, ``services``, ``secrets``), or None if it does not exist."""
        try:
            return self.request("GET", _core(namespace, plural, name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def list(self, namespace: str, plural: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The core/v1 objects of a namespace carrying all these labels."""
        answer = self.request("GET", _core(namespace, plural), query={"labelSelector": label_selector(labels)})
        return list(answer.get("items") or [])

    def create(self, namespace: str, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a core/v1 object; returns it as stored."""
        return self.request("POST", _core(namespace, plural), body=dict(body))

    def patch(self, namespace: str, plural: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch a core/v1 object."""
        return self.request("PATCH", _core(namespace, plural, name), body=dict(patch), content_type=MERGE_PATCH)

    def delete(self, namespace: str, plural: str, name: str) -> bool:
        """Delete a core/v1 object; False if it was already gone."""
        try:
            self.request("DELETE", _core(namespace, plural, name))
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True
