"""The README and docs/: the README fits on a few screens and every link in them resolves
(a file that exists, and a heading for each #anchor)."""
from __future__ import annotations

import inspect
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
    assert len(readme.encode()) <= 13_000
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


def table_rows(page: Path, heading: str) -> list[list[str]]:
    """The cells of the first table under ``heading``."""
    text = page.read_text()
    start = re.search(rf"(?m)^{re.escape(heading)}$", text).start()
    rows, seen = [], False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            seen = True
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if not set(cells[0]) <= set("- "):
                rows.append(cells)
        elif seen:
            break
    return rows[1:]   # the header row out


def test_the_settings_page_lists_every_setting_and_only_those():
    from config import Settings
    rows = table_rows(ROOT / "docs" / "settings.md", "# Settings")
    documented = {re.sub(r"`", "", r[0]) for r in rows}
    assert documented == {name.upper() for name in Settings.model_fields}
    defaults = {re.sub(r"`", "", r[0]): r[1] for r in rows}
    for name, field in Settings.model_fields.items():
        value = field.default
        if isinstance(value, bool):
            assert f"`{str(value).lower()}`" in defaults[name.upper()], name
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = re.sub(r"[`,_ ]", "", defaults[name.upper()])
            assert any(f"{v:g}" in shown or str(v) in shown for v in (value, float(value))), \
                (name, value, defaults[name.upper()])


def test_the_redis_keys_table_names_every_key_the_store_spells():
    from store import Keys
    text = "\n".join(r[0] for r in table_rows(ROOT / "docs" / "operating.md", "## Redis keys"))
    missing = []
    for name, value in vars(Keys).items():
        if name.startswith("_"):
            continue
        if name == "partition":       # a partition's keys: the {ev} rows, tagged {ev.p}
            continue
        if isinstance(value, staticmethod):
            arguments = len(inspect.signature(value.__func__).parameters)
            spelled = value.__func__(*["\x00"] * arguments)
            prefix = spelled.split("\x00")[0]
        elif isinstance(value, str):
            prefix = value
        else:
            continue
        if f"`{prefix}" not in text and f", `{prefix}" not in text:
            missing.append(f"Keys.{name}: {prefix}")
    assert missing == []


def test_every_test_the_guarantees_name_exists():
    """Each guarantee names the test that holds it: a file or folder under tests/, a
    ``file::name``, or a bare test name defined somewhere in tests/."""
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    defined = set(re.findall(r"(?m)^\s*(?:async )?def (test_\w+)", sources))
    missing = []
    for ref in re.findall(r"`([^`]*test[^`]*)`", (ROOT / "docs" / "guarantees.md").read_text()):
        path, _, name = ref.partition("::")
        if path.startswith("tests/"):
            where = ROOT / path.split(" ")[0]
            if not where.exists() or name and f"def {name.split('[')[0]}(" not in where.read_text():
                missing.append(ref)
        elif re.fullmatch(r"test_\w+", ref) and ref not in defined:
            missing.append(ref)
    assert missing == []
