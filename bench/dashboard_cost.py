"""The dashboard's cost on the head: CPU and memory of the head's agent while 10,000 tasks
run, with no dashboard, with the dashboard served but no page open, and with a page open
in headless chromium (polling as a user's browser would: the overview's charts every
second and its content every two, or the tasks table every two).

    .venv/bin/python bench/dashboard_cost.py [--tasks 10000] [--json out.json]

Each mode runs in a fresh embedded cluster (``ember.init(num_cpus=2)``); the figures are
the agent process's CPU seconds (user + system) over the workload, its RSS and PSS at the
end (PSS counts shared pages by share, so the object store's mapping weighs little), and
the workload's wall time. Needs chromium and chromedriver for the page-open modes
(tools/browser.py installs them; without them those modes are skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import browser  # noqa: E402 - tools/ is not a package

MODES = ("off", "served", "overview open", "tasks open")


def _agent_pid(session_dir: str) -> int:
    with open(os.path.join(session_dir, "agent.pid")) as f:
        return int(f.read())


def run_mode(mode: str, tasks: int, batch: int = 1000) -> dict:
    """One fresh cluster, the workload, the agent's figures."""
    import ember

    info = ember.init(num_cpus=2, include_dashboard=mode != "off", dashboard_port=0 if mode != "off" else None,
                      log_to_driver=False)
    web = None
    try:
        raw = info.address_info
        agent = psutil.Process(_agent_pid(raw["session_dir"]))

        @ember.remote
        def tiny(i: int) -> int:
            return i

        ember.get([tiny.remote(i) for i in range(200)])  # workers warm
        if mode.endswith("open"):
            from ember._context import current_runtime

            login = current_runtime().session.raw["dashboard_login_url"]
            web = browser.open_browser()
            web.driver.get(login)
            if mode == "tasks open":
                web.driver.get(login.split("?")[0] + "tasks")
        cpu0 = sum(agent.cpu_times()[:2])
        t0 = time.perf_counter()
        for start in range(0, tasks, batch):
            ember.get([tiny.remote(i) for i in range(start, min(start + batch, tasks))])
        wall = time.perf_counter() - t0
        cpu = sum(agent.cpu_times()[:2]) - cpu0
        mem = agent.memory_full_info()
        return {"mode": mode, "tasks": tasks, "wall_s": round(wall, 3), "agent_cpu_s": round(cpu, 3),
                "agent_rss_mib": round(mem.rss / 2**20, 1), "agent_pss_mib": round(mem.pss / 2**20, 1)}
    finally:
        if web is not None:
            web.close()
        ember.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    try:
        browser.ensure()
        modes = MODES
    except browser.Unavailable as exc:
        print(f"no browser ({exc}): measuring without a page open", file=sys.stderr)
        modes = MODES[:2]
    rows = [run_mode(m, args.tasks) for m in modes]
    print(f"{'mode':15} {'wall s':>8} {'agent CPU s':>12} {'RSS MiB':>8} {'PSS MiB':>8}")
    for r in rows:
        print(f"{r['mode']:15} {r['wall_s']:8.2f} {r['agent_cpu_s']:12.2f} {r['agent_rss_mib']:8.1f} "
              f"{r['agent_pss_mib']:8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
