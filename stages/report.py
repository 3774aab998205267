"""Stage `report`: the run's results as one HTML page that opens offline, and the compact headline.

    python -m stages.report --summary metrics/summary.json --table metrics/table.md \
        --robustness-table metrics/robustness.md --cross-root-table metrics/cross_root.md \
        --heatmap plots/evaluate/iou_heatmap.png --overlays plots/evaluate/overlays \
        --curves plots/train/curves.png --robustness-plots plots/robustness \
        --out reports/index.html --headline metrics/headline.json --headline-md metrics/headline.md

The page (localize/report.py) holds the headline, every row of the tables with their intervals,
the heatmap, the overlays per generator, the training and robustness curves and the runtime, with
every image inlined: open it from file:// anywhere. metrics/headline.json is summary.json's headline
×100 under short names: the one file `dvc metrics show` and `dvc exp show` read; metrics/headline.md
is the same headline with its intervals as Markdown, which README.md includes (tools/sync_docs.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from localize import report
from localize.atomic import atomic_file

TITLE = "Inpainting localization on faces: results"


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"--{what} {path}: not found (run the stage that writes it first)") from None


def _figures(paths: list[Path], width: int | None = None) -> str:
    if not paths:
        return "<p>No figure was written for this run.</p>"
    out = []
    for p in paths:
        try:
            out.append(report.figure(report.image_data_uri(p.read_bytes()), p.stem, width))
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None
    return "\n".join(out)


def build(args: argparse.Namespace) -> tuple[str, dict, str]:
    """The page, the compact headline and the headline's Markdown, from the files the arguments name."""
    try:
        summary = json.loads(_read(args.summary, "summary"))
    except json.JSONDecodeError as e:
        raise ValueError(f"--summary {args.summary}: not JSON ({e})") from None
    optional = lambda p: sorted(p.glob("*.png")) if p.is_dir() else []  # noqa: E731
    md = lambda p, what: report.markdown_to_html(_read(p, what))  # noqa: E731
    sections = [
        ("Headline", report.headline_html(summary)),
        ("Cross-generator table", md(args.table, "table")),
        ("Heatmap", _figures([args.heatmap])),
        ("Overlays per generator", "<p>One figure per test generator: input | truth (green) | the predictions "
                                   "(red) of the in-domain model, the model that never saw that generator, and "
                                   "others, on its first test images.</p>" + _figures(optional(args.overlays), 660)),
        ("Training curves", _figures([args.curves])),
        ("Robustness", md(args.robustness_table, "robustness-table") + _figures(optional(args.robustness_plots))),
    ]
    if args.cross_root_table:
        sections.append(("Other roots", md(args.cross_root_table, "cross-root-table")))
    sections.append(("Runtime", report.runtime_html(summary)))
    return report.page(TITLE, sections), report.compact_headline(summary), report.headline_markdown(summary)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("summary", "table", "robustness-table", "heatmap", "overlays", "curves", "robustness-plots",
                 "out", "headline", "headline-md"):
        ap.add_argument(f"--{name}", type=Path, required=True)
    ap.add_argument("--cross-root-table", type=Path)
    args = ap.parse_args(argv)
    try:
        for name in ("heatmap", "curves"):
            if not getattr(args, name).is_file():
                raise FileNotFoundError(f"--{name} {getattr(args, name)}: not found")
        doc, headline, headline_md = build(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    for path, text in ((args.out, doc), (args.headline, json.dumps(headline, indent=2, ensure_ascii=False) + "\n"),
                       (args.headline_md, headline_md)):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    print(f"report: {args.out} ({len(doc) / 1e6:.1f} MB), headline {args.headline}")


if __name__ == "__main__":
    main()
