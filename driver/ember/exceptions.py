"""Exceptions raised by ember, with Ray's names so ``except ray.exceptions.X`` ports unchanged.

Every error a user sees says what went wrong and, where there is one, what to do about it.
"""

from __future__ import annotations

import pickle
import traceback


class RayError(Exception):
    """Base class of every error ember raises for a remote failure."""


class RaySystemError(RayError):
    """The runtime itself failed (lost connection to the node agent, protocol error)."""


class RayTaskError(RayError):
    """A task or actor method raised an exception.

    ``ray.get`` raises an instance that is *also* an instance of the user's exception type,
    so ``except ValueError`` catches a remote ``ValueError``. ``str()`` carries the remote
    traceback; ``cause`` is the original exception.
    """

    def __init__(
        self,
        function_name: str = "",
        traceback_str: str = "",
        cause: BaseException | None = None,
        pid: int | None = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.cause_name = type(cause).__name__ if cause is not None else ""
        self.missing_module: str | None = None  # the cause's class could not be imported here
        # not super(): in the dual class the next __init__ would be the user's exception's,
        # whose signature is unknown
        Exception.__init__(self, self._message())

    def _message(self) -> str:
        where = f" (pid={self.pid})" if self.pid else ""
        kind = type(self.cause).__name__ if self.cause else getattr(self, "cause_name", "") or "Error"
        return f"{kind} in {self.function_name}{where}\n{self.traceback_str}".rstrip()

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):
        # the cause travels as a pickle of its own: a driver that cannot import its class
        # still gets this error, with the traceback text and the name of what is missing
        return (_rebuild_task_error_from_blob, (self.function_name, self.traceback_str, _dump_cause(self.cause),
                                                self.pid, self.cause_name))

    def as_instanceof_cause(self) -> RayTaskError:
        """Return an exception that is an instance of both RayTaskError and the cause's type."""
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
            return self
        cause_cls = type(cause)
        if not isinstance(cause, Exception):
            return self
        try:
            cls = _dual_class(cause_cls)
            err = cls.__new__(cls)
            RayTaskError.__init__(err, self.function_name, self.traceback_str, cause, self.pid)
            err.args = (self._message(),)
            # keep the cause's attributes reachable (e.g. errno, custom fields)
            for key, value in getattr(cause, "__dict__", {}).items():
                err.__dict__.setdefault(key, value)
            return err
        except TypeError:
            return self


_DUAL_CACHE: dict[type, type] = {}


def _dual_class(cause_cls: type) -> type:
    cls = _DUAL_CACHE.get(cause_cls)
    if cls is None:

        def __str__(self: RayTaskError) -> str:
            return RayTaskError._message(self)

        cls = type(
            f"RayTaskError({cause_cls.__name__})",
            (RayTaskError, cause_cls),
            {"__str__": __str__, "__module__": __name__, "__reduce__": RayTaskError.__reduce__},
        )
        _DUAL_CACHE[cause_cls] = cls
    return cls


def _exception_parts(exc: BaseException | None) -> tuple | None:
    """An exception as (class, args, attributes): rebuilt without calling its __init__, so
    exceptions whose constructor takes other arguments than their message survive the trip."""
    if exc is None:
        return None
    return (type(exc), exc.args, dict(getattr(exc, "__dict__", {})))


def _from_parts(parts: tuple | None) -> BaseException | None:
    if parts is None:
        return None
    cls, args, attrs = parts
    exc = cls.__new__(cls)
    exc.args = args
    if attrs:
        exc.__dict__.update(attrs)
    return exc


def _rebuild_task_error(function_name, traceback_str, cause_parts, pid):
    return RayTaskError(function_name, traceback_str, _from_parts(cause_parts), pid)


def _dump_cause(cause: BaseException | None) -> bytes | None:
    if cause is None:
        return None
    import cloudpickle

    try:
        return cloudpickle.dumps(_exception_parts(cause), protocol=5)
    except Exception:  # noqa: BLE001 - an unpicklable cause: the traceback text stays
        return None


def _rebuild_task_error_from_blob(function_name, traceback_str, cause_blob, pid, cause_name):
    cause = None
    missing = None
    note = ""
    if cause_blob is not None:
        try:
            cause = _from_parts(pickle.loads(cause_blob))
        except ImportError as exc:
            missing = exc.name or str(exc)
            note = (f"\n(the exception {cause_name} cannot be rebuilt here: its module {missing!r} is not "
                    f"importable in this process ({exc}); make it importable where the driver runs, e.g. "
                    f"with runtime_env or PYTHONPATH, to catch it by its type)")
        except Exception as exc:  # noqa: BLE001 - e.g. the class is not in its module here
            note = f"\n(the exception {cause_name} cannot be rebuilt here: {type(exc).__name__}: {exc})"
    err = RayTaskError(function_name, traceback_str + note, cause, pid)
    err.cause_name = cause_name or err.cause_name
    err.missing_module = missing
    return err


