"""The JUnit XML report (``-t JUnit -o FILE``): one testsuite per suite, one testcase per test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from .runner import TestResult


def report(results: Iterable[TestResult]) -> ET.Element:
    """The ``<testsuites>`` element of a run."""
    root = ET.Element("testsuites")
    by_suite: dict[tuple[str, int], list[TestResult]] = {}
    for result in results:
        key = (str(result.case.suite_file), result.case.suite_index)
        by_suite.setdefault(key, []).append(result)
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for (file, _), suite_results in by_suite.items():
        first = suite_results[0].case
        suite = ET.SubElement(
            root,
            "testsuite",
            name=str(first.suite.get("suite") or Path(file).name),
            tests=str(len(suite_results)),
            failures=str(sum(r.status == "failed" for r in suite_results)),
            errors="0",
            skipped=str(sum(r.status == "skipped" for r in suite_results)),
        )
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="file", value=file)
        for result in suite_results:
            case = ET.SubElement(
                suite,
                "testcase",
                name=str(result.case.test.get("it", "")),
                classname=f"{first.chart.name}.{Path(file).stem}",
            )
            if result.status == "failed":
                failure = ET.SubElement(case, "failure", message="assertion failed", type="")
                failure.text = "\n".join(result.failures)
            elif result.status == "skipped":
                ET.SubElement(case, "skipped", message=result.skip_reason)
        for key in totals:
            totals[key] += int(suite.get(key if key != "failures" else "failures") or 0)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    return root


def write(results: Iterable[TestResult], path: Path) -> None:
    """Write the report to ``path``."""
    tree = ET.ElementTree(report(results))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
