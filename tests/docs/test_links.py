"""Every link in README.md and docs/ points at a file of the repository that exists (and, for a
Markdown file with ``#anchor``, at one of its headings); none points outside the repository.

Pure: reads the files, starts no process. `make docs` (strict) checks the links between pages
of the site as well; this also covers README.md and links from docs/ to the rest of the repo.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\S\n]*$", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HTML = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_AUTOLINK = re.compile(r"<((?:[a-z][a-z0-9+.-]*:|www\.)[^>\s]+)>", re.IGNORECASE)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def strip_code(markdown: str) -> str:
    """``markdown`` without fenced code blocks and inline code spans (links there are text)."""
    return _CODE.sub(" ", _FENCE.sub(" ", markdown))


def link_targets(markdown: str) -> list[str]:
    """The targets of every link and image in ``markdown``, outside code."""
    text = strip_code(markdown)
    found = []
    for pattern in (_INLINE, _REFERENCE, _HTML, _AUTOLINK):
        found += [m.group(1) for m in pattern.finditer(text)]
    return found


def slug(heading: str) -> str:
    """A heading's anchor as MkDocs' toc makes it (and GitHub, for plain headings)."""
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("`", "")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(markdown: str) -> set[str]:
    return {slug(h) for h in _HEADING.findall(_FENCE.sub(" ", markdown))}


def problems(page: Path, repo: Path = REPO) -> list[str]:
    """What is wrong with the links of ``page``; empty when every one resolves in ``repo``."""
    found = []
    text = page.read_text()
    for target in link_targets(text):
        if _SCHEME.match(target):
            found.append(f"{target}: points outside the repository")
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.is_relative_to(repo.resolve()):
            found.append(f"{target}: leaves the repository ({dest})")
        elif not dest.exists():
            found.append(f"{target}: no such file ({dest.relative_to(repo.resolve())})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            found.append(f"{target}: {dest.name} has no heading #{anchor}")
    return found


# --- the checker itself -------------------------------------------------------------


def test_link_targets_skip_code_and_find_every_kind():
    markdown = (
        "See [a](a.md) and ![img](pic.png \"title\"), [nested [x]](b.md#part), <https://x.org>,\n"
        "`[not](code.md)` and <a href=\"c.html\">c</a>.\n\n"
        "```\n[nor](this.md)\n```\n\n[ref]: d.md\n")
    assert link_targets(markdown) == ["a.md", "pic.png", "b.md#part", "d.md", "c.html",
                                      "https://x.org"]


def test_slugs_follow_mkdocs():
    assert slug("Coming from Ray") == "coming-from-ray"
    assert slug("`ember start` flags, and more!") == "ember-start-flags-and-more"
    assert anchors("# Top\n```\n# not a heading\n```\n## Two words ##\n") == {"top", "two-words"}


def test_problems_name_each_bad_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# A heading\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/there.md#a-heading) [gone](docs/missing.md) "
                    "[web](https://example.com) [up](../outside.md) [anchor](docs/there.md#nope) "
                    "[self](#readme)\n# README\n")
    assert problems(page, tmp_path) == [
        "docs/missing.md: no such file (docs/missing.md)",
        "https://example.com: points outside the repository",
        f"../outside.md: leaves the repository ({(tmp_path.parent / 'outside.md').resolve()})",
        "docs/there.md#nope: there.md has no heading #nope",
    ]


# --- the repository's pages ------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_links_resolve(page):
    found = problems(page)
    assert not found, f"{page.relative_to(REPO)}:\n" + "\n".join(found)


def test_readme_points_at_no_file_outside_a_clone():
    """The design notes live in docs/design.md; nothing names a file beside the repository."""
    text = (REPO / "README.md").read_text()
    assert "../shared" not in text and "DESIGN.md" not in text
    assert "docs/design.md" in text


def test_troubleshooting_names_every_error_ember_raises():
    """Each ember.exceptions class the driver or the agent constructs has an entry (a heading
    or text) in docs/troubleshooting.md; RayError, the base class, is the exception."""
    import ember.exceptions as exceptions

    names = {name for name, value in vars(exceptions).items()
             if isinstance(value, type) and issubclass(value, BaseException)
             and value.__module__ == exceptions.__name__}
    sources = [path for root in ("driver/ember", "node/ember_node")
               for path in (REPO / root).rglob("*.py")
               if "_proto" not in path.parts and path.name != "exceptions.py"]
    code = "\n".join(path.read_text() for path in sources)
    raised = {name for name in names if re.search(rf"\b{name}\(", code)} - {"RayError"}
    page = (REPO / "docs" / "troubleshooting.md").read_text()
    seen_as = {"ActorCreationError": "RayActorError"}  # what it unpickles to at the caller
    missing = sorted(name for name in raised if seen_as.get(name, name) not in page)
    assert not missing, f"docs/troubleshooting.md does not mention {missing}"
