"""The namespace a driver's named actors live in, as in Ray: the one ``init(namespace=)``
names, shared by every driver that names it; without one, an anonymous namespace of the
driver's own (a fresh id), so named actors are found only by that driver and by the tasks
and actors it starts."""

from __future__ import annotations

import uuid


def job_namespace(requested: object) -> str:
    """The namespace of a driver that called ``init(namespace=requested)``; raises
    ``TypeError``/``ValueError`` for a namespace that is not a non-empty string. Pure but for
    the random id of an anonymous namespace."""
    if requested is None:
        return str(uuid.uuid4())  # as Ray: an anonymous namespace is a UUID
    if not isinstance(requested, str):
        raise TypeError(f"namespace must be a string, got {type(requested).__name__}")
    if not requested.strip():
        raise ValueError("namespace must be a non-empty string (leave it out for an anonymous namespace)")
    return requested


def is_anonymous(namespace: str | None) -> bool:
    """True for a namespace ``job_namespace`` made up for a driver that named none (a UUID). Pure."""
    if not namespace:
        return False
    try:
        return str(uuid.UUID(namespace)) == namespace
    except ValueError:
        return False
