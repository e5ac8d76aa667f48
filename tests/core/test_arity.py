"""Ray binds a call's arguments to the signature when it is submitted: a wrong number of
arguments or an unknown keyword raises TypeError at ``.remote()``, for tasks, actor
constructors and actor methods (static and class methods included)."""

from __future__ import annotations

import ember
import pytest

CLUSTER_ARGS = {"num_cpus": 1}


def test_task_arity_fails_at_submit(cluster):
    @ember.remote
    def f(x):
        return x

    @ember.remote
    def g(x, *rest, k=1, **more):
        return (x, rest, k, more)

    with pytest.raises(TypeError, match="too many positional"):
        f.remote(1, 2)
    with pytest.raises(TypeError, match="missing a required argument: 'x'"):
        f.remote()
    with pytest.raises(TypeError, match="unexpected keyword argument 'y'"):
        f.remote(1, y=2)
    with pytest.raises(TypeError):
        f.options(num_cpus=0).remote(1, 2)
    assert ember.get(f.remote(x=3), timeout=60) == 3
    assert ember.get(g.remote(1, 2, 3, k=4, z=5), timeout=60) == (1, (2, 3), 4, {"z": 5})


def test_actor_constructor_and_method_arity_fail_at_submit(cluster):
    @ember.remote
    class A:
        def __init__(self, n):
            self.n = n

        def m(self, y, z=2):
            return self.n + y + z

        @staticmethod
        def s(a):
            return a

        @classmethod
        def c(cls, a):
            return a

    @ember.remote
    class NoInit:
        def ping(self):
            return "pong"

    with pytest.raises(TypeError, match="missing a required argument: 'n'"):
        A.remote()
    with pytest.raises(TypeError, match="too many positional"):
        NoInit.remote(1)
    a = A.remote(1)
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):
        a.m.remote()
    with pytest.raises(TypeError, match="unexpected keyword argument 'q'"):
        a.m.remote(1, q=2)
    with pytest.raises(TypeError, match="too many positional"):
        a.s.remote(1, 2)
    assert ember.get([a.m.remote(1), a.s.remote(5), a.c.remote(6)], timeout=60) == [4, 5, 6]
    assert ember.get(NoInit.remote().ping.remote(), timeout=60) == "pong"


def test_a_handle_passed_to_a_task_still_checks_arity(cluster):
    @ember.remote
    class Box:
        def put(self, v):
            return v

    @ember.remote
    def misuse(box):
        try:
            box.put.remote()
        except TypeError as e:
            return str(e)
        return "no error"

    assert "missing a required argument" in ember.get(misuse.remote(Box.remote()), timeout=60)
