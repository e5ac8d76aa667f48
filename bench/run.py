"""Compare ember with Ray on this machine, in one run: ``make bench``.

    python bench/run.py [--only NAME[,NAME]] [--systems ember,ray] [--quick] [--json OUT]

Each system runs in its own child processes (bench/child.py), one after the
other, never sharing a process: ember with the interpreter running this script
(the project's .venv), Ray with .venv-ray/bin/python when it exists (Ray and
ember's pinned grpcio/protobuf live in separate venvs).  Workloads are in
bench/workloads.py; the targets come from the issues.  The exit status is 0
whether or not targets are met: benchmarks report, they don't gate.  It is
non-zero only for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from report import Cell, build_rows, render_table, summary
from workloads import METRIC_BY_KEY, WORKLOAD_BY_NAME, WORKLOADS, Workload

try:
    import psutil
except ImportError:  # the harness still runs; leftover-process checks are skipped
    psutil = None

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = ROOT / ".bench-results"
CHILD = BENCH / "child.py"
STARTUP_TIMEOUT_S = 90.0  # import + init of a shared cluster
QUIET_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class Outcome:
    """What one workload gave on one system."""

    status: str  # ok | n/a | error | timeout | crashed | missing
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    message: str = ""
    detail: str = ""  # traceback or log tail


# --------------------------------------------------------------------------
# Process handling
# --------------------------------------------------------------------------


def become_subreaper() -> None:
    """Orphans of the cluster processes we start get reparented to us, so we can
    find and stop whatever a system leaves behind after its shutdown."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def descendants() -> list:
    if psutil is None:
        return []
    procs = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                procs.append(p)
        except psutil.Error:
            pass
    return procs


