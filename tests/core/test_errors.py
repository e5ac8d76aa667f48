"""Errors: ember.exceptions names and hierarchy, task exceptions re-raised as both
RayTaskError and the user's type with the remote traceback, propagation through
dependent tasks, and serialization failures."""

from __future__ import annotations

import threading

import ember
import ember.exceptions as exc
import pytest

CLUSTER_ARGS = {"num_cpus": 4}

NAMES = [
    "RayError",
    "RayTaskError",
    "RayActorError",
    "ActorDiedError",
    "WorkerCrashedError",
    "TaskCancelledError",
    "GetTimeoutError",
    "ObjectLostError",
    "ObjectStoreFullError",
    "OutOfMemoryError",
    "NodeDiedError",
]


@pytest.mark.parametrize("name", NAMES)
def test_exception_names(name):
    cls = getattr(exc, name)
    assert isinstance(cls, type) and issubclass(cls, Exception)
    assert issubclass(cls, exc.RayError)


def test_exception_hierarchy():
    assert issubclass(exc.GetTimeoutError, TimeoutError)
    assert issubclass(exc.ActorDiedError, exc.RayActorError)


def test_task_exception_is_both_types(cluster):
    @ember.remote
    def raise_value_error_task(x):
        raise ValueError(f"bad input {x}")

    ref = raise_value_error_task.remote(42)
    with pytest.raises(ValueError) as info:
        ember.get(ref, timeout=60)
    err = info.value
    assert isinstance(err, exc.RayTaskError)
    assert isinstance(err, exc.RayError)
    text = str(err)
    assert "bad input 42" in text
    assert "raise_value_error_task" in text, f"no remote traceback in: {text}"
    assert "test_errors" in text, f"the traceback should name the source file: {text}"

    # Caught the Ray way too.
    with pytest.raises(exc.RayTaskError):
        ember.get(ref, timeout=60)


def test_user_defined_exception_type(cluster):
    class InventoryError(Exception):
        pass

    @ember.remote
    def check_inventory():
        raise InventoryError("out of widgets")

    with pytest.raises(InventoryError, match="out of widgets") as info:
        ember.get(check_inventory.remote(), timeout=60)
    assert isinstance(info.value, exc.RayTaskError)


def test_exception_with_custom_constructor(cluster):
    """An exception that pickle cannot rebuild (its __init__ takes other arguments than
    its args) still surfaces as a RayError carrying its type name and text (Ray raises
    its own error there too, with the original text)."""

    class QuotaError(Exception):
        def __init__(self, user, limit):
            super().__init__(f"{user} is over {limit}")
            self.user = user
            self.limit = limit

    @ember.remote
    def charge():
        raise QuotaError("ada", 3)

    with pytest.raises(exc.RayError) as info:
        ember.get(charge.remote(), timeout=60)
    assert "ada is over 3" in str(info.value)
    assert "QuotaError" in str(info.value)


def test_get_timeout_inside_a_task(cluster):
    @ember.remote
    def slow():
        import time

        time.sleep(2)

    @ember.remote
    def impatient():
        return ember.get(slow.remote(), timeout=0.2)

    with pytest.raises(exc.GetTimeoutError):
        ember.get(impatient.remote(), timeout=60)


def test_error_in_list_get(cluster):
    @ember.remote
    def maybe_fail(i):
        if i == 2:
            raise KeyError("item 2")
        return i

    with pytest.raises(KeyError):
        ember.get([maybe_fail.remote(i) for i in range(4)], timeout=60)


def test_errors_propagate_through_dependent_tasks(cluster):
    @ember.remote
    def failing_upstream():
        raise ValueError("upstream broke")

    @ember.remote
    def downstream(x):
        return x + 1

    ref = downstream.remote(downstream.remote(failing_upstream.remote()))
    with pytest.raises(ValueError) as info:
        ember.get(ref, timeout=60)
    assert isinstance(info.value, exc.RayTaskError)
    assert "upstream broke" in str(info.value)
    assert "failing_upstream" in str(info.value)


def test_errors_propagate_from_nested_get(cluster):
    @ember.remote
    def inner_failure():
        raise LookupError("inner lookup failed")

    @ember.remote
    def outer_caller():
        return ember.get(inner_failure.remote())

    with pytest.raises(LookupError) as info:
        ember.get(outer_caller.remote(), timeout=60)
    assert "inner lookup failed" in str(info.value)
    assert "inner_failure" in str(info.value)


def test_error_get_twice(cluster):
    @ember.remote
    def fail():
        raise ZeroDivisionError("again")

    ref = fail.remote()
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            ember.get(ref, timeout=60)


def test_unpicklable_argument(cluster):
    @ember.remote
    def f(x):
        return x

    with pytest.raises((TypeError, exc.RayError)) as info:
        f.remote(threading.Lock())
    assert "lock" in str(info.value).lower(), str(info.value)
    # The cluster is fine afterwards.
    assert ember.get(f.remote(1), timeout=60) == 1


def test_unpicklable_put(cluster):
    with pytest.raises((TypeError, exc.RayError)) as info:
        ember.put(threading.Lock())
    assert "lock" in str(info.value).lower(), str(info.value)
    with pytest.raises((TypeError, exc.RayError)) as info:
        ember.put({"nested": [threading.Lock()]})
    assert "lock" in str(info.value).lower(), str(info.value)


def test_unpicklable_result(cluster):
    @ember.remote
    def make_lock():
        import threading

        return threading.Lock()

    with pytest.raises((TypeError, exc.RayError)) as info:
        ember.get(make_lock.remote(), timeout=60)
    assert "lock" in str(info.value).lower(), str(info.value)

    @ember.remote
    def fine():
        return "ok"

    assert ember.get(fine.remote(), timeout=60) == "ok"


def test_exception_that_cannot_be_pickled(cluster):
    """An exception carrying an unpicklable attribute still surfaces as an error."""

    @ember.remote
    def raise_with_lock():
        import threading

        e = RuntimeError("has a lock")
        e.lock = threading.Lock()
        raise e

    with pytest.raises((RuntimeError, exc.RayError)) as info:
        ember.get(raise_with_lock.remote(), timeout=60)
    assert "has a lock" in str(info.value) or "lock" in str(info.value).lower()
