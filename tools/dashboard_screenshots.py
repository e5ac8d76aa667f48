"""Save a PNG of each dashboard page under docs/images/dashboard-<page>.png (1280x800).

    python tools/dashboard_screenshots.py [--out docs/images]

Starts a head agent (loopback, a private temp dir) with the dashboard, a driver with a
small workload (tasks running and finished, one failed, an actor printing, a stored
object) and one submitted job; opens each page in headless chromium (tools/browser.py),
waits for its content, saves the screenshot, then stops everything it started by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser  # noqa: E402 - tools/ is not a package

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = """
import os, sys, time, ember
ember.init(sys.argv[1], token=os.environ["EMBER_TOKEN"])

@ember.remote
def train_step(i):
    time.sleep(600)

@ember.remote
def preprocess(i):
    time.sleep(0.05)
    return i

@ember.remote
def load_shard(i):
    raise FileNotFoundError(f"shard-{i}.parquet is missing")

@ember.remote
class ParameterServer:
    def __init__(self):
        self.version = 0
    def push(self):
        self.version += 1
        print(f"parameter server: version {self.version}", flush=True)

ps = ParameterServer.options(name="ps").remote()
weights = ember.put(b"w" * (24 << 20))
for _ in range(3):
    ember.get([preprocess.remote(i) for i in range(40)])
try:
    ember.get(load_shard.remote(7))
except Exception:
    pass
running = [train_step.remote(i) for i in range(2)]
open(sys.argv[2], "w").write("ready")
while True:
    ember.get(ps.push.remote())
    ember.get([preprocess.remote(i) for i in range(10)])
    time.sleep(0.5)
"""
PAGES = (("overview", "", "chart-throughput"), ("tasks", "tasks", "tasks"), ("actors", "actors", "actors"),
         ("objects", "objects", "objects"), ("jobs", "jobs", "jobs"), ("logs", "logs?actor_id=", "log-view"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "images"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ember-shots-"))
    token = secrets.token_urlsafe(24)
    (root / "token").write_text(token)
    env = {**os.environ, "TMPDIR": str(root), "EMBER_TOKEN": token}
    procs: list[subprocess.Popen] = []
    try:
        rfd, wfd = os.pipe()
        port = _free_port()
        cmd = [sys.executable, "-m", "ember_node", "--session-dir", str(root / "session"), "--num-cpus", "4",
               "--port", str(_free_port()), "--token-file", str(root / "token"),
               "--dashboard-port", str(port), "--object-store-memory", str(256 << 20), "--ready-fd", str(wfd)]
        with open(root / "head.log", "ab") as log:
            procs.append(subprocess.Popen(cmd, pass_fds=(wfd,), env=env, stdout=log, stderr=log,
                                          start_new_session=True))
        os.close(wfd)
        data = b""
        while not data.endswith(b"\n"):
            if not select.select([rfd], [], [], 30)[0]:
                raise TimeoutError("the head did not start")
            chunk = os.read(rfd, 65536)
            if not chunk:
                raise RuntimeError((root / "head.log").read_text()[-2000:])
            data += chunk
        os.close(rfd)
        info = json.loads(data)
        script = root / "workload.py"
        script.write_text(textwrap.dedent(WORKLOAD))
        ready = root / "ready"
        with open(root / "driver.log", "ab") as log:
            procs.append(subprocess.Popen([sys.executable, str(script), info["address"], str(ready)], env=env,
                                          stdout=log, stderr=log, start_new_session=True))
        _wait(ready.exists, 60, "the workload")
        from ember.job_submission import JobSubmissionClient

        client = JobSubmissionClient(info["address"], token=token)
        job = client.submit_job(entrypoint=f"{sys.executable} -c \"print('nightly report: 42 rows')\"")
        _wait(lambda: str(client.get_job_status(job)).endswith("SUCCEEDED"), 60, "the job")
        url = info["dashboard_url"]
        b = browser.open_browser(1280, 800)
        try:
            from selenium.webdriver.common.by import By

            d = b.driver
            d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                              {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
            d.get(url + "?token=" + token)
            actor = json.loads(d.execute_script(
                "return fetch('/api/actors').then(r => r.text())"))["rows"][0]["actor_id"]
            for name, path, element in PAGES:
                d.get(url + path + (actor if path.endswith("=") else ""))
                _wait(lambda el=element: d.find_elements(By.ID, el), 30, f"the {name} page")
                time.sleep(20 if name == "overview" else 4 if name == "logs" else 0.5)  # let the charts and the log fill
                target = out / f"dashboard-{name}.png"
                d.save_screenshot(str(target))
                print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
        finally:
            b.close()
    finally:
        for p in reversed(procs):
            _stop(p)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
