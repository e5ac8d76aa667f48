"""``ember memory``'s grouping (ember._state_query.memory_groups) and the call-site switch
(ember._call_site): pure, no process."""

from __future__ import annotations

import pytest
from ember._call_site import call_site, enabled
from ember._state_query import memory_groups

ROWS = [{"object_id": "a", "size": 100, "call_site": "x.py:1", "kind": "STORE", "state": "READY"},
        {"object_id": "b", "size": 300, "call_site": "x.py:1", "kind": "STORE", "state": "READY"},
        {"object_id": "c", "size": 10, "call_site": "y.py:7", "kind": "INLINE", "state": "READY"},
        {"object_id": "d", "size": 20, "call_site": "y.py:7", "kind": "INLINE", "state": "READY"},
        {"object_id": "e", "size": 30, "call_site": "y.py:7", "kind": "INLINE", "state": "READY"},
        {"object_id": "f", "size": 0, "call_site": "", "kind": "", "state": "PENDING"}]


def test_groups_by_call_site_largest_first():
    g = memory_groups(ROWS)
    assert [x["call_site"] for x in g] == ["x.py:1", "y.py:7", "(unknown)"]
    assert g[0] == {"call_site": "x.py:1", "count": 2, "total_bytes": 400, "largest": 300}


def test_sort_by_count_limit_and_other_keys():
    assert [x["call_site"] for x in memory_groups(ROWS, sort_by="count", limit=1)] == ["y.py:7"]
    assert {x["kind"]: x["count"] for x in memory_groups(ROWS, "kind")} == {"STORE": 2, "INLINE": 3,
                                                                             "(unknown)": 1}
    assert memory_groups([], "state") == []


def test_bad_choices_name_the_alternatives():
    with pytest.raises(ValueError, match="call_site, kind, state"):
        memory_groups(ROWS, "pid")
    with pytest.raises(ValueError, match="size, count"):
        memory_groups(ROWS, sort_by="age")


def test_call_site_switch_and_value():
    assert not enabled({}) and enabled({"EMBER_RECORD_CALLSITE": "1"})
    assert not enabled({"EMBER_RECORD_CALLSITE": "0"}) and not enabled({"EMBER_RECORD_CALLSITE": "off"})
    assert enabled({"RAY_record_ref_creation_sites": "1"})
    assert not enabled({"EMBER_RECORD_CALLSITE": "0", "RAY_record_ref_creation_sites": "1"})
    site = call_site(1)
    assert site.startswith("test_memory_groups.py:")
