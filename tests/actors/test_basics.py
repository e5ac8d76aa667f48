"""Actor classes, construction, method calls, num_returns, and handles travelling into
tasks and actors (issue 3: the first and third bullets, and the issue's example)."""

from __future__ import annotations

import os
import time

import ember
import pytest

CLUSTER_ARGS = {"num_cpus": 4}
T = 30  # every get is bounded (below the 60 s pytest timeout)


# --------------------------------------------------------------------- the issue's example


class ReferenceDataTracker:
    """A plain class..."""

    def __init__(self, size):
        self.counts = [0] * size

    def increment(self, ref):
        self.counts[ref % len(self.counts)] += 1
        return ref, self.counts[ref % len(self.counts)]


@ember.remote
class ReferenceDataTrackerActor(ReferenceDataTracker):
    """...subclassed into an actor."""

    def get_counts(self):
        return self.counts


@ember.remote
def track(id, tracker):
    tracker.increment.remote(id % 5)  # fire-and-forget from inside a task
    return id


def _counts_reach(tracker, expected, timeout=60):
    """The tasks' fire-and-forget calls come from other callers than this driver, so nothing
    orders them before its own get_counts call (nor in Ray): poll until they all arrived."""
    deadline = time.monotonic() + timeout
    while True:
        counts = ember.get(tracker.get_counts.remote(), timeout=T)
        if counts == expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def test_issue_example(cluster):
    tracker = ReferenceDataTrackerActor.remote(5)
    assert ember.get([track.remote(i, tracker) for i in range(10)], timeout=T) == list(range(10))
    assert _counts_reach(tracker, [2, 2, 2, 2, 2]) == [2, 2, 2, 2, 2]
    assert ember.get([track.remote(i, tracker) for i in range(10)], timeout=T) == list(range(10))
    assert _counts_reach(tracker, [4, 4, 4, 4, 4]) == [4, 4, 4, 4, 4]
    # the inherited method is callable directly too
    assert ember.get(tracker.increment.remote(7), timeout=T) == (7, 5)


def test_issue_example_at_scale(cluster):
    tracker = ReferenceDataTrackerActor.remote(5)
    assert ember.get([track.remote(i, tracker) for i in range(200)], timeout=T) == list(range(200))
    assert ember.get(tracker.get_counts.remote(), timeout=T) == [40] * 5


# --------------------------------------------------------------------- classes and calls


@ember.remote
class Counter:
    def __init__(self, start=0, *, step=1):
        self.value = start
        self.step = step

    def incr(self, times=1):
        self.value += self.step * times
        return self.value

    def read(self):
        return self.value

    def pid(self):
        return os.getpid()

    @ember.method(num_returns=2)
    def pair(self):
        return self.value, -self.value

    def triple(self):
        return self.value, self.value + 1, self.value + 2

    @ember.method(num_returns=0)
    def bump(self):
        self.value += 100

    def echo(self, *args, **kwargs):
        return args, kwargs


def test_constructor_args_and_state(cluster):
    c = Counter.remote(10, step=5)
    assert isinstance(c, ember.ActorHandle)
    assert ember.get(c.incr.remote(), timeout=T) == 15
    assert ember.get(c.incr.remote(times=2), timeout=T) == 25
    assert ember.get(c.read.remote(), timeout=T) == 25
    # each actor has its own state and its own process
    d = Counter.remote()
    assert ember.get(d.read.remote(), timeout=T) == 0
    assert ember.get(c.pid.remote(), timeout=T) != ember.get(d.pid.remote(), timeout=T)
    assert ember.get(c.pid.remote(), timeout=T) != os.getpid()


def test_method_args_and_kwargs(cluster):
    c = Counter.remote()
    ref = ember.put([1, 2, 3])
    args, kwargs = ember.get(c.echo.remote(1, "two", ref, x=ref, y=None), timeout=T)
    # a top-level ref argument arrives as its value
    assert args == (1, "two", [1, 2, 3])
    assert kwargs == {"x": [1, 2, 3], "y": None}
    # a ref nested in a container arrives as a ref
    (inner,), _ = ember.get(c.echo.remote([ref]), timeout=T)
    assert isinstance(inner[0], ember.ObjectRef)
    assert ember.get(inner[0], timeout=T) == [1, 2, 3]


