"""Pending demand as the head reports it to the autoscaler (pure: no process)."""

from ember_node.demand import Demand, WorkRequest, unmet_demand, waiting_demand

LARGEST = {"CPU": 2.0, "memory": 4e9, "object_store_memory": 1e9}


def test_only_work_no_node_fits_counts_by_shape() -> None:
    requests = [WorkRequest({"CPU": 1.0}), WorkRequest({"CPU": 4.0}), WorkRequest({"GPU": 1.0}),
                WorkRequest({"CPU": 4.0}), WorkRequest({"CPU": 1.0, "big": 1.0})]
    assert unmet_demand(requests, LARGEST) == [
        Demand({"CPU": 4.0}, 2), Demand({"GPU": 1.0}, 1), Demand({"CPU": 1.0, "big": 1.0}, 1)]


def test_same_shape_in_any_key_order_is_one_entry_and_zero_amounts_drop() -> None:
    requests = [WorkRequest({"GPU": 1.0, "CPU": 1.0}), WorkRequest({"CPU": 1.0, "GPU": 1.0, "x": 0.0})]
    assert unmet_demand(requests, LARGEST) == [Demand({"CPU": 1.0, "GPU": 1.0}, 2)]


def test_a_default_actor_needs_a_node_with_cpus() -> None:
    actor = WorkRequest({}, needs_cpu_node=True)
    assert unmet_demand([actor], LARGEST) == []
    assert unmet_demand([actor, actor], {"CPU": 0.0, "memory": 1e9}) == [Demand({"CPU": 1.0}, 2)]
    assert unmet_demand([WorkRequest({})], {}) == []  # a zero-resource task runs anywhere


def test_waiting_demand_is_the_work_some_node_fits() -> None:
    requests = [WorkRequest({"CPU": 1.0}), WorkRequest({"CPU": 4.0}), WorkRequest({"CPU": 1.0}),
                WorkRequest({}, needs_cpu_node=True)]
    assert waiting_demand(requests, LARGEST) == [Demand({"CPU": 1.0}, 2)]  # an empty shape needs nothing
    assert unmet_demand(requests, LARGEST) == [Demand({"CPU": 4.0}, 1)]
