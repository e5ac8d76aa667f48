"""``ember.util.metrics`` (Ray's ``ray.util.metrics``) on a real embedded cluster: what tasks,
actors and the driver record shows up on the node agent's Prometheus endpoint, with its tags,
under Ray's names (``ray_<name>``, a counter as ``ray_<name>_total``)."""

from __future__ import annotations

import ember
from ember.util.metrics import Counter, Gauge, Histogram

from .helpers import wait_for


def test_a_task_increments_a_counter_seen_with_its_tags(metrics_cluster):
    port, _ = metrics_cluster

    @ember.remote
    def handle(route):
        c = Counter("user_task_requests", description="Requests handled by tasks.", tag_keys=("route", "app"))
        c.set_default_tags({"app": "shop"})
        c.inc(tags={"route": route})
        return route

    routes = ["/buy"] * 5 + ["/sell"] * 3
    assert ember.get([handle.remote(r) for r in routes], timeout=60) == routes
    scrape = wait_for(port, lambda s: s.value("ray_user_task_requests_total", route="/buy") == 5
                      and s.value("ray_user_task_requests_total", route="/sell") == 3)
    labels = [s.labels for s in scrape.samples if s.name == "ray_user_task_requests_total"]
    assert sorted(labels, key=lambda d: d["route"]) == [{"app": "shop", "route": "/buy"},
                                                          {"app": "shop", "route": "/sell"}]
    assert scrape.families["ray_user_task_requests"].type == "counter"
    assert scrape.families["ray_user_task_requests"].documentation == "Requests handled by tasks."


def test_an_actor_exports_a_gauge_and_a_histogram(metrics_cluster):
    port, _ = metrics_cluster

    @ember.remote
    class Service:
        def __init__(self, name):
            self.count = 0
            self.gauge = Gauge("user_curr_count", "Current count.", tag_keys=("actor_name",))
            self.gauge.set_default_tags({"actor_name": name})
            self.hist = Histogram("user_latency_ms", "Latencies in ms.", boundaries=[1, 10],
                                  tag_keys=("actor_name",)).set_default_tags({"actor_name": name})

        def process(self, n):
            self.count += n
            self.gauge.set(self.count)
            self.hist.observe(n)
            return self.count

    s = Service.remote("svc")
    assert ember.get([s.process.remote(n) for n in (0.5, 5, 50)], timeout=60)[-1] == 55.5
    scrape = wait_for(port, lambda s: s.value("ray_user_curr_count", actor_name="svc") == 55.5
                      and s.value("ray_user_latency_ms_count", actor_name="svc") == 3)
    assert scrape.value("ray_user_latency_ms_bucket", actor_name="svc", le="1.0") == 1
    assert scrape.value("ray_user_latency_ms_bucket", actor_name="svc", le="10.0") == 2
    assert scrape.value("ray_user_latency_ms_bucket", actor_name="svc", le="+Inf") == 3
    assert scrape.value("ray_user_latency_ms_sum", actor_name="svc") == 55.5
    ember.kill(s)


def test_the_driver_records_too(metrics_cluster):
    port, _ = metrics_cluster
    c = Counter("user_driver_steps", tag_keys=("phase",))
    for _ in range(4):
        c.inc(tags={"phase": "load"})
    c.inc(2.5, tags={"phase": "train"})
    wait_for(port, lambda s: s.value("ray_user_driver_steps_total", phase="load") == 4
             and s.value("ray_user_driver_steps_total", phase="train") == 2.5)


def test_a_metric_defined_on_the_driver_is_used_in_tasks(metrics_cluster):
    """The metric object is shipped with the function (pickled with its default tags)."""
    port, _ = metrics_cluster
    done = Counter("user_shipped_done", tag_keys=("kind",)).set_default_tags({"kind": "shipped"})

    @ember.remote
    def work(i):
        done.inc()
        return i

    assert ember.get([work.remote(i) for i in range(6)], timeout=60) == list(range(6))
    wait_for(port, lambda s: s.value("ray_user_shipped_done_total", kind="shipped") == 6)


def test_a_worker_that_retires_after_max_calls_sends_what_it_recorded(metrics_cluster):
    """Each call runs in a fresh process that exits right after it: nothing may be lost."""
    port, _ = metrics_cluster

    @ember.remote(max_calls=1)
    def once(i):
        import os

        Counter("user_once_calls").inc()
        return os.getpid()

    pids = ember.get([once.remote(i) for i in range(5)], timeout=120)
    assert len(set(pids)) == 5
    wait_for(port, lambda s: s.value("ray_user_once_calls_total") == 5)