def test_remote_on_subclass_of_plain_class_keeps_base_methods(cluster):
    class Base:
        def __init__(self, name):
            self.name = name

        def hello(self):
            return f"hello {self.name}"

        def overridden(self):
            return "base"

    @ember.remote
    class Child(Base):
        def overridden(self):
            return "child:" + super().overridden()

    h = Child.remote("ember")
    assert ember.get(h.hello.remote(), timeout=T) == "hello ember"
    assert ember.get(h.overridden.remote(), timeout=T) == "child:base"


def test_remote_with_options_on_class(cluster):
    @ember.remote(num_cpus=0, max_concurrency=2)
    class WithOptions:
        def ok(self):
            return "ok"

    assert ember.get(WithOptions.remote().ok.remote(), timeout=T) == "ok"
    assert ember.get(WithOptions.options(name=None).remote().ok.remote(), timeout=T) == "ok"


def test_method_num_returns_decorator(cluster):
    c = Counter.remote(3)
    a, b = c.pair.remote()
    assert isinstance(a, ember.ObjectRef) and isinstance(b, ember.ObjectRef)
    assert ember.get([a, b], timeout=T) == [3, -3]


def test_method_num_returns_options(cluster):
    c = Counter.remote(7)
    refs = c.triple.options(num_returns=3).remote()
    assert len(refs) == 3
    assert ember.get(refs, timeout=T) == [7, 8, 9]
    # .options overrides the decorator
    single = c.pair.options(num_returns=1).remote()
    assert ember.get(single, timeout=T) == (7, -7)
    # without options, the default is one ref holding the tuple
    assert ember.get(c.triple.remote(), timeout=T) == (7, 8, 9)


def test_method_num_returns_zero(cluster):
    c = Counter.remote(1)
    assert c.bump.remote() is None
    assert ember.get(c.read.remote(), timeout=T) == 101  # ran, in order, before read


def test_wrong_number_of_returns_is_an_error(cluster):
    c = Counter.remote()
    refs = c.triple.options(num_returns=2).remote()
    with pytest.raises(ember.exceptions.RayTaskError):
        ember.get(refs[0], timeout=T)
    assert ember.get(c.read.remote(), timeout=T) == 0  # the actor is fine


def test_unknown_method_is_attribute_error(cluster):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="nope"):
        c.nope.remote()


# --------------------------------------------------------------------- misuse: TypeError


def test_instantiating_actor_class_directly_is_type_error(cluster):
    with pytest.raises(TypeError, match=r"\.remote\("):
        Counter(1)


def test_calling_method_without_remote_is_type_error(cluster):
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"\.remote\("):
        c.incr()
    with pytest.raises(TypeError, match=r"\.remote\("):
        c.incr(5)
    assert ember.get(c.read.remote(), timeout=T) == 0  # nothing ran


# --------------------------------------------------------------------- handles travel


@ember.remote
def call_through(handle, n):
    return ember.get(handle.incr.remote(n), timeout=60)


@ember.remote
def call_all_in_containers(handles_list, handles_dict):
    out = [ember.get(h.incr.remote(1), timeout=60) for h in handles_list]
    out += [ember.get(handles_dict[k].incr.remote(10), timeout=60) for k in sorted(handles_dict)]
    return out


@ember.remote
class Forwarder:
    """An actor that holds other actors' handles and calls them."""

    def __init__(self, target=None, targets=None):
        self.target = target
        self.targets = targets or {}

    def set_target(self, handle):
        self.target = handle

    def forward(self, n):
        return ember.get(self.target.incr.remote(n), timeout=60)

    def forward_all(self):
        return {k: ember.get(h.read.remote(), timeout=60) for k, h in self.targets.items()}

    def make_counter(self, start):
        return Counter.remote(start)


@ember.remote
def make_counter_in_task(start):
    c = Counter.remote(start)
    ember.get(c.incr.remote(), timeout=60)
    return c


