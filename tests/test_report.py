"""The report stage: one HTML page with every table row and every image inlined, opened in a real browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from localize import report
from stages import report as report_stage
from tools import browser

SUMMARY = {
    "in_domain": {"iou": 0.4, "low": 0.35, "high": 0.45, "prior": 0.1, "auc": 0.8, "auc_ci": [0.7, 0.9]},
    "held_out": {"iou": 0.2, "low": 0.15, "high": 0.25, "prior": 0.12, "auc": 0.6, "auc_ci": [0.5, 0.7]},
    "real_faces": {"clean": 0.5, "fake_area": 0.05, "clean_ci": [0.4, 0.6]},
    "baselines": {"all-fake": 0.11, "all-real": 0.0},
    "valid_thresholds": {"iou": {"in_domain": {"iou": 0.41, "low": 0.4, "high": 0.42}}},
    "runtime": {"train_device": "cpu", "train_precision": "fp32", "train_threads": 2},
}
TABLE = """| trained on | alpha | beta | mean |
|---|---|---|---|
| alpha | **40.0 (35.0–45.0)** | 20.0 (15.0–25.0) | 30.0 |
| no-beta | 38.0 (33.0–43.0) | *20.0 (15.0–25.0)* | 29.0 |
| _baseline: prior (fit on that generator's masks)_ | 10.0 | 12.0 | 11.0 |
| _baseline: texture_ | 15.0 | 14.0 | 14.5 |
| _ceiling: visible change_ | 70.0 | 72.0 | 71.0 |

IoU ×100 with 95% bootstrap intervals over test images.
- one note with `code` and **bold**
"""
ROWS = ["alpha", "no-beta", "baseline: prior (fit on that generator's masks)", "baseline: texture",
        "ceiling: visible change"]
ROBUSTNESS = "| model | clean | jpeg-50 |\n|---|---|---|\n| alpha | 40.0 (35.0–45.0) | 30.0 (25.0–35.0) |\n"


def png(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def tiny_run(root: Path) -> list[str]:
    """A run's outputs as the report stage reads them, small; return the stage's arguments."""
    (root / "metrics").mkdir(parents=True)
    (root / "metrics/summary.json").write_text(json.dumps(SUMMARY))
    (root / "metrics/table.md").write_text(TABLE)
    (root / "metrics/robustness.md").write_text(ROBUSTNESS)
    (root / "metrics/cross_root.md").write_text("No other root scored (`evaluate.also` is empty).\n")
    png(root / "plots/evaluate/iou_heatmap.png", 40, 60)
    for i, gen in enumerate(("alpha", "beta")):
        png(root / f"plots/evaluate/overlays/{gen}.png", 30, 90, i)
    png(root / "plots/train/curves.png", 20, 80, 3)
    for i, kind in enumerate(("blur", "jpeg")):
        png(root / f"plots/robustness/{kind}.png", 25, 35, 4 + i)
    # One large noisy overlay, embedded as JPEG: it must decode too.
    png(root / "plots/evaluate/overlays/gamma.png", 400, 400, 9)
    args = {"summary": "metrics/summary.json", "table": "metrics/table.md",
            "robustness-table": "metrics/robustness.md", "cross-root-table": "metrics/cross_root.md",
            "heatmap": "plots/evaluate/iou_heatmap.png", "overlays": "plots/evaluate/overlays",
            "curves": "plots/train/curves.png", "robustness-plots": "plots/robustness",
            "out": "reports/index.html", "headline": "metrics/headline.json", "headline-md": "metrics/headline.md"}
    return [x for k, v in args.items() for x in (f"--{k}", str(root / v))]


N_IMAGES = 1 + 3 + 1 + 2  # heatmap, overlays, curves, robustness


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    report_stage.main(tiny_run(root))
    return root


def test_page_holds_every_table_row_and_inlines_every_image(built):
    doc = (built / "reports/index.html").read_text()
    raw = report.table_rows(TABLE)
    assert [r.strip("_") for r in raw] == ROWS
    for row in raw:
        assert f"<td>{report.inline_markdown(row)}</td>" in doc, row
    assert doc.count('<tr class="baseline">') == 3  # every italic first cell: prior, texture, ceiling
    assert doc.count("<img ") == N_IMAGES
    assert len(re.findall(r'<img src="data:image/(?:png|jpeg);base64,', doc)) == N_IMAGES
    assert "data:image/jpeg" in doc  # the 400x400 noise overlay, over MAX_PNG_BYTES as a PNG
    assert report.external_references(doc) == []
    assert f'content="{report.CSP}"' in doc and "<script" not in doc
    assert "<b>40.0 (35.0–45.0)</b>" in doc and "<code>code</code>" in doc
    assert "<td>train precision</td><td>fp32</td>" in doc  # the runtime
    assert "40.0 (35.0–45.0)" in doc and "jpeg-50" in doc  # headline and robustness table


def test_headline_files(built):
    compact = json.loads((built / "metrics/headline.json").read_text())
    assert compact == {"in": {"iou": 40.0, "ci": "35.0–45.0", "prior": 10.0},
                       "out": {"iou": 20.0, "ci": "15.0–25.0", "prior": 12.0},
                       "real": {"clean": 50.0}, "base": {"all-fake": 11.0}}
    md = (built / "metrics/headline.md").read_text()
    assert "| in-domain | **40.0 (35.0–45.0)** | 10.0 | 80.0 (70.0–90.0) |" in md
    assert "- real faces: clean 50.0 (40.0–60.0), fake area 5.0" in md


def test_a_baseline_and_a_ceiling_a_later_evaluate_adds_appear_in_the_headline():
    texture = {"in_domain": {"iou": 0.25, "low": 0.2, "high": 0.3}, "held_out": {"iou": 0.2, "low": 0.15, "high": 0.25},
               "real_faces_clean": 0.3}
    summary = {**SUMMARY, "baselines": {**SUMMARY["baselines"], "texture": texture},
               "ceiling": {"iou": 0.72, "low": 0.7, "high": 0.74}, "budget": {"passes": 0.3}}
    compact = report.compact_headline(summary)
    assert compact["base"] == {"all-fake": 11.0, "texture": {"in": 25.0, "out": 20.0}}
    assert compact["ceiling"] == 72.0
    assert "budget" not in compact  # not a result: no mean IoU
    assert "<td>budget.passes</td><td>0.3</td>" in report.runtime_html(summary)
    md = report.headline_markdown(summary)
    assert "| in-domain | **40.0 (35.0–45.0)** | 10.0 | 80.0 (70.0–90.0) | 25.0 (20.0–30.0) |" in md
    assert "| ceiling | **72.0 (70.0–74.0)** |  |  |  |" in md
    assert "- baselines: all-fake 11.0, all-real 0.0, texture real faces clean 30.0" in md


def test_external_references_are_found():
    bad = '<img src="http://x/a.png"><link href="s.css"><div style="background:url(a.png)">'
    assert len(report.external_references(bad)) == 3
    assert report.external_references('<img src="data:image/png;base64,AA"><a href="#top">') == []


def test_bad_inputs_name_the_file(tmp_path):
    args = tiny_run(tmp_path)
    (tmp_path / "plots/train/curves.png").write_text("not a png")
    with pytest.raises(SystemExit, match=r"curves.png: not a PNG"):
        report_stage.main(args)
    (tmp_path / "metrics/summary.json").write_text("{")
    with pytest.raises(SystemExit, match=r"--summary .*summary.json: not JSON"):
        report_stage.main(args)


needs_chromium = pytest.mark.skipif(browser.find_chromium() is None,
                                    reason="Chromium is not installed (apt-get install -y chromium; .ci/run does)")


@needs_chromium
def test_in_a_real_browser_every_image_decodes_every_row_shows_and_nothing_is_fetched(built, tmp_path):
    page = built / "reports/index.html"
    seen = browser.probe(page)
    assert len(seen["images"]) == N_IMAGES and all(w > 0 for w in seen["images"]), seen["images"]
    assert seen["resources"] == []
    for row in ROWS:
        assert row in seen["rows"], row
    shot = tmp_path / "shot.png"
    browser.screenshot(page, shot, 800, 600)
    with Image.open(shot) as im:
        assert im.size == (800, 600)
        assert np.asarray(im.convert("L")).std() > 5  # not a blank page


@needs_chromium
def test_the_probe_sees_a_request(tmp_path):
    """The check above could pass by seeing nothing: a page that does fetch is caught."""
    page = tmp_path / "fetching.html"
    page.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
                    f'content="{report.CSP}"></head><body><img src="http://example.invalid/a.png">'
                    '<table><tbody><tr><td>x</td></tr></tbody></table></body></html>')
    seen = browser.probe(page)
    assert seen["resources"] == ["http://example.invalid/a.png"]
    assert seen["images"] == [0] and seen["rows"] == ["x"]



def test_heatmap_colour_bar_reads_on_the_cells_scale(tmp_path, monkeypatch):
    """The cells are labelled ×100; the colour bar runs 0-100, not 0-1."""
    from localize import plots

    bars = []
    plt = plots._pyplot()
    real_colorbar = plt.Figure.colorbar
    monkeypatch.setattr(plt.Figure, "colorbar", lambda self, im, **kw: bars.append(im.get_clim()) or
                        real_colorbar(self, im, **kw))
    plots.heatmap({"a": {"x": 0.25, "mean": 0.25}}, ["x", "mean"], tmp_path / "h.png", "t")
    assert bars == [(0, 100)]