def reap_zombies() -> None:
    """Reap adopted orphans that exited (only pids that are zombies now)."""
    if psutil is None:
        return
    for p in psutil.Process().children():
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(p.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            pass


def stop_leftovers(grace_s: float) -> list[str]:
    """Wait for what our children started to exit; kill what remains. Everything
    here descends from this process (we are a subreaper), so nothing else is
    touched. Returns descriptions of the processes that had to be killed."""
    if psutil is None:
        return []
    deadline = time.monotonic() + grace_s
    procs = descendants()
    while procs and time.monotonic() < deadline:
        time.sleep(0.2)
        reap_zombies()
        procs = descendants()
    killed = []
    for p in procs:
        try:
            killed.append(f"{p.pid} {p.name()} {' '.join(p.cmdline()).strip()[:80]}")
            p.kill()
        except psutil.Error:
            pass
    if procs:
        psutil.wait_procs(procs, timeout=5)
    reap_zombies()
    return killed


def kill_child_tree(proc: subprocess.Popen) -> None:
    tree = []
    if psutil is not None:
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in tree:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait()


def tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# Running one child
# --------------------------------------------------------------------------


@dataclass
class SystemRun:
    system: str
    python: str
    quick: bool
    num_cpus: int
    log_dir: Path
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    children: int = 0
    selected: list[Workload] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.system == "ray":
            env.update(QUIET_RAY_ENV)
        return env

    def run(self, workloads: list[Workload]) -> None:
        if not os.access(self.python, os.X_OK):
            self._fail_rest("missing", f"no interpreter at {self.python}", only=workloads)
            return
        self.selected = workloads
        fresh = [w for w in workloads if w.mode == "fresh"]
        shared = [w for w in workloads if w.mode == "cluster"]
        for w in fresh:
            if not self._run_child([w]):
                return
        while shared:
            if not self._run_child(shared):
                return
            left = [w for w in shared if w.name not in self.outcomes]
            if len(left) == len(shared):  # no progress: do not loop forever
                self._fail_rest("error", "child finished without reporting", only=left)
                return
            shared = left

    def _timeout(self, w: Workload) -> float:
        return max(30.0, w.timeout_s / 2) if self.quick else w.timeout_s

    def _run_child(self, workloads: list[Workload]) -> bool:
        """Run workloads in one child until done, fatal, crash or timeout.
        False: stop running this system (it cannot run here)."""
        self.children += 1
        log = self.log_dir / f"{self.system}-{self.children}.log"
        rfd, wfd = os.pipe()
        cmd = [self.python, str(CHILD), "--system", self.system,
               "--workloads", ",".join(w.name for w in workloads),
               "--result-fd", str(wfd), "--num-cpus", str(self.num_cpus)]
        if self.quick:
            cmd.append("--quick")
        env = self.env()
        tmp_dir = None
        if self.system == "ray":
            # Ray's session files go to a directory of this child's own (short: Ray puts Unix
            # sockets under it), removed afterwards; one per child, since a head that `ray
            # start` left there would make the next child's ray.init() try to join it
            tmp_dir = tempfile.mkdtemp(prefix="rb-", dir="/tmp")
            env["RAY_TMPDIR"] = tmp_dir
        if self.system == "ray" and len(workloads) == 1 and workloads[0].ray_env:
            env.update(workloads[0].ray_env)
            if env.get("RAY_AUTH_MODE") == "token":
                env.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
        with open(log, "w") as logf:
            proc = subprocess.Popen(cmd, cwd=str(BENCH), env=env, stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=subprocess.STDOUT, pass_fds=(wfd,),
                                    start_new_session=True)
        os.close(wfd)
        reader = EventReader(rfd)
        current, deadline = "<startup>", time.monotonic() + STARTUP_TIMEOUT_S
        keep_going, finished = True, False
        try:
            while not finished:
                exited = proc.poll() is not None
                for ev in reader.read(0 if exited else 0.2):
                    current, deadline, keep_going = self._on_event(ev, current, deadline)
                    finished = finished or ev["event"] in ("done", "fatal")
                if finished:
                    break
                if exited or reader.eof:
                    proc.wait()
                    self._crashed(workloads, current, proc.returncode, log)
                    break
                if time.monotonic() > deadline:
                    self._timed_out(workloads, current, log)
                    kill_child_tree(proc)
                    break
        finally:
            os.close(rfd)
            if proc.poll() is None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.problems.append(f"{self.system}: child did not exit 30 s after its "
                                         f"last report; killed (log {log})")
                    kill_child_tree(proc)
            reap_zombies()
            left = stop_leftovers(grace_s=5.0)
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            if left:
                self.problems.append(f"{self.system}: {len(left)} process(es) still running "
                                     "after the child exited were killed: " + "; ".join(left))
        return keep_going

    def _on_event(self, ev: dict, current: str, deadline: float):
        kind = ev["event"]
        if kind == "start":
            name = ev["workload"]
            w = WORKLOAD_BY_NAME.get(name)
            limit = self._timeout(w) if w else STARTUP_TIMEOUT_S
            return name, time.monotonic() + limit, True
        if kind == "result":
            self.outcomes[ev["workload"]] = Outcome(
                status=ev["status"], metrics=ev.get("metrics", {}), notes=ev.get("notes", []),
                message=ev.get("message", ""), detail=ev.get("traceback", ""))
            return f"<after {ev['workload']}>", deadline, True
        if kind == "shutdown_error":
            self.problems.append(f"{self.system}: shutdown() raised {ev['message']}")
            return current, deadline, True
        if kind == "fatal":
            status = "missing" if ev.get("kind") == "missing" else "error"
            self._fail_rest(status, ev["message"], ev.get("traceback", ""))
            return current, deadline, False
        return current, deadline, True

    def _fail_rest(self, status: str, message: str, detail: str = "",
                   only: list[Workload] | None = None) -> None:
        for w in only if only is not None else self.selected:
            if w.name not in self.outcomes:
                self.outcomes[w.name] = Outcome(status=status, message=message, detail=detail)

    def _crashed(self, workloads, current, rc, log) -> None:
        how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
        msg = f"child process died ({how}) during {current}"
        self._lost(workloads, current, "crashed", msg, log)

    def _timed_out(self, workloads, current, log) -> None:
        w = WORKLOAD_BY_NAME.get(current)
        limit = self._timeout(w) if w else STARTUP_TIMEOUT_S
        msg = f"no result after {limit:.0f} s during {current}; child killed"
        self._lost(workloads, current, "timeout", msg, log)

    def _lost(self, workloads, current, status, msg, log) -> None:
        if current in WORKLOAD_BY_NAME:
            self.outcomes[current] = Outcome(status, message=msg, detail=tail(log))
        elif current == "<shutdown>" or current.startswith("<after "):
            self.problems.append(f"{self.system}: {msg} (log {log})")
        else:
            self._fail_rest(status, msg, tail(log), only=workloads)


class EventReader:
    """JSON-line events from the child's result pipe."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.eof = fd, b"", False

    def read(self, timeout: float) -> list[dict]:
        events = []
        while not self.eof and select.select([self.fd], [], [], timeout)[0]:
            chunk = os.read(self.fd, 65536)
            self.eof = not chunk
            self.buf += chunk
            timeout = 0
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            events.append(json.loads(line))
        return events


# --------------------------------------------------------------------------
# Interpreters
# --------------------------------------------------------------------------


def default_python(system: str) -> str:
    venv = ROOT / (".venv" if system == "ember" else ".venv-ray") / "bin" / "python"
    if venv.exists():
        return str(venv)
    return sys.executable


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def version_of(python: str, module: str) -> str:
    code = (f"import importlib.metadata as m\ntry: print(m.version({module!r}))\n"
            "except Exception: print('')")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

MISSING_TEXT = {"ember": "n/a (no runtime)", "ray": "Ray not installed"}


def cells_for(system: str, outcomes: dict[str, Outcome]) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for w in WORKLOADS:
        o = outcomes.get(w.name)
        for key in w.metrics:
            if o is None:
                cells[key] = Cell(text="-")
            elif o.status == "ok" and key in o.metrics:
                cells[key] = Cell(value=o.metrics[key])
            elif o.status == "n/a":
                cells[key] = Cell(text="n/a (not implemented)")
            elif o.status == "missing":
                cells[key] = Cell(text=MISSING_TEXT[system])
            else:
                cells[key] = Cell(text=o.status if o.status != "ok" else "-")
    return cells


def print_report(runs: dict[str, SystemRun], selected: list[Workload], meta: dict) -> list:
    cells = {s: cells_for(s, sr.outcomes) for s, sr in runs.items()}
    groups, all_rows = [], []
    for group in dict.fromkeys(w.group for w in selected):
        keys = [k for w in selected if w.group == group for k in w.metrics]
        rows = build_rows(keys, cells)
        groups.append((group, rows))
        all_rows += rows
    print()
    print(f"ember vs Ray on {meta['machine']}"
          + (" (quick run: fewer repetitions)" if meta["quick"] else ""))
    busy = meta["loadavg_start"]
    if busy > (os.cpu_count() or 1) * 0.5:
        print(f"WARNING: the machine was busy before the run (1-min load average {busy:.1f} "
              f"on {os.cpu_count()} cores): figures are noisy")
    print(render_table(groups))
    print()
    print(summary(all_rows))
    notes = []
    for s, sr in runs.items():
        for w in selected:
            o = sr.outcomes.get(w.name)
            if o is None:
                continue
            notes += [f"  {s} {w.name}: {n}" for n in o.notes]
    if notes:
        print("\nnotes:")
        print("\n".join(notes))
    problems = []
    for s, sr in runs.items():
        seen_missing = False
        for w in selected:
            o = sr.outcomes.get(w.name)
            if o is None or o.status == "ok":
                continue
            if o.status == "missing":
                if not seen_missing:
                    problems.append(f"  {s}: {o.message}")
                    seen_missing = True
                continue
            problems.append(f"  {s} {w.name}: {o.status}: {o.message}")
            if o.detail and o.status != "n/a":
                problems += ["      " + ln for ln in o.detail.strip().splitlines()[-12:]]
        problems += [f"  {p}" for p in sr.problems]
    if problems:
        print("\nproblems:")
        print("\n".join(problems))
    return all_rows


def to_json(runs: dict[str, SystemRun], rows, meta: dict) -> dict:
    return {
        "meta": meta,
        "systems": {s: {name: vars(o) for name, o in sr.outcomes.items()}
                    for s, sr in runs.items()},
        "problems": {s: sr.problems for s, sr in runs.items()},
        "rows": [{"metric": r.metric.key, "label": r.metric.label, "unit": r.metric.unit,
                  "ember": r.ember.value, "ember_text": r.ember.text,
                  "ray": r.ray.value, "ray_text": r.ray.text, "ratio": r.ratio,
                  "target": r.target, "status": r.status, "ray_ref": r.metric.ray_ref}
                 for r in rows],
    }


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="",
                    help="comma-separated workloads: " + ", ".join(WORKLOAD_BY_NAME))
    ap.add_argument("--systems", default="ember,ray")
    ap.add_argument("--json", dest="json_out", help="write all figures to this file")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (about 1/5)")
    ap.add_argument("--num-cpus", type=int, default=2, help="num_cpus given to both inits")
    ap.add_argument("--ember-python", default=None, help="interpreter for ember's children")
    ap.add_argument("--ray-python", default=None,
                    help="interpreter for Ray's children (default .venv-ray/bin/python)")
    ap.add_argument("--list", action="store_true", help="list workloads and metrics")
    return ap.parse_args(argv)


def select_workloads(only: str) -> list[Workload]:
    if not only:
        return list(WORKLOADS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOAD_BY_NAME and n not in METRIC_BY_KEY]
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)}; "
                         f"known: {', '.join(WORKLOAD_BY_NAME)}")
    return [w for w in WORKLOADS if w.name in names or set(w.metrics) & set(names)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:14} {w.mode:8} {', '.join(w.metrics)}")
        return 0
    selected = select_workloads(args.only)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in systems if s not in ("ember", "ray")]
    if bad:
        raise SystemExit(f"unknown system(s): {', '.join(bad)}")
    become_subreaper()
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # abspath, not resolve(): a venv's python is a symlink that must stay one
    pythons = {"ember": os.path.abspath(args.ember_python or sys.executable),
               "ray": os.path.abspath(args.ray_python or default_python("ray"))}
    meta = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
                   f"{platform.python_version()}",
        "quick": args.quick, "num_cpus": args.num_cpus,
        "loadavg_start": round(os.getloadavg()[0], 2),
        "revision": git_revision(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pythons": {s: pythons[s] for s in systems},
        "versions": {s: version_of(pythons[s], s) for s in systems},
    }
    runs: dict[str, SystemRun] = {}
    t_all = time.monotonic()
    for s in systems:
        t0 = time.monotonic()
        v = meta["versions"].get(s) or "?"
        print(f"== {s} {v} ({pythons[s]}): {', '.join(w.name for w in selected)}", flush=True)
        sr = SystemRun(s, pythons[s], args.quick, args.num_cpus, log_dir)
        runs[s] = sr
        sr.run([w for w in selected if s in w.systems])
        for w in selected:
            o = sr.outcomes.get(w.name)
            if o is not None and o.status not in ("ok", "missing"):
                print(f"   {w.name}: {o.status}: {o.message}", flush=True)
        print(f"   {s} took {time.monotonic() - t0:.0f} s", flush=True)
    meta["elapsed_s"] = round(time.monotonic() - t_all, 1)
    rows = print_report(runs, selected, meta)
    print(f"\n(total {meta['elapsed_s']:.0f} s; child logs in {log_dir.relative_to(ROOT)}/)")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(to_json(runs, rows, meta), indent=2) + "\n")
        print(f"figures written to {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
