"""Command line, like the plugin's: ``python -m helm_unittest [-f GLOB]... [-u] [--strict] [-t JUnit -o FILE] CHART...``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import junit
from .errors import UnsupportedError
from .runner import TestResult, run_test
from .snapshot import SnapshotStore
from .suite import DEFAULT_GLOB, load_suites, subchart_suite_files, suite_files


def run_chart(
    helm: str, chart: Path, patterns: list[str], update: bool, with_subchart: bool = True
) -> list[TestResult]:
    """Every test of a chart's suites; a suite this runner cannot run fails as a whole."""
    results = []
    suites = [(chart, path) for path in suite_files(chart, patterns)]
    if with_subchart:
        suites += subchart_suite_files(chart, patterns)
    for owner, suite_file in suites:
        try:
            cases = load_suites(owner, suite_file)
        except UnsupportedError as error:
            print(f"FAIL {chart.name}/{suite_file.name}: {error}")
            raise
        store = SnapshotStore.load(suite_file, update=update)
        for case in cases:
            results.append(run_test(helm, case, store))
        store.save()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="helm_unittest", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("charts", nargs="+", type=Path, help="chart directories")
    parser.add_argument(
        "-f",
        "--file",
        action="append",
        dest="files",
        help=f"suite file glob relative to the chart (default {DEFAULT_GLOB}; repeatable)",
    )
    parser.add_argument(
        "-u", "--update-snapshot", action="store_true", help="rewrite snapshots that differ"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="strict suite parsing (always on here: unknown keys fail the run)",
    )
    parser.add_argument("-t", "--output-type", choices=["JUnit", "junit"], help="report format")
    parser.add_argument("-o", "--output-file", type=Path, help="report file (with -t)")
    parser.add_argument(
        "--helm", default=os.environ.get("HELM", ".tools/bin/helm"), help="helm binary"
    )
    parser.add_argument(
        "-s",
        "--with-subchart",
        choices=["true", "false"],
        default="true",
        help="also run the suites of unpacked subcharts (charts/*/tests), as the plugin does",
    )
    args = parser.parse_args(argv)
    if bool(args.output_type) != bool(args.output_file):
        parser.error("-t/--output-type and -o/--output-file go together")
    results: list[TestResult] = []
    try:
        for chart in args.charts:
            results += run_chart(
                args.helm,
                chart,
                args.files or [DEFAULT_GLOB],
                args.update_snapshot,
                with_subchart=args.with_subchart == "true",
            )
    except UnsupportedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for result in results:
        counts[result.status] += 1
        label = {"passed": "ok  ", "failed": "FAIL", "skipped": "SKIP"}[result.status]
        print(
            f"{label} {result.case.name}"
            + (f" ({result.skip_reason})" if result.skip_reason else "")
        )
        for failure in result.failures:
            print("     " + failure.replace("\n", "\n     "))
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    if args.output_file:
        junit.write(results, args.output_file)
    return 1 if counts["failed"] or not results else 0
