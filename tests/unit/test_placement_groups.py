"""Placement-group bundle placement (ember_node.placement_groups) as a pure decision, and the
bookkeeping of reserving and giving back bundles on hand-built node records; no process."""

from __future__ import annotations

import pytest
from ember.util.placement_group import PlacementGroup, PlacementGroupID, bundle_resources, group_of
from ember_node.placement_groups import (
    CREATED,
    PENDING,
    REMOVED,
    RESCHEDULING,
    PlacementGroups,
    check_bundles,
    group_resources,
    place_bundles,
)
from ember_node.workers import NodeRec


def nodes(*cpus: float) -> list[NodeRec]:
    return [NodeRec(f"n{i}", "", "host", {"CPU": c}) for i, c in enumerate(cpus)]


def ids(chosen):
    return None if chosen is None else [n.node_id for n in chosen]


def test_strict_pack_needs_one_node_for_all():
    ns = nodes(2, 4)
    assert ids(place_bundles([{"CPU": 2}, {"CPU": 2}], "STRICT_PACK", ns)) == ["n1", "n1"]
    assert place_bundles([{"CPU": 3}, {"CPU": 2}], "STRICT_PACK", ns) is None


def test_pack_uses_one_node_when_it_can_and_few_otherwise():
    ns = nodes(2, 2, 2)
    assert ids(place_bundles([{"CPU": 1}, {"CPU": 1}], "PACK", ns)) == ["n0", "n0"]
    assert ids(place_bundles([{"CPU": 1}] * 4, "PACK", ns)) == ["n0", "n0", "n1", "n1"]
    assert place_bundles([{"CPU": 1}] * 7, "PACK", ns) is None


def test_spread_puts_bundles_on_different_nodes_but_may_share():
    ns = nodes(2, 2)
    assert ids(place_bundles([{"CPU": 1}, {"CPU": 1}], "SPREAD", ns)) == ["n0", "n1"]
    assert sorted(ids(place_bundles([{"CPU": 1}] * 3, "SPREAD", ns))) == ["n0", "n0", "n1"]


def test_strict_spread_needs_a_node_per_bundle_and_searches():
    ns = nodes(4, 1)
    # greedy would put the small bundle on the big node and leave no room for the big one
    assert ids(place_bundles([{"CPU": 1}, {"CPU": 3}], "STRICT_SPREAD", ns)) == ["n1", "n0"]
    assert place_bundles([{"CPU": 1}] * 3, "STRICT_SPREAD", ns) is None


def test_dead_nodes_and_busy_resources_do_not_count():
    ns = nodes(2, 2)
    ns[0].alive = False
    ns[1].available["CPU"] = 1
    assert place_bundles([{"CPU": 2}], "PACK", ns) is None
    assert ids(place_bundles([{"CPU": 1}], "PACK", ns)) == ["n1"]


def test_check_bundles_names_the_problem():
    assert check_bundles([{"CPU": 1}], "PACK") is None
    assert "strategy" in check_bundles([{"CPU": 1}], "BEST")
    assert "non-empty" in check_bundles([], "PACK")
    assert "non-negative" in check_bundles([{"CPU": -1}], "PACK")
    assert "some resource" in check_bundles([{"CPU": 0}], "PACK")


def test_reserve_rename_and_give_back():
    ns = {n.node_id: n for n in nodes(4)}
    changed, ended = [], []
    pgs = PlacementGroups(ns, lambda: changed.append(1), ended.append)
    assert pgs.create("ab", [{"CPU": 1}, {"CPU": 2}], "PACK", "g", "job1", False) == CREATED
    n = ns["n0"]
    assert n.available["CPU"] == 1
    assert n.available["CPU_group_1_ab"] == 2 and n.available["CPU_group_ab"] == 3
    assert n.totals["bundle_group_ab"] == 2000
    assert pgs.create("cd", [{"CPU": 2}], "PACK", "", "job1", True) == PENDING
    pgs.remove_job("job1")  # the detached one stays, the other goes; then the pending one fits
    assert ended == ["ab"] and pgs.groups["ab"].state == REMOVED and pgs.groups["cd"].state == CREATED
    assert "CPU_group_ab" not in n.totals and n.available["CPU"] == 2
    pgs.remove("cd")
    assert n.available == {"CPU": 4}
    with pytest.raises(ValueError, match="no placement group"):
        pgs.remove("zz")
    assert changed


