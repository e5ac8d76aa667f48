"""The node agent's Prometheus endpoint, scraped during real workloads on an embedded cluster.

Remote functions are defined inside the tests so that cloudpickle ships them by value.
Counters are compared before and after each workload (the cluster is shared by the module).
"""

from __future__ import annotations

import threading
import time

import ember
import ember.exceptions as exc
import pytest

from .helpers import Scrape, get, wait_for

MB = 1 << 20


@pytest.fixture
def port(metrics_cluster):
    return metrics_cluster[0]


def test_healthz_and_valid_exposition(metrics_cluster):
    port, node_id = metrics_cluster
    status, _, body = get(port, "/healthz")
    assert (status, body) == (200, "ok")
    scrape = Scrape(port)
    ember_families = [f for f in scrape.families.values() if f.name.startswith("ember_")]
    assert len(ember_families) >= 20
    for family in ember_families:
        for sample in family.samples:
            assert sample.labels.get("node_id") == node_id, sample
    # the agent's own process metrics, from prometheus_client's ProcessCollector
    assert scrape.value("process_resident_memory_bytes") > 10 * MB
    assert scrape.value("process_cpu_seconds_total") > 0
    # families for a future gRPC server exist, with no samples yet
    for name in ("ember_grpc_requests", "ember_grpc_errors"):
        assert name in scrape.families and scrape.families[name].samples == []
    assert scrape.value("ember_grpc_auth_failures_total") == 0
    assert scrape.value("ember_cluster_nodes", state="alive") == 1
    assert scrape.value("ember_cluster_nodes", state="dead") == 0
    assert scrape.value("ember_worker_starts_total") >= 2  # the pool starts one worker per CPU
    assert get(port, "/nope")[0] == 404