def format_remote_traceback(exc: BaseException) -> str:
    """The traceback text shipped with a task error (skipping ember's own frames)."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(line for line in lines if "/ember/worker.py" not in line or "Traceback" in line)


class RayActorError(RayError):
    """An actor cannot run the call: it died, or its constructor failed."""

    def __init__(self, message: str = "The actor died unexpectedly.", cause: BaseException | None = None) -> None:
        self.cause = cause
        super().__init__(message)


class ActorCreationError(RayActorError):
    """Made by a node agent when an actor's constructor failed: it holds the constructor's
    error still serialized (an agent never unpickles what user code raised), and becomes a
    ``RayActorError`` with that error as its ``cause`` when the caller unpickles it."""

    def __init__(self, prefix: str, cause_blob: bytes) -> None:
        self.prefix = prefix
        self.cause_blob = cause_blob
        super().__init__(prefix)

    def __reduce__(self):
        return (_actor_creation_error, (self.prefix, self.cause_blob))


def _actor_creation_error(prefix: str, cause_blob: bytes) -> RayActorError:
    from ember._serialization import deserialize

    try:
        cause: BaseException | None = deserialize(cause_blob)
    except Exception as exc:  # noqa: BLE001 - say why instead
        cause = RayError(f"the constructor's exception could not be unpickled here: {exc}")
    return RayActorError(f"{prefix}\n{cause}", cause=cause)


class ActorDiedError(RayActorError):
    """The actor's process is gone (crashed, killed, or its node died)."""


class ActorUnavailableError(RayActorError):
    """The actor is restarting and cannot take calls right now."""


class WorkerCrashedError(RayError):
    """The worker process running the task died (crash, signal, out of memory)."""


class TaskCancelledError(RayError):
    """The task was cancelled with ``ember.cancel``."""

    def __init__(self, message: str = "The task was cancelled.", task_id: str | None = None) -> None:
        self.task_id = task_id
        super().__init__(message)


class GetTimeoutError(RayError, TimeoutError):
    """``ember.get`` timed out before the objects were ready."""


class ObjectLostError(RayError):
    """An object's value is gone (its owner freed it or the node holding it died)."""


class ObjectFetchTimedOutError(ObjectLostError):
    """An object could not be fetched in time."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object exited."""


class ReferenceCountingAssertionError(ObjectLostError):
    """An object was used after every reference to it had been dropped."""


class ObjectStoreFullError(RayError):
    """The shared-memory object store has no room, even after spilling to disk."""


class OutOfDiskError(ObjectStoreFullError):
    """Spilling to disk failed because the disk is full."""


class OutOfMemoryError(RayError):
    """The task's worker was killed because the node ran out of memory."""


class NodeDiedError(RayError):
    """The node running the task died."""


class TaskUnschedulableError(RayError):
    """No node in the cluster can ever satisfy the task's resource request."""


class ActorUnschedulableError(RayError):
    """No node in the cluster can ever satisfy the actor's resource request."""


class RuntimeEnvSetupError(RayError):
    """A task's or actor's runtime_env could not be set up on its node (e.g. ``pip install``
    failed); the message carries the end of the installer's output."""


class CrossLanguageError(RayError):
    """Not used by ember (Python only); kept for name compatibility."""


class UnserializableException(RayError):
    """The cause of a RayTaskError whose original exception could not be pickled (or
    unpickled): carries that exception's text and traceback, and why it could not travel."""

    def __init__(self, original_stack_trace: str = "") -> None:
        super().__init__(original_stack_trace)
        self.original_stack_trace = original_stack_trace


class AsyncioActorExit(RayError):
    """Raised inside an async actor by exit_actor(): the actor ends (not an error)."""


class PendingCallsLimitExceeded(RayError):
    """An actor has more pending calls than its max_pending_calls."""


class LocalRayletDiedError(RayError):
    """The task's node agent died (Ray's raylet)."""


class TaskPlacementGroupRemoved(RayError):
    """The task's placement group was removed."""


class ActorPlacementGroupRemoved(RayError):
    """The actor's placement group was removed."""


class ObjectReconstructionFailedError(ObjectLostError):
    """A lost object could not be rebuilt from its lineage."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """A lost object could not be rebuilt: its task ran out of retries."""


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """A lost object could not be rebuilt: its lineage was evicted."""


class ObjectFreedError(ObjectLostError):
    """The object was freed explicitly."""


class PlasmaObjectNotAvailable(RayError):
    """The object is not (yet) available in the store."""


class AuthenticationError(RayError):
    """The cluster refused the call's token."""


__all__ = [
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "WorkerCrashedError",
    "TaskCancelledError",
    "GetTimeoutError",
    "ObjectLostError",
    "ObjectFetchTimedOutError",
    "OwnerDiedError",
    "ReferenceCountingAssertionError",
    "ObjectStoreFullError",
    "OutOfDiskError",
    "OutOfMemoryError",
    "NodeDiedError",
    "TaskUnschedulableError",
    "ActorUnschedulableError",
    "RuntimeEnvSetupError",
    "CrossLanguageError",
    "UnserializableException",
    "AsyncioActorExit",
    "PendingCallsLimitExceeded",
    "LocalRayletDiedError",
    "TaskPlacementGroupRemoved",
    "ActorPlacementGroupRemoved",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError",
    "ObjectFreedError",
    "PlasmaObjectNotAvailable",
    "AuthenticationError",
]