def test_the_driver_renames_requests_into_the_agent_names():
    pg = PlacementGroup(PlacementGroupID("ab"), [{"CPU": 1}, {"CPU": 2}])
    any_bundle = bundle_resources({"CPU": 1.0}, pg, -1)
    assert any_bundle == {"CPU_group_ab": 1.0, "bundle_group_ab": 0.001}
    one = bundle_resources({"CPU": 1.0}, pg, 1)
    assert set(one) <= set(group_resources(1, "ab", {"CPU": 2}))
    assert group_of(one) == "ab" and group_of({"CPU": 1.0}) is None
    with pytest.raises(ValueError, match="out of range"):
        bundle_resources({}, pg, 2)


def test_bundles_of_a_dead_node_are_placed_again_elsewhere():
    ns = {n.node_id: n for n in nodes(2, 2, 2)}
    pgs = PlacementGroups(ns, lambda: None, lambda pg: None)
    pgs.create("ab", [{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD", "", "job", False)
    g = pgs.groups["ab"]
    assert ids(g.nodes) == ["n0", "n1"]
    ns["n1"].alive = False
    pgs.node_dead(ns["n1"])
    assert g.state == CREATED and ids(g.nodes) == ["n0", "n2"]  # not next to bundle 0
    assert ns["n2"].available["CPU_group_1_ab"] == 1 and ns["n2"].available["CPU"] == 1
    ns["n2"].alive = False
    pgs.node_dead(ns["n2"])
    assert g.state == RESCHEDULING and g.info()["bundles_to_node_id"] == {0: "n0"}
    pgs.remove("ab")  # gives back what the live node held
    assert ns["n0"].available == {"CPU": 2}


def test_pending_groups_ask_for_their_unplaced_bundles():
    ns = {n.node_id: n for n in nodes(2, 2)}
    pgs = PlacementGroups(ns, lambda: None, lambda pg: None)
    pgs.create("a", [{"CPU": 3}, {"CPU": 1}], "PACK", "", "job", False)
    pgs.create("b", [{"CPU": 2}, {"CPU": 2}], "STRICT_PACK", "", "job", False)
    assert pgs.pending_shapes() == [{"CPU": 3.0}, {"CPU": 1.0}, {"CPU": 4.0}]
    pgs.create("c", [{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD", "", "job", False)
    ns["n1"].alive = False
    pgs.node_dead(ns["n1"])  # bundle 1 of c is lost, and no other node may take it
    assert pgs.pending_shapes()[-1] == {"CPU": 1.0} and len(pgs.pending_shapes()) == 4


def test_why_work_in_a_group_waits():
    ns = {n.node_id: n for n in nodes(2)}
    pgs = PlacementGroups(ns, lambda: None, lambda pg: None)
    pgs.create("ab", [{"CPU": 1}], "PACK", "", "job", False)
    pgs.create("cd", [{"CPU": 5}], "PACK", "", "job", False)
    pg = PlacementGroup(PlacementGroupID("ab"), None)
    assert "waits for room in its placement group ab (it needs CPU=2" in pgs.why_waiting(
        "task f", bundle_resources({"CPU": 2.0}, pg, 0))
    assert "PENDING" in pgs.why_waiting("task f", bundle_resources({}, PlacementGroup(PlacementGroupID("cd")), -1))
    assert "does not exist" in pgs.why_waiting("task f", bundle_resources({}, PlacementGroup(PlacementGroupID("zz")), -1))


def test_the_table_becomes_ray_state_rows():
    from ember._state_query import placement_group_rows

    table = {"ab": {"placement_group_id": "ab", "name": "pair", "job_id": "01000000",
                    "state": "CREATED", "lifetime": "detached",
                    "bundles": {0: {"CPU": 1.0}, 1: {"GPU": 1.0}},
                    "bundles_to_node_id": {0: "n1", 1: "n2"},
                    "stats": {"scheduling_state": "FINISHED"}}}
    assert placement_group_rows(table, detail=False) == [
        {"placement_group_id": "ab", "name": "pair", "creator_job_id": "01000000", "state": "CREATED"}]
    (row,) = placement_group_rows(table, detail=True)
    assert row["is_detached"] is True and row["stats"] == {"scheduling_state": "FINISHED"}
    assert row["bundles"] == [
        {"bundle_id": "ab_0", "node_id": "n1", "unit_resources": {"CPU": 1.0}},
        {"bundle_id": "ab_1", "node_id": "n2", "unit_resources": {"GPU": 1.0}}]
