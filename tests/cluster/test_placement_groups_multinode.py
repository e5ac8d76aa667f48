"""Placement groups across real nodes (a head and a worker node, a remote driver over the
head's port): STRICT_SPREAD puts each bundle on its own node, and work in a bundle runs on that
bundle's node; SPREAD uses both nodes; STRICT_PACK keeps every bundle on one node; a
STRICT_SPREAD group with more bundles than nodes stays pending until a node joins; the
groups of a driver that exits are removed with its job."""

from __future__ import annotations

import shutil

import ember
from ember.util import placement_group, placement_group_table, remove_placement_group
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .helpers import query, short_tmpdir, start_head, start_worker_node, wait_cluster, wait_until


@ember.remote(num_cpus=1)
def node_of():
    return ember.get_runtime_context().get_node_id()


def test_spread_groups_over_nodes(procs, connect):
    root = short_tmpdir()
    try:
        head = start_head(procs, root, num_cpus=2)
        a = start_worker_node(procs, head, root, "a", num_cpus=2)
        wait_cluster(head, alive_nodes=2, timeout=60)
        connect(head)

        pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
        assert pg.wait(60)
        placed = placement_group_table(pg)["bundles_to_node_id"]
        assert set(placed.values()) == {head.node_id, a.node_id}
        for i in (0, 1):
            s = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)
            assert set(ember.get([node_of.options(scheduling_strategy=s).remote() for _ in range(3)],
                                 timeout=60)) == {placed[i]}
        remove_placement_group(pg)

        pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
        assert pg.wait(60)
        assert set(placement_group_table(pg)["bundles_to_node_id"].values()) == {head.node_id, a.node_id}
        remove_placement_group(pg)

        pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
        assert pg.wait(60)
        assert len(set(placement_group_table(pg)["bundles_to_node_id"].values())) == 1
        remove_placement_group(pg)

        # three bundles, two nodes: pending until a third node joins
        pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
        assert not pg.wait(0.5)
        b = start_worker_node(procs, head, root, "b", num_cpus=1)
        assert pg.wait(60)
        assert set(placement_group_table(pg)["bundles_to_node_id"].values()) == {head.node_id, a.node_id, b.node_id}
        detached = placement_group([{"CPU": 1}], lifetime="detached")
        assert detached.wait(60)
        ember.shutdown()

        def groups_left():
            return {h: g["state"] for h, g in query(head, ("pg_table", None))[0].items()}

        # the driver's job ended: its group went, the detached one stays
        assert wait_until(lambda: groups_left().get(pg.id.hex()) == "REMOVED", 30), groups_left()
        assert groups_left()[detached.id.hex()] == "CREATED"
    finally:
        procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@ember.remote(num_cpus=1, max_restarts=1, max_task_retries=-1)
class Pinned:
    def node(self):
        return ember.get_runtime_context().get_node_id()


def test_a_bundle_lost_with_its_node_is_placed_again_and_its_actor_follows(procs, connect):
    """STRICT_SPREAD over three one-CPU nodes: the bundle on the node that dies moves to the
    spare node, and the actor in it restarts there."""
    root = short_tmpdir()
    try:
        head = start_head(procs, root, num_cpus=1, env={"EMBER_HEARTBEAT_TIMEOUT_S": "3"})
        a = start_worker_node(procs, head, root, "a", num_cpus=1)
        wait_cluster(head, alive_nodes=2, timeout=60)
        connect(head)
        pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
        assert pg.wait(60)
        placed = placement_group_table(pg)["bundles_to_node_id"]
        lost = next(i for i, n in placed.items() if n == a.node_id)
        b = start_worker_node(procs, head, root, "b", num_cpus=1)
        wait_cluster(head, alive_nodes=3, timeout=60)
        actor = Pinned.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=lost)).remote()
        assert ember.get(actor.node.remote(), timeout=60) == a.node_id
        procs.kill_tree(a.proc.pid)

        def moved():
            info = placement_group_table(pg)
            return info["state"] == "CREATED" and info["bundles_to_node_id"].get(lost) == b.node_id

        assert wait_until(moved, 60), placement_group_table(pg)
        assert ember.get(actor.node.remote(), timeout=90) == b.node_id
        remove_placement_group(pg)
    finally:
        procs.cleanup()
        shutil.rmtree(root, ignore_errors=True)
