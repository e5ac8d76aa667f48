"""The documentation site builds in strict mode (a warning fails), as `make docs` builds it, and
holds the pages and references it promises. One `mkdocs build` process, into tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: `make venv` installs it")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def text(site: Path, page: str) -> str:
    return (site / page).read_text()


def test_every_page_is_built(site):
    for page in ("index.html", "getting-started.html", "coming-from-ray.html",
                 "ray-compatibility.html", "api/core.html", "api/exceptions.html",
                 "api/runtime-context.html", "api/util.html", "cli.html", "kubernetes.html",
                 "monitoring.html", "troubleshooting.html", "design.html"):
        assert (site / page).is_file(), page


def test_api_reference_comes_from_the_docstrings(site):
    import ember
    import ember.exceptions

    core = text(site, "api/core.html")
    for name in ("init", "remote", "get", "put", "wait", "cancel", "kill", "get_actor"):
        assert f'id="ember.{name}"' in core, name
    assert ember.kill.__doc__.splitlines()[0] in core  # "End an actor now; ..." (no markup)
    exceptions = text(site, "api/exceptions.html")
    for name in ("RayTaskError", "ObjectStoreFullError", "OutOfMemoryError", "TaskCancelledError"):
        assert f'id="ember.exceptions.{name}"' in exceptions, name
        assert issubclass(getattr(ember.exceptions, name), ember.exceptions.RayError)
    assert 'id="ember.runtime_context.RuntimeContext.get_node_id"' in text(
        site, "api/runtime-context.html")
    util = text(site, "api/util.html")
    for ident in ("ember.util.ActorPool", "ember.util.queue.Queue",
                  "ember.util.multiprocessing.Pool", "ember.util.state.list_tasks"):
        assert f'id="{ident}"' in util, ident


def test_cli_reference_is_the_real_help(site):
    page = text(site, "cli.html")
    for command in ("start", "stop", "status", "list", "summary", "timeline", "run"):
        assert f"usage: ember {command}" in page, command
    assert "<!-- ember-cli-reference -->" not in page
