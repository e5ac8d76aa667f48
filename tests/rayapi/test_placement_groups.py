"""Placement groups on one node (an embedded cluster with 4 CPUs and 2 of a custom "slot"), as
Ray documents them: a group reserves its bundles (the reserved CPUs leave
``available_resources``), ``ready()``/``wait()`` tell when it is placed, a group that cannot
be placed stays pending, tasks and actors scheduled into a bundle run inside its reservation,
removing the group gives the resources back and ends its actors, and the group's state
shows in ``placement_group_table``; children of captured work go into the group; and a Ray
program using them runs unchanged under ``ember run``."""

from __future__ import annotations

import ember
import pytest
from ember.exceptions import RayActorError
from ember.util import (
    get_current_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ember.util.placement_group import get_placement_group
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from tests.cluster.helpers import wait_until
from tests.rayapi.helpers import output_lines, run_ray_program

CLUSTER_ARGS = {"num_cpus": 4, "resources": {"slot": 2}}


@ember.remote(num_cpus=1)
def where():
    pg = get_current_placement_group()
    return pg.id.hex() if pg is not None else None


@ember.remote(num_cpus=1)
class Holder:
    def pg(self):
        pg = get_current_placement_group()
        return (pg.id.hex() if pg is not None else None, ember.get_runtime_context().get_placement_group_id())


def _available_cpus() -> float:
    return ember.available_resources().get("CPU", 0.0)


def test_a_group_reserves_its_bundles_and_gives_them_back(cluster):
    assert wait_until(lambda: _available_cpus() == 4, 30)
    pg = placement_group([{"CPU": 1}, {"CPU": 1, "slot": 1}], strategy="STRICT_PACK", name="pair")
    assert ember.get(pg.ready(), timeout=60) is True
    assert pg.wait(10)
    assert wait_until(lambda: _available_cpus() == 2, 30)
    assert ember.available_resources().get("slot") == 1
    info = placement_group_table(pg)
    assert info["state"] == "CREATED" and info["strategy"] == "STRICT_PACK" and info["name"] == "pair"
    assert info["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0, "slot": 1.0}}
    assert set(info["bundles_to_node_id"].values()) == {ember.get_runtime_context().get_node_id()}
    assert pg.id.hex() in placement_group_table()
    assert get_placement_group("pair") == pg
    assert pg.bundle_count == 2 and pg.bundle_specs[1] == {"CPU": 1.0, "slot": 1.0}
    remove_placement_group(pg)
    assert wait_until(lambda: _available_cpus() == 4, 30)
    assert ember.available_resources().get("slot") == 2
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_the_state_api_lists_groups_with_ray_columns(cluster):
    from ember.util import state

    pg = placement_group([{"CPU": 1}], name="listed")
    assert pg.wait(60)
    pending = placement_group([{"CPU": 99}], name="too-big")
    try:
        rows = state.list_placement_groups(filters=[("name", "=", "listed")])
        assert [r["placement_group_id"] for r in rows] == [pg.id.hex()]
        assert set(rows[0]) == {"placement_group_id", "name", "creator_job_id", "state"}
        assert rows[0]["state"] == "CREATED" and rows[0]["creator_job_id"]
        assert [r["name"] for r in state.list_placement_groups(filters=[("state", "=", "pending")])] == ["too-big"]
        assert len(state.list_placement_groups(limit=1)) == 1
        (row,) = state.list_placement_groups(filters=[("placement_group_id", "=", pg.id.hex())], detail=True)
        assert row["is_detached"] is False
        assert row["bundles"][0]["unit_resources"] == {"CPU": 1.0}
        assert row["bundles"][0]["node_id"] == ember.get_runtime_context().get_node_id()
        assert state.get_placement_group(pending.id.hex())["state"] == "PENDING"
        assert state.get_placement_group("ff" * 18) is None
    finally:
        remove_placement_group(pg)
        remove_placement_group(pending)
    assert state.get_placement_group(pg.id.hex())["state"] == "REMOVED"
    assert wait_until(lambda: _available_cpus() == 4, 30)


def test_tasks_and_actors_run_inside_the_bundles(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    assert pg.wait(60)
    s = PlacementGroupSchedulingStrategy(pg)
    assert ember.get([where.options(scheduling_strategy=s).remote() for _ in range(6)], timeout=60) == [pg.id.hex()] * 6
    # Ray's older options, with a bundle index
    assert ember.get(where.options(placement_group=pg, placement_group_bundle_index=1).remote(),
                     timeout=60) == pg.id.hex()
    assert ember.get(where.remote(), timeout=60) is None  # outside the group
    a = Holder.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)).remote()
    assert ember.get(a.pg.remote(), timeout=60) == (pg.id.hex(), pg.id.hex())
    # the actor holds bundle 0's CPU: a second one there cannot start until the group goes
    b = Holder.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)).remote()
    ready, _ = ember.wait([b.pg.remote()], timeout=1.0)
    assert not ready
    remove_placement_group(pg)
    for actor in (a, b):
        with pytest.raises(RayActorError):
            ember.get(actor.pg.remote(), timeout=60)
    assert wait_until(lambda: _available_cpus() == 4, 30)


def test_a_group_that_does_not_fit_stays_pending_until_room_frees(cluster):
    big = placement_group([{"CPU": 3}])
    assert big.wait(60)
    other = placement_group([{"CPU": 2}], strategy="STRICT_PACK")
    assert not other.wait(0.5)
    assert placement_group_table(other)["state"] == "PENDING"
    ready = other.ready()
    remove_placement_group(big)
    assert ember.get(ready, timeout=60) is True
    assert placement_group_table(other)["state"] == "CREATED"
    remove_placement_group(other)
    never = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")  # one node only
    assert not never.wait(0.5)
    remove_placement_group(never)
    assert wait_until(lambda: _available_cpus() == 4, 30)


