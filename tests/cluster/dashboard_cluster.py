"""A real head serving the dashboard, under a real workload, for the dashboard tests.

``dash`` (module-scoped): a head started directly (``python -m ember_node --dashboard-port``)
and a driver process connected to it over gRPC that keeps running: two ``slow_task``
tasks sleeping (RUNNING), finished ``quick`` tasks, a failed ``broken`` task, a named actor
``Ticker`` whose worker prints ``tick N`` lines, and a 3 MiB ``put`` object; plus a job
submitted through the head's job runner, finished. Everything is stopped by pid afterwards.
"""

from __future__ import annotations

import http.cookiejar
import shutil
import sys
import textwrap
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from .helpers import Head, free_port, short_tmpdir, start_head, wait_until

OBJECT_BYTES = 3 * (1 << 20)
ACTOR_NAME = "<b>ticker</b>"  # a name that must come out escaped

DRIVER = """
import os, sys, time, ember
ember.init(sys.argv[1], token=os.environ["DASH_TOKEN"])

@ember.remote
def slow_task():
    time.sleep(600)

@ember.remote
def quick(i):
    return i

@ember.remote
def broken():
    raise ValueError("broken on purpose")

@ember.remote
class Ticker:
    def __init__(self):
        self.n = 0
    def tick(self):
        self.n += 1
        print("tick", self.n, flush=True)
        return self.n

ticker = Ticker.options(name=ACTOR_NAME).remote()
ember.get(ticker.tick.remote())
big = ember.put(b"x" * OBJECT_BYTES)
ember.get([quick.remote(i) for i in range(20)])
try:
    ember.get(broken.remote())
except Exception:
    pass
slow = [slow_task.remote() for _ in range(2)]
open(sys.argv[2], "w").write(str(os.getpid()))
while True:
    ember.get(ticker.tick.remote())
    time.sleep(0.3)
""".replace("ACTOR_NAME", repr(ACTOR_NAME)).replace("OBJECT_BYTES", str(OBJECT_BYTES))


@dataclass
class Dash:
    head: Head
    url: str  # http://127.0.0.1:PORT/
    job_id: str
    actor_pid: int

    def opener(self, login: bool = True) -> urllib.request.OpenerDirector:
        """A urllib opener with a cookie jar (logged in with ``?token=`` when ``login``)."""
        op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        if login:
            op.open(self.url + "?token=" + self.head.token, timeout=30).read()
        return op


def status(op: urllib.request.OpenerDirector, url: str) -> int:
    try:
        return op.open(url, timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def dash(module_procs):
    from ember.job_submission import JobSubmissionClient

    root = short_tmpdir("embd-")
    port = free_port()
    head = start_head(module_procs, root, num_cpus=4, extra_args=["--dashboard-port", str(port)])
    assert head.info["dashboard_url"] == f"http://127.0.0.1:{port}/"
    script = root / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    ready = root / "driver.ready"
    with open(root / "driver.log", "ab") as log:
        module_procs.spawn([sys.executable, str(script), head.address, str(ready)],
                           env=module_procs.env({"DASH_TOKEN": head.token}), stdout=log, stderr=log,
                           start_new_session=True)
    wait_until(lambda: ready.exists() and ready.read_text(), 60, 0.1)
    client = JobSubmissionClient(head.address, token=head.token)
    job_id = client.submit_job(entrypoint=f"{sys.executable} -c \"print('dashboard job ran')\"")
    wait_until(lambda: str(client.get_job_status(job_id)).endswith("SUCCEEDED"), 60, 0.1)
    d = Dash(head, head.info["dashboard_url"], job_id, 0)
    op = d.opener()

    def actor_pid() -> int:
        import json

        rows = json.loads(op.open(d.url + "api/actors", timeout=30).read())["rows"]
        return next((r["pid"] for r in rows if r["name"] == ACTOR_NAME and r.get("pid")), 0)

    d.actor_pid = wait_until(actor_pid, 30, 0.1)
    yield d
    module_procs.cleanup()
    shutil.rmtree(root, ignore_errors=True)


