"""A Ray program using ``ray.util.metrics`` the way Ray's monitoring guide shows it runs
unchanged under ``ember run``: ``ray.init(_metrics_export_port=PORT)`` serves the metrics an
actor records, which the program scrapes itself."""

from __future__ import annotations

from tests.metrics.helpers import free_port
from tests.rayapi.helpers import output_lines, run_ray_program

PROGRAM = """
import sys, time, urllib.request
import ray
from ray.util.metrics import Counter, Gauge, Histogram

port = int(sys.argv[1])
ray.init(_metrics_export_port=port)

@ray.remote
class Worker:
    def __init__(self, name):
        self.total = 0
        self.requests = Counter("prog_requests", description="Requests.", tag_keys=("actor_name",))
        self.requests.set_default_tags({"actor_name": name})
        self.total_gauge = Gauge("prog_total", description="Total.", tag_keys=("actor_name",))
        self.total_gauge.set_default_tags({"actor_name": name})
        self.sizes = Histogram("prog_sizes", description="Sizes.", boundaries=[1, 100],
                               tag_keys=("actor_name",))
        self.sizes.set_default_tags({"actor_name": name})

    def work(self, n):
        self.total += n
        self.requests.inc()
        self.total_gauge.set(self.total)
        self.sizes.observe(n)
        return self.total

w = Worker.remote("w1")
print("total", ray.get([w.work.remote(n) for n in (2, 3, 200)])[-1])
deadline = time.time() + 60
while True:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    wanted = ['ray_prog_requests_total{actor_name="w1"} 3.0', 'ray_prog_total{actor_name="w1"} 205.0',
              'ray_prog_sizes_count{actor_name="w1"} 3.0']
    if all(line in text for line in wanted) or time.time() > deadline:
        break
    time.sleep(0.1)
for line in wanted:
    print("seen" if line in text else "missing", line)
"""


def test_ray_metrics_program_runs_under_ember_run(tmp_path):
    lines = output_lines(run_ray_program(tmp_path, PROGRAM, str(free_port())))
    assert "total 205" in lines
    missing = [line for line in lines if line.startswith("missing")]
    assert not missing and sum(line.startswith("seen") for line in lines) == 3, lines
