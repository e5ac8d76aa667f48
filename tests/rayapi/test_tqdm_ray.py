"""``ray.experimental.tqdm_ray.tqdm`` as Ray documents it: a bar used inside tasks is drawn on
the driver, one bar per task, updated as the tasks advance; its state lines never show up as
output. In-process against a real cluster (the driver's stderr captured), and as a Ray
program under ``ember run``."""

from __future__ import annotations

import time

import ember
from ember.experimental.tqdm_ray import tqdm

from tests.rayapi.helpers import output_lines, run_ray_program

CLUSTER_ARGS = {"num_cpus": 2}


def _wait_for(capfd, predicate, timeout=60.0):
    """Read the captured stdout and stderr until ``predicate(out, err)`` (the text so far)
    holds; returns (out, err)."""
    out = err = ""
    deadline = time.monotonic() + timeout
    while True:
        o, e = capfd.readouterr()
        out, err = out + o, err + e
        if predicate(out, err) or time.monotonic() > deadline:
            return out, err
        time.sleep(0.05)


def test_bars_of_tasks_are_drawn_on_the_driver(cluster, capfd):
    @ember.remote
    def step(name, n):
        for _ in tqdm(range(n), desc=name, flush_interval_s=0):
            pass
        print(f"{name} done")
        return n

    assert ember.get([step.remote("alpha", 5), step.remote("beta", 3)], timeout=60) == [5, 3]
    out, err = _wait_for(capfd, lambda o, e: "5/5" in e and "3/3" in e and "beta done" in o and "alpha done" in o)
    final = [line for line in err.splitlines() if "100%" in line]
    assert any(line.startswith("alpha: 100%") and "(step pid=" in line for line in final), err
    assert any(line.startswith("beta: 100%") for line in final), err
    # every update the tasks sent was drawn (flush_interval_s=0): 0/5 .. 5/5
    assert all(f"{i}/5" in err for i in range(6)), err
    # the state lines are not output; what the task printed is
    assert "ember-progress" not in out + err
    assert "(step pid=" in out and "alpha done" in out


def test_manual_updates_descriptions_and_throttling(cluster, capfd):
    @ember.remote
    def manual():
        bar = tqdm(total=1000, desc="rows", unit="row")  # flush_interval_s=1: throttled
        for _ in range(1000):
            bar.update(1)
        bar.set_description("rows loaded")
        bar.close()
        return bar.n

    assert ember.get(manual.remote(), timeout=60) == 1000
    _, err = _wait_for(capfd, lambda o, e: "1000/1000" in e)
    lines = [line for line in err.splitlines() if line.startswith("rows")]
    assert lines[-1].startswith("rows loaded: 100%"), lines
    assert len(lines) < 50  # 1000 updates, sent at most once a second (plus open and close)


def test_a_bar_in_the_driver_is_drawn_directly(cluster, capfd):
    with tqdm(total=4, desc="driver side", flush_interval_s=0) as bar:
        for _ in range(4):
            bar.update()
    _, err = capfd.readouterr()
    assert "driver side: 100%" in err and "4/4" in err


PROGRAM = """
import ray
from ray.experimental.tqdm_ray import tqdm

ray.init(num_cpus=2)

@ray.remote
def f(name):
    for x in tqdm(range(20), desc=name, flush_interval_s=0):
        pass
    return name

print(ray.get([f.remote("task 1"), f.remote("task 2")]))
"""


def test_tqdm_ray_program_runs_under_ember_run(tmp_path):
    proc = run_ray_program(tmp_path, PROGRAM)
    assert output_lines(proc) == ["['task 1', 'task 2']"]
    for name in ("task 1", "task 2"):
        assert any(line.startswith(f"{name}: 100%") and "20/20" in line for line in proc.stderr.splitlines()), \
            proc.stderr
    assert "ember-progress" not in proc.stdout + proc.stderr
