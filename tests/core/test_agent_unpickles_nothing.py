"""The node agent never unpickles what user code made (issue 11, part 4): an actor's failed
constructor raises an exception whose unpickling runs code; that code runs in the driver
that reads the error, never in the agent that routes it."""

from __future__ import annotations

import os

import ember
import pytest

from .helpers import agent_processes

CLUSTER_ARGS = {"num_cpus": 1}


def test_a_constructor_error_is_unpickled_by_the_caller_not_the_agent(cluster, tmp_path):
    folder = str(tmp_path)

    def mark(folder):  # shipped by value: it runs wherever the error is unpickled
        import os

        open(os.path.join(folder, str(os.getpid())), "w").close()
        return "unpickled"

    class Tracer:
        def __reduce__(self):
            return (mark, (folder,))

    @ember.remote
    class Broken:
        def __init__(self):
            raise ValueError(Tracer())

        def ping(self):
            return 1

    a = Broken.remote()
    with pytest.raises(ember.exceptions.RayActorError) as info:
        ember.get(a.ping.remote(), timeout=60)
    assert "could not be created" in str(info.value)
    agents = {p.pid for p in agent_processes()}
    assert agents, "no agent found: the test proved nothing"
    unpickled_in = {int(name) for name in os.listdir(folder)}
    assert os.getpid() in unpickled_in, "the driver never saw the constructor's error"
    assert not unpickled_in & agents, "the agent unpickled user code"
