"""The README and docs/: the README fits on a few screens and every link in them resolves
(a file that exists, and a heading for each #anchor)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to
    hyphens.

    >>> slug("The flow, step by step")
    'the-flow-step-by-step'
    >>> slug("Guarantees, and the test that holds each")
    'guarantees-and-the-test-that-holds-each'
    """
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())     # not inside code
    return {slug(m) for m in re.findall(r"(?m)^#+ (.+)$", text)}


def links(page: Path) -> list[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+://|mailto:", t)]


def test_the_readme_fits_on_a_few_screens_and_points_into_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12_500
    assert readme.startswith("# ") and "make run" in readme and "make test" in readme
    for page in ("api", "settings", "guarantees", "operating", "scaling", "benchmarks",
                 "how-it-learns"):
        assert f"(docs/{page}.md)" in readme, page


def test_every_link_resolves():
    broken = []
    for page in PAGES:
        for target in links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
    assert sum(len(links(p)) for p in PAGES) >= 10


def test_the_slug_rule():
    import doctest
    import sys
    assert doctest.testmod(sys.modules[__name__]).failed == 0
