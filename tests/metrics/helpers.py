"""Scraping helpers for the metrics tests: every scrape is parsed (so it must be valid)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import psutil
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


class Scrape:
    """One parsed scrape of /metrics."""

    def __init__(self, port: int) -> None:
        status, _, text = get(port, "/metrics")
        assert status == 200, text
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def value(self, metric: str, /, **labels: str) -> float:
        """Sum of the samples called ``metric`` whose labels include ``labels`` (0 when none)."""
        return sum(s.value for s in self.samples
                   if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}

    def name_label(self, fragment: str) -> str:
        """The one function-name label value containing ``fragment``."""
        found = {v for v in self.label_values("ember_tasks_submitted_total", "name") if fragment in v}
        assert len(found) == 1, (fragment, found)
        return found.pop()


def wait_for(port: int, predicate: Callable[[Scrape], bool], timeout: float = 60.0) -> Scrape:
    """Scrape until ``predicate`` holds; the last scrape is returned (or the assertion fails)."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = Scrape(port)
        if predicate(scrape):
            return scrape
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last scrape:\n"
                                 + "\n".join(line for line in scrape.text.splitlines()
                                             if line.startswith("ember_")))
        time.sleep(0.1)


def ember_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run the `ember` command (`ember start`, `ember stop`, ...) with ``env``."""
    return subprocess.run([sys.executable, "-m", "ember_node.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def kill_started_under(tmp_path) -> None:
    """Belt and braces: no detached agent whose session lives under tmp_path survives."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if "ember_node" in cmd and str(tmp_path) in cmd:
            try:
                proc.kill()
            except psutil.Error:
                pass
