"""``ember.util.metrics`` and the agent's merge of what processes report, without processes:
the argument checks Ray documents, batching in the recording process, and the exposition
the agent builds from the batches of several processes."""

from __future__ import annotations

import pickle

import pytest
from ember.util import metrics as um
from ember_node.user_metrics import UserMetrics, check_record
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(autouse=True)
def fresh_buffer(monkeypatch):
    """Each test records into a buffer of its own (nothing is sent: no cluster here)."""
    buf = um._Buffer()
    monkeypatch.setattr(um, "_buffer", buf)
    monkeypatch.setattr(um, "_ensure_flusher", lambda: None)
    return buf


def _exposition(user: UserMetrics) -> dict[str, list]:
    reg = CollectorRegistry()
    reg.register(user)
    text = generate_latest(reg).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_constructor_arguments_as_ray_documents_them():
    c = um.Counter("requests", description="Requests served.", tag_keys=("route",))
    assert c.info == {"name": "requests", "description": "Requests served.", "tag_keys": ("route",),
                      "default_tags": {}}
    with pytest.raises(TypeError, match="tag_keys must be a tuple"):
        um.Counter("x", tag_keys=["route"])
    with pytest.raises(ValueError, match="non-empty"):
        um.Gauge("")
    with pytest.raises(ValueError, match="boundaries"):
        um.Histogram("latency")
    with pytest.raises(ValueError, match="positive"):
        um.Histogram("latency", boundaries=[0, 1])
    h = um.Histogram("latency", "Latency.", [0.1, 1], ("route",))
    assert h.info["boundaries"] == [0.1, 1.0]
    with pytest.warns(UserWarning, match="invalid metric name"):
        bad = um.Counter("1st-metric")
    bad.inc()  # kept, records nothing


def test_set_default_tags_returns_the_metric_and_tags_override_them(fresh_buffer):
    c = um.Counter("hits", tag_keys=("a", "b"))
    assert c.set_default_tags({"a": "x"}) is c
    with pytest.raises(ValueError, match="unknown tag key"):
        c.set_default_tags({"zzz": "1"})
    with pytest.raises(ValueError, match="missing value for tag key"):
        c.inc()  # "b" has no value
    c.inc(tags={"b": "1"})
    c.inc(2, tags={"a": "y", "b": "1"})
    c.inc(tags={"b": "1"})
    with pytest.raises(ValueError, match="> 0"):
        c.inc(0, tags={"b": "1"})
    with pytest.raises(TypeError, match="str"):
        c.inc(tags={"b": 1})
    [rec] = fresh_buffer.drain()
    assert rec.kind == "counter" and rec.tag_keys == ("a", "b")
    assert dict(rec.samples) == {("x", "1"): 2.0, ("y", "1"): 2.0}
    assert not fresh_buffer and fresh_buffer.drain() == []  # drained: the next batch starts empty


def test_records_are_batched_per_series(fresh_buffer):
    g = um.Gauge("depth", tag_keys=("q",))
    h = um.Histogram("size", boundaries=[1, 10])
    for i in range(1000):
        g.set(i, tags={"q": "in"})
        h.observe(i % 20)
    records = {r.kind: r for r in fresh_buffer.drain()}
    assert records["gauge"].samples == [(("in",), 999.0)]
    [(tags, (counts, total))] = records["histogram"].samples
    assert tags == () and sum(counts) == 1000
    assert counts == (100, 450, 450)  # <=1 (0 and 1), <=10 (2..10), +Inf (11..19), per 20 values
    assert total == sum(i % 20 for i in range(1000))


def test_a_batch_that_cannot_go_is_kept_for_the_next(fresh_buffer):
    c = um.Counter("n")
    g = um.Gauge("g")
    c.inc(3)
    g.set(1)
    records = fresh_buffer.drain()
    c.inc()
    g.set(2)
    fresh_buffer.put_back(records)
    merged = {r.kind: r.samples for r in fresh_buffer.drain()}
    assert merged == {"counter": [((), 4.0)], "gauge": [((), 2.0)]}  # the newer gauge value wins
    assert um.flush(rt=None) is True  # nothing left to send


def test_metrics_pickle_with_their_default_tags():
    c = um.Counter("n", "d", ("k",)).set_default_tags({"k": "v"})
    back = pickle.loads(pickle.dumps(c))
    assert back.info == c.info
    h = pickle.loads(pickle.dumps(um.Histogram("h", boundaries=[2.0])))
    assert h.info["boundaries"] == [2.0]


def test_the_agent_merges_processes_and_exports_ray_names(fresh_buffer):
    user = UserMetrics()
    c = um.Counter("num_requests", "Requests.", ("actor_name",))
    g = um.Gauge("curr_count", "Current.", ("actor_name",))
    h = um.Histogram("request_latency", "Latency.", [0.1, 1], ("actor_name",))
    for proc in range(2):  # two processes each send a batch
        c.inc(tags={"actor_name": "a"})
        g.set(10 + proc, tags={"actor_name": "a"})
        h.observe(0.5, tags={"actor_name": "a"})
        user.merge([tuple(r) for r in fresh_buffer.drain()])
    fams = _exposition(user)
    [counter] = [s for s in fams["ray_num_requests"] if s.name == "ray_num_requests_total"]
    assert counter.labels == {"actor_name": "a"} and counter.value == 2.0
    assert [s.value for s in fams["ray_curr_count"]] == [11.0]
    buckets = {s.labels["le"]: s.value for s in fams["ray_request_latency"]
               if s.name == "ray_request_latency_bucket"}
    assert buckets == {"0.1": 0.0, "1.0": 2.0, "+Inf": 2.0}
    count = [s.value for s in fams["ray_request_latency"] if s.name == "ray_request_latency_count"]
    assert count == [2.0]


def test_the_agent_refuses_malformed_batches_whole():
    user = UserMetrics()
    good = ("counter", "ok", "", (), (), [((), 1.0)])
    for bad, why in [
        (("counter", "bad name", "", (), (), []), "invalid metric name"),
        (("timer", "t", "", (), (), []), "unknown metric kind"),
        (("counter", "c", "", ("k",), (), [((), 1.0)]), "one per tag key"),
        (("counter", "c", "", (), (), [((), -1.0)]), ">= 0"),
        (("histogram", "h", "", (), (1.0,), [((), ((1,), 1.0))]), "bucket counts"),
        (("gauge", "g", "", ("le",), (), []), "invalid tag keys"),
    ]:
        assert why in check_record(bad)
        with pytest.raises(ValueError, match="malformed"):
            user.merge([good, bad])
    assert "ray_ok" not in _exposition(user)
    with pytest.raises(ValueError):
        user.merge("not a list")


def test_the_agent_bounds_series_and_keeps_the_first_definition():
    user = UserMetrics("n1", max_series=3)
    user.merge([("gauge", "g", "", ("k",), (), [((str(i),), 1.0) for i in range(5)])])
    user.merge([("counter", "g", "", (), (), [((), 1.0)])])  # same name, another kind
    fams = _exposition(user)
    assert len(fams["ray_g"]) == 3
    [dropped] = fams["ember_user_metrics_dropped"]
    assert dropped.value == 3.0 and dropped.labels == {"node_id": "n1"}


def test_a_forked_child_starts_with_nothing_recorded(fresh_buffer, monkeypatch):
    monkeypatch.setattr(um, "_flusher", object())  # the parent's thread (gone in a child)
    um.Counter("n").inc()
    um._after_fork_in_child()
    assert not um._buffer and um._flusher is None  # the parent's values are the parent's to send
