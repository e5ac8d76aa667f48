"""The CLI reference page is written at build time from the real ``--help`` (tools/docs_hooks.py).

The walk over subcommands is tested with a fake ``help_of``; the real CLI's help is taken
in-process, and once from a real ``ember`` process to show both say the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import docs_hooks  # noqa: E402

FAKE = {
    (): "usage: ember [-h] {go,list} ...\n\npositional arguments:\n  {go,list}\n    go  go\n",
    ("go",): "usage: ember go [-h] {fast,slow}\n\npositional arguments:\n  {fast,slow}\n",
    ("go", "fast"): "usage: ember go fast [-h]\n",
    ("go", "slow"): "usage: ember go slow [-h] [--really]\n",
    ("list",): "usage: ember list [-h]\n                  {a,b}\n\npositional arguments:\n  {a,b}\n",
    ("list", "a"): "usage: ember list [-h]\n                  {a,b}\n",  # a choice, not a command
    ("list", "b"): "usage: ember list [-h]\n                  {a,b}\n",
}


def fake_help(words):
    return FAKE[tuple(words)]


def test_walks_subcommands_but_not_positional_choices():
    assert [words for words, _ in docs_hooks.commands(fake_help)] == [
        (), ("go",), ("go", "fast"), ("go", "slow"), ("list",)]


def test_expand_replaces_the_marker_only():
    page = f"# CLI\n\nintro\n\n{docs_hooks.MARKER}\n"
    out = docs_hooks.expand(page, fake_help)
    assert out.startswith("# CLI\n\nintro\n\n## `ember`\n")
    assert "## `ember go slow`\n\n```text\nusage: ember go slow [-h] [--really]\n```" in out
    assert docs_hooks.MARKER not in out
    assert docs_hooks.expand("no marker", fake_help) == "no marker"


def test_reference_covers_every_real_subcommand():
    top = docs_hooks.ember_help([])
    names = docs_hooks.choices(top)
    assert {"start", "stop", "status", "list", "summary", "timeline", "run"} <= set(names)
    documented = {words for words, _ in docs_hooks.commands(docs_hooks.ember_help)}
    assert {(name,) for name in names} <= documented
    page = docs_hooks.expand(docs_hooks.MARKER, docs_hooks.ember_help)
    assert "--object-store-memory" in page and "usage: ember run script.py" in page


def test_in_process_help_is_what_the_command_prints():
    env = {**os.environ, "COLUMNS": docs_hooks.COLUMNS}
    real = subprocess.run([sys.executable, "-m", "ember_node.cli", "list", "--help"], env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert docs_hooks.ember_help(["list"]) == real.rstrip() + "\n"


def test_the_cli_page_has_the_marker():
    assert docs_hooks.MARKER in (REPO / "docs" / "cli.md").read_text()
