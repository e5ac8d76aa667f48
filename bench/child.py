"""One benchmark child process: imports one system (``ray`` or ``ember``), runs the
named workloads and reports each as a JSON line on the pipe given by --result-fd.

Run by bench/run.py, never by hand (but ``python bench/child.py --system ray
--workloads task_rtt --result-fd 1`` works for poking at one workload).

Events: ``start`` (a workload or ``<init>`` begins), ``result`` (status ok, n/a or
error, with metrics or a message), ``fatal`` (the system cannot run here at all),
``done``.  A child that stops reporting is killed by the parent after the
workload's timeout, and the parent carries on with the remaining workloads in a
new child.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import sys
import time
import traceback

from workloads import WORKLOAD_BY_NAME, Ctx, NotImplementedYet

PR_SET_CHILD_SUBREAPER = 36
SETTLE_S = 0.5


def become_subreaper() -> None:
    """Adopt orphaned descendants (daemonized agents, workers whose parent died),
    so that the cluster's processes stay visible as our descendants."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Reporter:
    def __init__(self, fd: int):
        self._out = os.fdopen(fd, "w", buffering=1, closefd=False)

    def emit(self, event: str, **fields) -> None:
        self._out.write(json.dumps({"event": event, **fields}) + "\n")
        self._out.flush()


def _tb() -> str:
    return "".join(traceback.format_exc(limit=12))[-4000:]


def _import(system: str):
    t0 = time.perf_counter()
    rt = importlib.import_module(system)
    return rt, time.perf_counter() - t0


def run_workload(rt, ctx: Ctx, name: str, rep: Reporter) -> None:
    w = WORKLOAD_BY_NAME[name]
    rep.emit("start", workload=name)
    try:
        figure = w.fn(rt, ctx)
    except (NotImplementedError, NotImplementedYet) as e:
        rep.emit("result", workload=name, status="n/a", message=f"{type(e).__name__}: {e}",
                 traceback=_tb())
    except Exception as e:  # noqa: BLE001 - report any failure of the runtime under test
        status = "n/a" if "actor" in w.tags and isinstance(e, AttributeError) else "error"
        rep.emit("result", workload=name, status=status, message=f"{type(e).__name__}: {e}",
                 traceback=_tb())
    else:
        notes = figure.pop("_notes", [])
        metrics = {k: float(v) for k, v in figure.items()}
        rep.emit("result", workload=name, status="ok", metrics=metrics, notes=notes)
    gc.collect()
    time.sleep(SETTLE_S)  # let asynchronous frees and worker churn finish before the next one


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", required=True, choices=["ember", "ray"])
    ap.add_argument("--workloads", required=True, help="comma-separated workload names")
    ap.add_argument("--result-fd", type=int, required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args(argv)
    become_subreaper()
    rep = Reporter(args.result_fd)
    names = [n for n in args.workloads.split(",") if n]

    try:
        rt, import_s = _import(args.system)
    except ImportError as e:
        rep.emit("fatal", kind="missing", message=f"import {args.system} failed: {e}")
        return 2
    if not callable(getattr(rt, "init", None)):
        rep.emit("fatal", kind="missing",
                 message=f"{args.system} has no init() (runtime not there yet): "
                 f"{getattr(rt, '__file__', None) or list(getattr(rt, '__path__', []))}")
        return 2

    ctx = Ctx(system=args.system, quick=args.quick, num_cpus=args.num_cpus, import_s=import_s)
    shared = any(WORKLOAD_BY_NAME[n].mode == "cluster" for n in names)
    if shared:
        rep.emit("start", workload="<init>")
        try:
            rt.init(**ctx.init_kwargs())
        except Exception as e:  # noqa: BLE001
            rep.emit("fatal", kind="error", message=f"init failed: {type(e).__name__}: {e}",
                     traceback=_tb())
            return 3
    try:
        for name in names:
            run_workload(rt, ctx, name, rep)
    finally:
        if shared:
            rep.emit("start", workload="<shutdown>")
            try:
                rt.shutdown()
            except Exception as e:  # noqa: BLE001
                rep.emit("shutdown_error", message=f"{type(e).__name__}: {e}", traceback=_tb())
    rep.emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