def test_handle_passed_to_task(cluster):
    c = Counter.remote()
    assert ember.get(call_through.remote(c, 5), timeout=T) == 5
    assert ember.get(c.read.remote(), timeout=T) == 5


def test_handles_inside_list_and_dict_passed_to_task(cluster):
    a, b, d = Counter.remote(), Counter.remote(100), Counter.remote(1000)
    got = ember.get(call_all_in_containers.remote([a, b], {"x": d}), timeout=T)
    assert got == [1, 101, 1010]
    # the same actors, seen from the driver
    assert ember.get([a.read.remote(), b.read.remote(), d.read.remote()], timeout=T) == [1, 101, 1010]


def test_handle_passed_to_actor_constructor_and_method(cluster):
    c = Counter.remote()
    f = Forwarder.remote(target=c, targets={"c": c})
    assert ember.get(f.forward.remote(3), timeout=T) == 3
    assert ember.get(f.forward_all.remote(), timeout=T) == {"c": 3}
    other = Counter.remote(50)
    ember.get(f.set_target.remote(other), timeout=T)
    assert ember.get(f.forward.remote(1), timeout=T) == 51


def test_handle_inside_put_object(cluster):
    c = Counter.remote()
    boxed = ember.put({"handle": c})
    got = ember.get(boxed, timeout=T)["handle"]
    assert got == c
    assert ember.get(got.incr.remote(), timeout=T) == 1


def test_actor_created_in_task_is_usable_from_driver(cluster):
    c = ember.get(make_counter_in_task.remote(40), timeout=T)
    assert isinstance(c, ember.ActorHandle)
    assert ember.get(c.incr.remote(), timeout=T) == 42


def test_actor_created_in_actor_is_usable_from_driver_and_tasks(cluster):
    f = Forwarder.remote()
    c = ember.get(f.make_counter.remote(7), timeout=T)
    assert ember.get(c.incr.remote(), timeout=T) == 8
    assert ember.get(call_through.remote(c, 2), timeout=T) == 10


def test_handles_compare_and_hash_by_actor(cluster):
    c = Counter.remote()
    same = ember.get(ember.put(c), timeout=T)
    assert same == c and hash(same) == hash(c)
    assert c != Counter.remote()
    assert "Counter" in repr(c)


# --------------------------------------------------------------------- arguments and values


@ember.remote
def slow_value(x, seconds):
    import time

    time.sleep(seconds)
    return x


@ember.remote
class Blob:
    def __init__(self, payload=b""):
        self.payload = payload

    def size(self, data=None):
        return len(self.payload if data is None else data)

    def make(self, n):
        return b"x" * n

    def square_via_task(self, x):
        @ember.remote
        def square(v):
            return v * v

        return ember.get(square.remote(x), timeout=60)


def test_constructor_waits_for_ref_argument(cluster):
    c = Counter.remote(slow_value.remote(5, 0.5))
    calls = [c.incr.remote() for _ in range(3)]  # queued behind the creation
    assert ember.get(calls, timeout=T) == [6, 7, 8]


def test_large_arguments_and_results(cluster):
    big = b"y" * (3 * 1024 * 1024)
    b = Blob.remote(big)  # large constructor argument
    assert ember.get(b.size.remote(), timeout=T) == len(big)
    assert ember.get(b.size.remote(ember.put(big)), timeout=T) == len(big)
    assert ember.get(b.size.remote(big), timeout=T) == len(big)  # large inline argument
    out = ember.get(b.make.remote(2 * 1024 * 1024), timeout=T)  # large result (store)
    assert len(out) == 2 * 1024 * 1024 and out[:3] == b"xxx"


def test_actor_method_runs_nested_task(cluster):
    b = Blob.remote()
    assert ember.get(b.square_via_task.remote(12), timeout=T) == 144


def test_invalid_actor_option_is_rejected(cluster):
    with pytest.raises(ValueError, match="not_an_option"):
        Counter.options(not_an_option=1).remote()
    with pytest.raises(ValueError):
        Counter.options(max_concurrency=0).remote()
