"""Check this runner against the helm-unittest plugin's own example charts.

The plugin's repository holds example charts under ``test/data/v3/``: suites
under ``tests/`` that the plugin passes (or skips) and suites under
``tests_failed/`` that it fails on purpose; its recorded runs
(``pkg/unittest/.snapshots/``) list which tests of those fail. This module
extracts both from a clone (a bare git directory works: ``git archive``) into
a temporary directory -- nothing of the plugin is kept in this project -- runs
every example test and counts how many get the plugin's verdict.

``python -m helm_unittest.examples GIT_DIR [--helm PATH]`` prints the count
and every disagreement.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .errors import UnsupportedError
from .runner import run_test
from .snapshot import SnapshotStore
from .suite import load_suites, subchart_suite_files

# Charts whose suites the plugin's own tests parse to see them refused (strict parsing,
# "no tests found"), not run: here they must be refused too.
REFUSED_CHARTS = {"invalidbasic"}
_SUITE_LINE = re.compile(r"^ (PASS|FAIL|SKIP) .*\t(?P<path>\S+)$")
_TEST_LINE = re.compile(r"^\t- (?P<name>.+)$")


@dataclasses.dataclass
class Outcome:
    """One example test: what the plugin does and what this runner did."""

    chart: str
    suite_file: str
    test: str
    expected: str  # "pass" or "fail" ("pass" includes skipped), or "unsupported" (refused)
    actual: str  # "pass", "fail" or "unsupported"
    detail: str = ""

    @property
    def agrees(self) -> bool:
        return self.expected == self.actual


def extract(git_dir: Path, into: Path) -> Path:
    """``test/data/v3`` and the recorded runs of the plugin's repository, unpacked under ``into``."""
    archive = subprocess.run(
        [
            "git",
            f"--git-dir={git_dir}",
            "archive",
            "--format=tar",
            "HEAD",
            "test/data/v3",
            "pkg/unittest/.snapshots",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def recorded_failures(snapshots: Path) -> dict[str, set[str]]:
    """Suite path (from ``test/data/v3/``) -> names of the tests the plugin's recorded runs show failing."""
    failing: dict[str, set[str]] = {}
    for snap in sorted(snapshots.iterdir()):
        current = None
        for line in snap.read_text(errors="replace").splitlines():
            suite = _SUITE_LINE.match(line)
            if suite:
                path = suite.group("path")
                current = (
                    path.split("test/data/v3/", 1)[1]
                    if "test/data/v3/" in path and suite.group(1) == "FAIL"
                    else None
                )
                if current:
                    failing.setdefault(current, set())
                continue
            test = _TEST_LINE.match(line)
            if test and current:
                failing[current].add(test.group("name").strip())
    return failing


def run_examples(helm: str, root: Path) -> list[Outcome]:
    """Every example test under ``root`` (an extraction) with its verdicts."""
    v3 = root / "test" / "data" / "v3"
    failing = recorded_failures(root / "pkg" / "unittest" / ".snapshots")
    outcomes = []
    for chart in sorted(p for p in v3.iterdir() if p.is_dir() and (p / "Chart.yaml").exists()):
        suites = [("tests", chart, p) for p in sorted((chart / "tests").glob("*_test.yaml"))]
        suites += [("tests", sub, path) for sub, path in subchart_suite_files(chart)]
        suites += [
            ("tests_failed", chart, p) for p in sorted((chart / "tests_failed").glob("*_test.yaml"))
        ]
        for folder, owner, suite_file in suites:
            rel = suite_file.relative_to(v3).as_posix()
            refused = chart.name in REFUSED_CHARTS
            try:
                cases = load_suites(owner, suite_file)
            except (UnsupportedError, Exception) as error:  # noqa: BLE001 - any refusal counts as unsupported
                outcomes.append(
                    Outcome(
                        chart.name,
                        rel,
                        "*",
                        "unsupported" if refused else "pass" if folder == "tests" else "fail",
                        "unsupported",
                        str(error),
                    )
                )
                continue
            store = SnapshotStore.load(suite_file)
            for case in cases:
                name = str(case.test.get("it", ""))
                if refused:
                    expected = "unsupported"
                elif folder == "tests":
                    expected = "pass"
                else:
                    recorded = failing.get(rel)
                    expected = "fail" if recorded is None or name in recorded else "pass"
                try:
                    result = run_test(helm, case, store)
                    actual = "fail" if result.status == "failed" else "pass"
                    detail = "\n".join(result.failures)
                except UnsupportedError as error:
                    actual, detail = "unsupported", str(error)
                outcomes.append(Outcome(chart.name, rel, name, expected, actual, detail))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="agreement with the helm-unittest plugin's examples"
    )
    parser.add_argument("git_dir", type=Path)
    parser.add_argument("--helm", default=".tools/bin/helm")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ember-unittest-examples-") as tmp:
        outcomes = run_examples(args.helm, extract(args.git_dir, Path(tmp)))
    for outcome in outcomes:
        if not outcome.agrees:
            print(
                f"DISAGREE {outcome.suite_file}::{outcome.test}: plugin {outcome.expected}, here {outcome.actual}"
            )
            if args.verbose:
                print("    " + outcome.detail.replace("\n", "\n    ")[:1500])
    agreed = sum(o.agrees for o in outcomes)
    print(f"agreement: {agreed} of {len(outcomes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