def test_bad_groups_are_refused_at_the_call(cluster):
    with pytest.raises(ValueError, match="strategy must be one of"):
        placement_group([{"CPU": 1}], strategy="TIGHT")
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="ask for some resource"):
        placement_group([{"CPU": 0}])
    pg = placement_group([{"CPU": 1}])
    try:
        with pytest.raises(ValueError, match="out of range"):
            where.options(placement_group=pg, placement_group_bundle_index=3).remote()
    finally:
        remove_placement_group(pg)
    assert get_current_placement_group() is None


@ember.remote(num_cpus=1)
def parent_of_child():
    """Where this task's child goes when it names no group itself."""
    return ember.get(where.remote(), timeout=60)


@ember.remote(num_cpus=1)
def parent_of_escaping_child():
    return ember.get(where.options(scheduling_strategy="DEFAULT").remote(), timeout=60)


def test_capture_child_tasks_puts_children_in_the_group(cluster):
    pg = placement_group([{"CPU": 2}])
    assert pg.wait(60)
    captured = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    assert ember.get(parent_of_child.options(scheduling_strategy=captured).remote(), timeout=60) == pg.id.hex()
    assert ember.get(parent_of_escaping_child.options(scheduling_strategy=captured).remote(), timeout=60) is None
    # without capture, a child runs outside the group
    plain = PlacementGroupSchedulingStrategy(pg)
    assert ember.get(parent_of_child.options(scheduling_strategy=plain).remote(), timeout=60) is None
    # an actor made with capture puts what its methods start into the group
    a = Holder.options(num_cpus=0, placement_group=pg, placement_group_capture_child_tasks=True).remote()
    assert ember.get(a.pg.remote(), timeout=60) == (pg.id.hex(), pg.id.hex())
    assert ember.get(where.options(scheduling_strategy=captured).remote(), timeout=60) == pg.id.hex()
    remove_placement_group(pg)
    assert wait_until(lambda: _available_cpus() == 4, 30)


def test_a_task_waiting_on_its_captured_child_lends_the_bundle_cpu(cluster):
    """One CPU in the bundle: the parent blocked in get gives it to its child, as outside groups."""
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(60)
    captured = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    assert ember.get(parent_of_child.options(scheduling_strategy=captured).remote(), timeout=60) == pg.id.hex()
    remove_placement_group(pg)
    assert wait_until(lambda: _available_cpus() == 4, 30)


RAY_PROGRAM = """
import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

ray.init(num_cpus=4)

# reserve two one-CPU bundles, wait for them, and run an actor and tasks in them
pg = placement_group([{"CPU": 1}] * 2, strategy="PACK")
ray.get(pg.ready(), timeout=60)
print("state", placement_group_table(pg)["state"])

@ray.remote(num_cpus=1)
class Counter:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n

@ray.remote(num_cpus=1)
def square(x):
    return x * x

c = Counter.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
    placement_group=pg, placement_group_bundle_index=0)).remote()
print("counter", ray.get([c.add.remote() for _ in range(3)], timeout=60))
in_pg = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=1)
print("squares", ray.get([square.options(scheduling_strategy=in_pg).remote(i) for i in range(4)], timeout=60))
remove_placement_group(pg)
print("removed", placement_group_table(pg)["state"])

here = ray.get_runtime_context().get_node_id()
on_node = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
print("affinity", ray.get(square.options(scheduling_strategy=on_node).remote(3), timeout=60))
print("spread", sorted(ray.get([square.options(scheduling_strategy="SPREAD").remote(i) for i in range(3)],
                              timeout=60)))
ray.shutdown()
"""


def test_a_ray_program_with_placement_groups_runs_unchanged(tmp_path):
    assert output_lines(run_ray_program(tmp_path, RAY_PROGRAM)) == [
        "state CREATED", "counter [1, 2, 3]", "squares [0, 1, 4, 9]", "removed REMOVED", "affinity 9",
        "spread [0, 1, 4]"]


@ember.remote(num_cpus=1, max_retries=0)
def run_until(flag: str):
    import os
    import time

    open(flag + ".started", "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "finished"


def test_removing_a_group_cancels_its_running_and_queued_tasks(cluster, tmp_path):
    from ember.exceptions import TaskCancelledError
    from ember.util.state import list_tasks

    pg = placement_group([{"CPU": 1}])
    assert pg.wait(60)
    s = PlacementGroupSchedulingStrategy(pg)
    flag = str(tmp_path / "flag")
    running = run_until.options(scheduling_strategy=s).remote(flag)
    queued = run_until.options(scheduling_strategy=s).remote(flag + "-2")
    assert wait_until(lambda: (tmp_path / "flag.started").exists(), 60)

    def reason():
        rows = [t for t in list_tasks(detail=True) if t.get("state") not in ("FINISHED", "FAILED", "RUNNING")]
        return " ".join(str(t.get("pending_reason") or "") for t in rows)

    remove_placement_group(pg)
    for ref in (running, queued):
        with pytest.raises(TaskCancelledError):
            ember.get(ref, timeout=60)
    waiting = placement_group([{"CPU": 9}])  # more than the node has: it stays pending
    inside = where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(waiting)).remote()
    assert wait_until(lambda: f"placement group {waiting.id.hex()} (PENDING" in reason(), 60), reason()
    remove_placement_group(waiting)
    with pytest.raises(TaskCancelledError):
        ember.get(inside, timeout=60)
    assert wait_until(lambda: _available_cpus() == 4, 30)
