"""MkDocs hooks (mkdocs.yml ``hooks:``): the CLI reference is written from the real ``--help``.

A page line ``<!-- ember-cli-reference -->`` becomes one section per ``ember`` subcommand (found
by walking the subcommand choices that ``ember --help`` lists, so a new subcommand appears
without editing the page), each holding that command's ``--help`` output as argparse prints
it at 100 columns. The help is taken in-process from ``ember_node.cli.main``: no process is
started and the build stays quick.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

MARKER = "<!-- ember-cli-reference -->"
COLUMNS = "100"
HelpOf = Callable[[Sequence[str]], str]

_CHOICES = re.compile(r"^\s+\{([\w,-]+)\}\s*$", re.MULTILINE)


def ember_help(args: Sequence[str]) -> str:
    """What ``ember ARGS --help`` prints (stdout and stderr), at a fixed width."""
    from ember_node.cli import main

    out = io.StringIO()
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                main([*args, "--help"])
            except SystemExit as exit_:
                if isinstance(exit_.code, str):  # SystemExit("usage: ...") prints its message
                    print(exit_.code)
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return out.getvalue().rstrip() + "\n"


def choices(help_text: str) -> list[str]:
    """The first ``{a,b,c}`` choice list of a help text's positional arguments, if any."""
    found = _CHOICES.search(help_text)
    return found.group(1).split(",") if found else []


def is_command(help_text: str, words: Sequence[str]) -> bool:
    """True when ``help_text`` is the help of ``ember WORDS`` itself (not of its parent, as for
    a positional choice such as ``ember list tasks``)."""
    usage = re.sub(r"\s+", " ", help_text.strip())
    return usage.startswith("usage: " + " ".join(["ember", *words]) + " ") or \
        usage == "usage: " + " ".join(["ember", *words])


def commands(help_of: HelpOf) -> list[tuple[tuple[str, ...], str]]:
    """Every ``ember`` command, depth first, as (words, its help text); the root first."""
    found: list[tuple[tuple[str, ...], str]] = []

    def visit(words: tuple[str, ...], text: str) -> None:
        found.append((words, text))
        for choice in choices(text):
            sub = (*words, choice)
            sub_text = help_of(sub)
            if is_command(sub_text, sub):
                visit(sub, sub_text)

    visit((), help_of(()))
    return found


def cli_reference(help_of: HelpOf) -> str:
    """Markdown: one section per command with its help in a code block."""
    parts = []
    for words, text in commands(help_of):
        title = " ".join(["ember", *words])
        parts.append(f"## `{title}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def expand(markdown: str, help_of: HelpOf) -> str:
    """``markdown`` with the marker line replaced by the CLI reference (unchanged without it)."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference(help_of))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: fill the CLI reference page."""
    return expand(markdown, ember_help)
