"""README.md and docs/: short, every relative link resolves, and no table typed by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools import sync_docs

REPO = Path(__file__).resolve().parents[1]
DOCS = sync_docs.documents(REPO)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INTERVAL = re.compile(r"\b\d+\.\d \(\d+\.\d–\d+\.\d\)")
# Figures from a one-off run that no metrics file holds (an ablation), each naming what made them.
MEASURED = re.compile(r"<!-- measured elsewhere: (?P<source>[^>]+?) -->.*?<!-- /measured -->", re.S)


def prose(text: str) -> str:
    """`text` without fenced code and without the generated blocks."""
    return sync_docs.BLOCK.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    found = {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}
    return found | set(re.findall(r'<a id="([^"]+)"', text))


def test_readme_is_short():
    size = len((REPO / "README.md").read_bytes())
    assert size <= 15_000, f"README.md is {size:,} bytes; move a section into docs/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc):
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{target}: {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest} missing")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading or <a id> {anchor!r} in {dest.name}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_every_generated_table_equals_its_metrics_file():
    assert sync_docs.stale(REPO) == [], "run `python -m tools.sync_docs` and commit"


def test_the_readme_shows_the_headline_and_the_table_from_metrics():
    blocks = [m.group("spec") for m in sync_docs.BLOCK.finditer((REPO / "README.md").read_text())]
    assert "metrics/headline.md" in blocks and "metrics/table.md" in blocks


def metrics_rows() -> set[str]:
    """Every body row of every Markdown table under metrics/."""
    rows = set()
    for md in (REPO / "metrics").rglob("*.md"):
        lines = md.read_text(encoding="utf-8").splitlines()
        for prev, line in zip(lines, lines[1:]):
            if line.startswith("|") and not re.fullmatch(r"[\s|:-]+", line) and prev.startswith("|"):
                rows.add(line.strip())
    return rows


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_metrics_row_is_copied_by_hand(doc):
    rows = metrics_rows()
    copied = [line for line in prose(doc.read_text(encoding="utf-8")).splitlines() if line.strip() in rows]
    assert not copied, f"{doc.relative_to(REPO)} copies rows of metrics/ by hand: wrap them in a " \
                       f"<!-- table:... --> block (tools/sync_docs.py): {copied[:2]}"


def test_the_readme_types_no_interval_by_hand():
    hand = INTERVAL.findall(prose((REPO / "README.md").read_text(encoding="utf-8")))
    assert not hand, f"README.md types intervals by hand: {hand}; include them from metrics/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_interval_quoted_in_prose_is_in_a_metrics_file(doc):
    """A mean with its interval, typed in a sentence, must be one that metrics/ holds now: after a
    retrain changes it, this fails and names it. Figures that no metrics file holds (the ablation)
    sit between `<!-- measured elsewhere: SOURCE -->` and `<!-- /measured -->`."""
    text = doc.read_text(encoding="utf-8")
    for m in MEASURED.finditer(text):
        assert (REPO / m.group("source").strip()).exists(), f"{doc.name}: measured elsewhere: {m.group('source')}?"
    held = "\n".join(md.read_text(encoding="utf-8") for md in (REPO / "metrics").rglob("*.md"))
    stale = [x for x in INTERVAL.findall(prose(MEASURED.sub("", text))) if x not in held]
    assert not stale, f"{doc.relative_to(REPO)} quotes intervals no metrics file holds: {stale[:6]}"


def test_sync_rewrites_a_stale_block(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "m.md").write_text("| a |\n|---|\n| 1 |\n")
    (tmp_path / "README.md").write_text("x\n<!-- table:m.md -->\n| a |\n|---|\n| 0 |\n<!-- /table -->\ny\n")
    assert sync_docs.stale(tmp_path) == ["README.md: table:m.md"]
    text = sync_docs.render((tmp_path / "README.md").read_text(), tmp_path)
    assert text == "x\n<!-- table:m.md -->\n| a |\n|---|\n| 1 |\n<!-- /table -->\ny\n"
    (tmp_path / "README.md").write_text(text)
    assert sync_docs.stale(tmp_path) == []


def test_the_screenshot_is_there_and_its_command_is_given():
    from PIL import Image

    with Image.open(REPO / "docs" / "report.png") as im:
        assert im.format == "PNG" and im.width >= 800
    assert "python -m tools.report_screenshot" in (REPO / "README.md").read_text()
