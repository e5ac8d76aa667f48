"""Leader election on a ``coordination.k8s.io/v1`` Lease, so that of several operator
replicas exactly one acts at a time.

The rules (those of Kubernetes' own controllers):

- the Lease ``spec.holderIdentity`` names the leader; it renews ``spec.renewTime`` every
  ``retry_seconds``;
- a candidate takes the Lease over only when its record (holder, renewTime, transitions)
  has not changed for ``spec.leaseDurationSeconds`` *as measured on the candidate's own
  monotonic clock* since it first saw that record, so clocks need not agree;
- the leader counts itself leader only until ``renew_deadline_seconds`` after its last
  successful renewal, which is shorter than the lease duration: a leader cut off from the
  API server stops acting before anyone else may start;
- every write is a JSON patch whose first operation tests the ``resourceVersion`` read,
  so two candidates can never both win the same round (the loser gets 422 or 409);
- on a clean stop the leader gives the Lease up (empties ``holderIdentity``), so a
  standby takes over at its next attempt rather than after the lease duration.

:func:`decide` is the pure part; :class:`LeaderElector` does the I/O (blocking calls: run
:meth:`LeaderElector.attempt` in a thread).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ember_operator.kube import JSON_PATCH, ApiError, KubeClient

__all__ = ["LeaseConfig", "Observation", "decide", "lease_path", "LeaderElector"]

logger = logging.getLogger(__name__)

CREATE = "create"
TAKE = "take"  # acquire a free or expired Lease
RENEW = "renew"
WAIT = "wait"


@dataclass(frozen=True)
class LeaseConfig:
    """Where the Lease is and how long it lasts."""

    namespace: str
    name: str = "ember-operator"
    identity: str = ""
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0


@dataclass(frozen=True)
class Observation:
    """The Lease record a candidate last saw, and when (its monotonic clock)."""

    record: tuple[Any, ...]
    seen_at: float


def _record(lease: Mapping[str, Any]) -> tuple[Any, ...]:
    spec = lease.get("spec") or {}
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))


def decide(
    lease: Mapping[str, Any] | None, identity: str, observed: Observation | None, now: float, default_seconds: float
) -> tuple[str, Observation | None]:
    """What a candidate does next given the Lease as read: create, take, renew or wait.

    Returns the action and the observation to keep for the next round.
    """
    if lease is None:
        return CREATE, None
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if holder == identity:
        return RENEW, None
    if not holder:
        return TAKE, None
    record = _record(lease)
    if observed is None or observed.record != record:
        return WAIT, Observation(record, now)
    duration = float(spec.get("leaseDurationSeconds") or default_seconds)
    if now - observed.seen_at >= duration:
        return TAKE, observed
    return WAIT, observed


def lease_path(namespace: str, name: str | None = None) -> str:
    """The API path of the Leases of a namespace, or of one Lease."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"
    return f"{path}/{quote(name)}" if name else path


def _micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaderElector:
    """One candidate for the Lease. Thread-safe; :meth:`is_leader` is cheap."""

    def __init__(
        self,
        kube: KubeClient,
        config: LeaseConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.kube = kube
        self.config = config
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._leading_until = float("-inf")
        self._observed: Observation | None = None

    def is_leader(self) -> bool:
        """Whether this candidate may act now (it renewed within the renew deadline)."""
        with self._lock:
            return self._monotonic() < self._leading_until

    def _spec(self, lease: Mapping[str, Any] | None, taking: bool) -> dict[str, Any]:
        old = (lease or {}).get("spec") or {}
        now = _micro_time(self._wall())
        transitions = int(old.get("leaseTransitions") or 0) + (1 if taking and lease is not None else 0)
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, round(self.config.lease_seconds)),
            "acquireTime": now if taking else old.get("acquireTime", now),
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def attempt(self) -> bool:
        """One round: read the Lease, then create, take, renew or wait. Returns is_leader()."""
        started = self._monotonic()
        try:
            lease: dict[str, Any] | None = self.kube.request(
                "GET", lease_path(self.config.namespace, self.config.name))
        except ApiError as exc:
            if not exc.not_found:
                logger.warning("Could not read the leader Lease: %s", exc)
                return self.is_leader()
            lease = None
        action, self._observed = decide(lease, self.config.identity, self._observed, started,
                                        self.config.lease_seconds)
        if action == WAIT:
            return self.is_leader()
        try:
            if action == CREATE:
                self.kube.request("POST", lease_path(self.config.namespace), body={
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                    "spec": self._spec(None, taking=True)})
            else:
                assert lease is not None
                version = (lease.get("metadata") or {}).get("resourceVersion")
                self.kube.request("PATCH", lease_path(self.config.namespace, self.config.name), body=[
                    {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                    {"op": "add", "path": "/spec",
                     "value": self._spec(lease, taking=action == TAKE)},
                ], content_type=JSON_PATCH)
        except ApiError as exc:
            if exc.status not in (409, 422):
                logger.warning("Could not %s the leader Lease: %s", action, exc)
            return self.is_leader()  # someone else won the round (or the API is unreachable)
        with self._lock:
            was = self._monotonic() < self._leading_until
            # counted from before the read: the deadline never outlasts what others see
            self._leading_until = started + self.config.renew_deadline_seconds
        if not was:
            logger.info("%s is now the leader (Lease %s/%s)", self.config.identity,
                        self.config.namespace, self.config.name)
        return True

    def release(self) -> None:
        """Give the Lease up if this candidate holds it (on a clean stop)."""
        with self._lock:
            leading = self._monotonic() < self._leading_until
            self._leading_until = float("-inf")
        if not leading:
            return
        try:
            lease = self.kube.request("GET", lease_path(self.config.namespace, self.config.name))
            if ((lease.get("spec") or {}).get("holderIdentity")) != self.config.identity:
                return
            version = (lease.get("metadata") or {}).get("resourceVersion")
            self.kube.request("PATCH", lease_path(self.config.namespace, self.config.name), body=[
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {"op": "replace", "path": "/spec/holderIdentity", "value": ""},
            ], content_type=JSON_PATCH)
        except ApiError as exc:
            logger.info("Could not release the leader Lease (it will expire): %s", exc)
