"""The README and docs/: the README opens with the two commands and the notebook table, lists
every notebook, and every relative link and anchor in README.md and docs/*.md resolves."""
import re
from pathlib import Path

import pytest

from dnewton_core.classroom.claims import anchor

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _sections(text):
    """[(heading, body)] of the ## sections of a Markdown text, in order."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2]))


def _anchors(path):
    """The anchors GitHub gives the headings of ``path`` (a repeated heading gets -1, -2, ...)."""
    seen, out = {}, set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text(encoding="utf-8")), re.M):
        a = anchor(heading.replace("`", ""))
        out.add(f"{a}-{seen[a]}" if a in seen else a)
        seen[a] = seen.get(a, 0) + 1
    return out


def test_readme_opens_with_the_two_commands_and_the_notebook_table():
    sections = _sections((ROOT / "README.md").read_text(encoding="utf-8"))
    (first, quick), (second, notebooks) = sections[:2]
    assert "make demo" in quick and "make test" in quick, first
    assert second == "Notebooks"
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"(notebooks/{nb.name})" in notebooks, f"{nb.name} is not in the README's table"
    assert "notebooks/solutions/" in notebooks


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    bad = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue                        # https:, mailto: (no network in tests)
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            bad.append(f"{target}: no such heading")
    assert not bad, bad


def test_the_files_make_test_runs_first_exist():
    from conftest import LONGEST_FIRST  # tests/ is on the path (pytest puts it there)
    missing = [name for name in LONGEST_FIRST if not (ROOT / "tests" / name).is_file()]
    assert not missing, f"tests/conftest.py puts first files that do not exist: {missing}"