def test_openmetrics_negotiation(port):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    status, ctype, body = get(port, "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"ember_tasks", "ember_tasks_finished", "ember_task_run_seconds"} <= names


def test_resources(port):
    scrape = wait_for(port, lambda s: s.value("ember_node_resource_available", resource="CPU") == 2)
    assert scrape.value("ember_node_resource_capacity", resource="CPU") == 2
    assert scrape.value("ember_node_resource_capacity", resource="object_store_memory") == 200 * MB
    assert scrape.value("ember_object_store_capacity_bytes") == 200 * MB


def test_fifty_tasks(port):
    @ember.remote
    def fifty_square(x):
        return x * x

    before = Scrape(port)
    assert ember.get([fifty_square.remote(i) for i in range(50)]) == [i * i for i in range(50)]
    after = wait_for(port, lambda s: s.value("ember_task_run_seconds_count")
                     - before.value("ember_task_run_seconds_count") >= 50)
    name = after.name_label("fifty_square")
    assert after.value("ember_tasks_submitted_total", name=name) == 50
    assert after.value("ember_tasks_finished_total", name=name) == 50
    assert after.value("ember_tasks_failed_total", name=name) == 0
    assert after.value("ember_tasks_retried_total", name=name) == 0
    assert after.value("ember_tasks", state="finished", name=name) == 50
    assert after.value("ember_tasks", state="running", name=name) == 0
    assert (after.value("ember_tasks_finished_total")
            - before.value("ember_tasks_finished_total")) == 50
    assert (after.value("ember_task_run_seconds_count")
            - before.value("ember_task_run_seconds_count")) == 50
    assert after.value("ember_task_run_seconds_sum") > before.value("ember_task_run_seconds_sum")
    assert after.value("ember_task_run_seconds_bucket", le="+Inf") == after.value(
        "ember_task_run_seconds_count")


def test_tasks_by_state_and_available_resources(port):
    @ember.remote
    def state_sleeper(t):
        time.sleep(t)
        return 1

    @ember.remote
    def state_waiter(x):
        return x

    first = state_sleeper.remote(2)
    others = [state_sleeper.remote(2) for _ in range(2)]
    waiting = state_waiter.remote(first)

    def busy(s: Scrape) -> bool:
        names = {v for v in s.label_values("ember_tasks", "name") if "state_" in v}
        by = {(st, n.split(".")[-1]): s.value("ember_tasks", state=st, name=n)
              for n in names for st in ("running", "pending_node", "pending_args")}
        return (by.get(("running", "state_sleeper")) == 2
                and by.get(("pending_node", "state_sleeper")) == 1
                and by.get(("pending_args", "state_waiter")) == 1)

    scrape = wait_for(port, busy)
    assert scrape.value("ember_node_resource_available", resource="CPU") == 0
    assert scrape.value("ember_workers", state="busy") >= 2
    assert ember.get([first, waiting, *others]) == [1, 1, 1, 1]
    scrape = wait_for(port, lambda s: s.value("ember_node_resource_available", resource="CPU") == 2)
    sleeper = scrape.name_label("state_sleeper")
    assert scrape.value("ember_tasks", state="running", name=sleeper) == 0
    assert scrape.value("ember_tasks", state="finished", name=sleeper) == 3


def test_worker_crash_counts(port, tmp_path):
    @ember.remote(max_retries=0)
    def crash_exit():
        import os

        os._exit(1)

    before = Scrape(port)
    with pytest.raises(exc.WorkerCrashedError):
        ember.get(crash_exit.remote())
    after = wait_for(port, lambda s: s.value("ember_worker_crashes_total")
                     > before.value("ember_worker_crashes_total"))
    assert after.value("ember_worker_crashes_total") == before.value("ember_worker_crashes_total") + 1
    name = after.name_label("crash_exit")
    assert after.value("ember_tasks_failed_total", name=name) == 1
    assert after.value("ember_tasks_finished_total", name=name) == 0


def test_retries_count_once_each(port, tmp_path):
    @ember.remote(max_retries=2)
    def crash_once(path):
        import os

        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return "ok"

    @ember.remote(max_retries=3, retry_exceptions=True)
    def raise_twice(path):
        with open(path, "a") as f:
            f.write("x\n")
        with open(path) as f:
            if len(f.read().splitlines()) <= 2:
                raise ValueError("not yet")
        return "ok"

    assert ember.get(crash_once.remote(str(tmp_path / "crash"))) == "ok"
    assert ember.get(raise_twice.remote(str(tmp_path / "raise"))) == "ok"

    def done(s: Scrape) -> bool:  # a result can reach the driver before the agent counts it
        return all(s.value("ember_tasks_finished_total", name=s.name_label(f)) >= 1
                   for f in ("crash_once", "raise_twice"))

    scrape = wait_for(port, done)
    crash, raised = scrape.name_label("crash_once"), scrape.name_label("raise_twice")
    counts = {n: [scrape.value(f"ember_tasks_{what}_total", name=n)
                  for what in ("submitted", "retried", "finished", "failed")] for n in (crash, raised)}
    assert counts == {crash: [1, 1, 1, 0], raised: [1, 2, 1, 0]}


def test_failed_task(port):
    @ember.remote
    def raises_value_error():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        ember.get(raises_value_error.remote())
    scrape = wait_for(port, lambda s: s.value("ember_tasks_failed_total", name=s.name_label("raises_value_error")))
    name = scrape.name_label("raises_value_error")
    assert scrape.value("ember_tasks_failed_total", name=name) == 1
    assert scrape.value("ember_tasks", state="failed", name=name) == 1
    assert scrape.value("ember_tasks_finished_total", name=name) == 0


def test_store_bytes_rise_and_fall(port):
    np = pytest.importorskip("numpy")
    before = wait_for(port, lambda s: s.value("ember_object_store_used_bytes") < 40 * MB)
    used0 = before.value("ember_object_store_used_bytes")
    ref = ember.put(np.ones(50 * MB, dtype=np.uint8))
    scrape = Scrape(port)
    assert scrape.value("ember_object_store_used_bytes") >= used0 + 50 * MB
    assert scrape.value("ember_object_store_objects") >= before.value("ember_object_store_objects") + 1
    del ref
    wait_for(port, lambda s: s.value("ember_object_store_used_bytes") <= used0 + MB)


def test_memory_and_small_object_gauges(port):
    scrape = wait_for(port, lambda s: s.value("ember_node_memory_limit_bytes") > 0)
    assert 0 < scrape.value("ember_node_memory_used_bytes") <= scrape.value("ember_node_memory_limit_bytes")
    assert scrape.value("ember_memory_monitor_kills_total") == 0
    assert scrape.value("ember_object_inline_limit_bytes") >= 16 * MB
    before = scrape.value("ember_object_inline_bytes")
    refs = [ember.put(b"x" * 10_000) for _ in range(100)]
    wait_for(port, lambda s: s.value("ember_object_inline_bytes") >= before + 100 * 10_000)
    del refs
    wait_for(port, lambda s: s.value("ember_object_inline_bytes") <= before)


def test_spill_and_restore(port):
    np = pytest.importorskip("numpy")
    before = Scrape(port)
    refs = [ember.put(np.full(50 * MB, i, dtype=np.uint8)) for i in range(5)]  # 250 MB > 200 MB
    scrape = Scrape(port)
    spilled = scrape.value("ember_object_store_spilled_bytes_total") - before.value(
        "ember_object_store_spilled_bytes_total")
    assert spilled >= 50 * MB
    assert scrape.value("ember_object_store_spills_total") > before.value("ember_object_store_spills_total")
    assert scrape.value("ember_object_store_spilled_current_bytes") >= 50 * MB
    assert ember.get(refs[0])[0] == 0  # the oldest was spilled: reading it restores it
    scrape = Scrape(port)
    assert scrape.value("ember_object_store_restored_bytes_total") - before.value(
        "ember_object_store_restored_bytes_total") >= 50 * MB
    del refs
    wait_for(port, lambda s: s.value("ember_object_store_spilled_current_bytes") == 0
             and s.value("ember_object_store_used_bytes") < 40 * MB)


def test_actors_by_state(port):
    @ember.remote
    class MetricsCounter:
        def ping(self):
            return 1

    before = Scrape(port)
    actor = MetricsCounter.remote()
    assert ember.get(actor.ping.remote()) == 1
    wait_for(port, lambda s: s.value("ember_actors", state="ALIVE") == before.value(
        "ember_actors", state="ALIVE") + 1)
    ember.kill(actor)
    wait_for(port, lambda s: s.value("ember_actors", state="ALIVE") == before.value(
        "ember_actors", state="ALIVE") and s.value("ember_actors", state="DEAD") >= 1)
    scrape = Scrape(port)
    assert set(scrape.label_values("ember_actors", "state")) == {
        "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"}
    ping = scrape.name_label("ping")
    assert scrape.value("ember_tasks_finished_total", name=ping) == 1
    # ending an actor on purpose is not a worker crash
    assert scrape.value("ember_worker_crashes_total") == before.value("ember_worker_crashes_total")


def test_force_cancel_is_a_failure_not_a_crash(port):
    @ember.remote
    def cancel_me():
        time.sleep(60)

    before = Scrape(port)
    ref = cancel_me.remote()
    wait_for(port, lambda s: s.value("ember_tasks", state="running") >= 1)
    ember.cancel(ref, force=True)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(ref, timeout=30)
    scrape = wait_for(port, lambda s: s.value("ember_node_resource_available", resource="CPU") == 2)
    name = scrape.name_label("cancel_me")
    assert scrape.value("ember_tasks_failed_total", name=name) == 1
    assert scrape.value("ember_worker_crashes_total") == before.value("ember_worker_crashes_total")


def test_scrapes_during_a_busy_workload_stay_valid(port):
    """The collector reads the agent's dicts while the loop mutates them."""

    @ember.remote
    def busy_noop(i):
        return i

    errors: list[BaseException] = []
    stop = threading.Event()
    scrapes = [0]

    def scraper():
        while not stop.is_set():
            try:
                Scrape(port)
                scrapes[0] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    t = threading.Thread(target=scraper)
    t.start()
    try:
        for _ in range(4):
            ember.get([busy_noop.remote(i) for i in range(2000)])
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert scrapes[0] >= 2
    scrape = Scrape(port)
    name = scrape.name_label("busy_noop")
    assert scrape.value("ember_tasks_finished_total", name=name) == 8000
    assert scrape.value("ember_tasks_submitted_total", name=name) == 8000
