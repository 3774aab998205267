"""Scoring trained models on the test splits of other Dolos-layout roots (`evaluate.also`).

Dolos' cross-dataset experiment (paper §5.2): train on `ffhq/`, test on `celebahq/`. Each
other root goes through the index and preprocess stages' own code (`localize.indexing.run`,
`localize.preprocessing.run`), at the models' size, into a temporary folder deleted afterwards,
so data/ is untouched. Only test rows are prepared.

Generators are matched by name. A generator the models were tested on at home but that the
other root lacks is listed under `missing`, not an error; one the other root adds is scored too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from localize.atomic import temp_dir
from localize.evaluation import Bootstrap, percent, score_model, score_record, test_generators
from localize.index_csv import read_index
from localize.indexing import IndexParams
from localize.indexing import run as index_run
from localize.inference import with_tta
from localize.prepared import Prepared
from localize.preprocessing import PreprocessParams
from localize.preprocessing import run as preprocess_run
from localize.saved_model import load_model


def prepare_root(root: Path, size: int, tmp: Path) -> tuple[Prepared, list[dict[str, str]]]:
    """The test splits of `root`, indexed (bad pairs skipped) and prepared at `size`, and the pairs
    its index dropped (path and problem each), to be reported where they are kept.

    Every error names `root`, never the temporary folder it is prepared in.
    """
    def named(e: Exception) -> ValueError:
        return ValueError(f"evaluate.also: {root}: {str(e).replace(str(tmp), '(its test split)')}")

    try:
        index_run(root, tmp / "index.csv", tmp / "index-problems.csv", tmp / "data.json",
                  IndexParams(on_error="skip"))
    except (ValueError, OSError) as e:
        raise named(e) from None
    problems = pd.read_csv(tmp / "index-problems.csv", dtype=str, keep_default_na=False)
    dropped = [{"path": row.path, "problem": row.problem} for row in problems.itertuples()
               if row.severity == "error" and row.split in ("test", "")]
    index = read_index(tmp / "index.csv")
    test = index[index["split"] == "test"]
    if test.empty:
        raise ValueError(f"evaluate.also: {root}: no test split (real/test or fake/<generator>/images/test) to "
                         "score the models on")
    test.to_csv(tmp / "test.csv", index=False)
    try:
        preprocess_run(tmp / "test.csv", tmp / "prepared", PreprocessParams(size=size))
    except (ValueError, OSError) as e:
        raise named(e) from None
    return Prepared(tmp / "prepared"), dropped


def score_root(root: Path, model_files: list[Path], home_generators: list[str], size: int, threshold: float,
               batch_size: int, detection: str, draws: int, seed: int, tta: str = "none",
               min_region: dict[str, int] | None = None) -> dict:
    """{"generators", "missing", "dropped", "models": {split: score_record}} for one other root;
    `dropped` lists the bad pairs its index left out, with the problem of each. `min_region`: per
    split, the flagged regions (pixels) dropped from its maps, chosen on its home valid split."""
    with temp_dir("cross-root") as tmp:
        prepared, dropped = prepare_root(root, size, Path(tmp))
        gens = test_generators(prepared)
        boot = Bootstrap(prepared, draws, seed)
        models = {}
        for path in model_files:
            model, saved = load_model(path)
            scores = score_model(with_tta(model, tta), prepared, threshold, batch_size, detection,
                                 min_region=(min_region or {}).get(saved.split, 0))
            models[saved.split] = score_record(scores, boot)
    print(f"evaluate: {root}: " + "  ".join(f"{s} {100 * r['iou']:.1f}" for s, r in models.items()), file=sys.stderr)
    if dropped:
        print(f"evaluate: {root}: {len(dropped)} bad file(s) left out, listed under \"dropped\" in the cross-root "
              "results (metrics/cross_root.json)", file=sys.stderr)
    return {"generators": gens, "missing": [g for g in home_generators if g not in gens], "dropped": dropped,
            "models": models}


def markdown(results: dict) -> str:
    """One table per root: rows the models, columns its generators (IoU ×100 with intervals)."""
    if not results:
        return "No other root scored (`evaluate.also` is empty).\n"
    parts = []
    for root, r in results.items():
        gens = r["generators"]
        lines = [f"### {root}", "", "| trained on | " + " | ".join(gens) + " | mean | real faces clean |",
                 "|---" * (len(gens) + 3) + "|"]
        for split, rec in r["models"].items():
            cells = [percent(rec["generators"][g]["iou"], rec["generators"][g]["iou_ci"]) for g in gens]
            lines.append(f"| {split} | " + " | ".join(cells) + f" | {percent(rec['iou'], rec['iou_ci'])} | "
                         f"{percent(rec['real_clean'], rec['real_clean_ci'])} |")
        missing = ", ".join(r["missing"]) or "none"
        dropped = f" Bad files left out: {len(r['dropped'])} (listed in cross_root.json)." if r.get("dropped") else ""
        parts.append("\n".join(lines) + f"\n\nMissing from this root (not scored): {missing}.{dropped}\n")
    return "\n".join(parts) + "\nIoU ×100 with 95% bootstrap intervals over test images.\n"
