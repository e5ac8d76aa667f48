"""Namespaces: ``ember.init(namespace=...)`` sets the namespace that named actors go into
and that ``get_actor`` searches, for the driver and for the tasks it starts; an explicit
``.options(namespace=...)`` overrides it (semantics checked against Ray 2.60)."""

from __future__ import annotations

import ember
import pytest

T = 30


@ember.remote
class Box:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


@ember.remote
def look_up(name):
    return ember.get(ember.get_actor(name).get.remote(), timeout=60)


def test_init_namespace_is_where_named_actors_live(new_cluster):
    new_cluster(num_cpus=2, namespace="team-a")
    Box.options(name="x").remote(1)
    assert ember.get(ember.get_actor("x").get.remote(), timeout=T) == 1
    assert ember.get(ember.get_actor("x", namespace="team-a").get.remote(), timeout=T) == 1
    with pytest.raises(ValueError):
        ember.get_actor("x", namespace="other")


def test_explicit_namespace_overrides_the_init_namespace(new_cluster):
    new_cluster(num_cpus=2, namespace="team-a")
    Box.options(name="y", namespace="team-b").remote(2)
    with pytest.raises(ValueError):
        ember.get_actor("y")  # not in the driver's namespace
    assert ember.get(ember.get_actor("y", namespace="team-b").get.remote(), timeout=T) == 2


def test_tasks_use_the_driver_namespace(new_cluster):
    new_cluster(num_cpus=2, namespace="team-a")
    Box.options(name="z").remote(3)
    assert ember.get(look_up.remote("z"), timeout=T) == 3
