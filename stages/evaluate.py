"""Evaluate every trained split on every generator's test split, with the Dolos protocol.

    python -m stages.evaluate --prepared data/prepared --models models --iou metrics/iou.json \
        --scores metrics/scores.json --summary metrics/summary.json --table metrics/table.md \
        --heatmap plots/evaluate/iou_heatmap.png --overlays plots/evaluate/overlays \
        --cross-root metrics/cross_root.json --cross-root-table metrics/cross_root.md

Localization: per image, binarize the fake probability at 0.5 and take IoU (1.0 when
prediction and truth are both empty); a cell is the mean over a generator's test images
(README, "The evaluation protocol"). Every cell and every mean of cells comes with a 95%
bootstrap interval over test images, and stands beside three baselines computed on the
same test sets: every pixel fake, every pixel real, and the location prior of the same
training split (its mean training mask, thresholded on valid: localize/prior.py).
Beside IoU: per-image F1 at 0.5, pixel-level average precision and best-threshold F1,
image-level detection AUC against the real test faces, and the real-face column: the share
of real test faces with no pixel flagged, and the mean flagged area.

`evaluate.also` lists other Dolos-layout roots: every model is scored on their test splits
too (localize/cross_root.py), into metrics/cross_root.json and .md, keyed by root.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from localize.atomic import atomic_dir, atomic_file, atomic_outputs
from localize.bounds import TextureScores, ceiling_summary, load_ceiling, load_texture, markdown_rows, texture_summary
from localize.budget import summary_record
from localize.config import ParamsError, load_section
from localize.cross_root import markdown as cross_root_markdown
from localize.cross_root import score_root
from localize.evaluation import (
    Bootstrap,
    ModelScores,
    ValidThresholdScores,
    held_out_cells,
    in_domain_cells,
    mean_of,
    ordered_model_files,
    percent,
    prior_ious,
    read_valid,
    real_clean,
    rounded,
    score_model,
    test_generators,
    trivial_ious,
    valid_min_region,
    valid_thresholds,
)
from localize.inference import with_tta
from localize.layout import REAL
from localize.metrics import binarize
from localize.params import EvaluateParams
from localize.plots import grid, heatmap, overlay
from localize.preflight import check_and_clear
from localize.prepared import Prepared
from localize.regions import drop_small_regions, min_pixels
from localize.runtime import cpu_features, setup_threads
from localize.saved_model import SavedModel, load_model
from localize.splits import held_out


@dataclass
class Results:
    """Everything one evaluation computed, per image where an interval needs it."""

    generators: list[str]
    models: dict[str, SavedModel]  # split -> its record (train generators, runtime)
    scores: dict[str, ModelScores]  # split -> its scores
    priors: dict[str, dict[str, np.ndarray]]  # split -> its location prior's per-image IoU
    prior_area: dict[str, float]  # split -> share of the image its prior flags
    trivial: dict[str, dict[str, np.ndarray]]  # all-fake / all-real -> per-image IoU
    boot: Bootstrap
    texture: dict[str, TextureScores] = field(default_factory=dict)  # split -> the texture baseline's scores
    ceiling: dict[str, np.ndarray] = field(default_factory=dict)  # generator -> visible-change IoU (demo only)
    min_region_valid: dict[str, dict[float, float]] = field(default_factory=dict)  # split -> valid score per share

    def ious(self) -> dict[str, dict[str, np.ndarray]]:
        return {split: s.ious for split, s in self.scores.items()}


def _mean_row(row: dict[str, np.ndarray]) -> dict[str, float]:
    cells = {g: float(v.mean()) for g, v in row.items()}
    return {**cells, "mean": float(np.mean(list(cells.values()))) if cells else math.nan}


def _interval(pair: tuple[float, float]) -> list[float | None]:
    return [rounded(pair[0]), rounded(pair[1])]


def iou_table(r: Results) -> dict[str, dict[str, float]]:
    """{split: {generator: IoU, ..., "mean": ...}}: the cross-generator table."""
    return {split: _mean_row(ious) for split, ious in r.ious().items()}


def _mean_with_interval(r: Results, chosen: list[tuple[str, np.ndarray]]) -> dict:
    """The mean over `chosen` cells (test set name, per-image values) with its bootstrap interval."""
    low, high = r.boot.interval(chosen)
    return {"iou": rounded(mean_of(chosen)), "low": rounded(low), "high": rounded(high)}


def real_faces(r: Results, split: str) -> dict:
    flagged = r.scores[split].real_flagged
    if not len(flagged):
        return {"clean": None, "clean_ci": [None, None], "fake_area": None}
    clean = real_clean(flagged)
    return {"clean": rounded(clean.mean()), "clean_ci": _interval(r.boot.interval([(REAL, clean)])),
            "fake_area": rounded(float(flagged.mean()))}


def detailed_scores(r: Results) -> dict:
    """scores.json: every cell with its interval and its prior, the real-face column, the baselines."""
    out: dict = {}
    for split, s in r.scores.items():
        out[split] = {gen: {"iou": rounded(float(ious.mean())), "iou_ci": _interval(r.boot.interval([(gen, ious)])),
                            "prior_iou": rounded(float(r.priors[split][gen].mean())),
                            **{k: rounded(v) for k, v in s.cells[gen].items()},
                            "auc_ci": _interval(r.boot.auc_interval([(gen, s.detection[gen], s.real_detection)]))}
                      for gen, ious in s.ious.items()}
        out[split][REAL] = real_faces(r, split)
        out[split]["valid_thresholds"] = {name: _other_threshold_record(other)
                                          for name, other in s.at_valid_thresholds.items()}
        out[split]["min_region"] = {"pixels": s.min_region,
                                    "valid_score": {f"{share:g}": rounded(v)
                                                    for share, v in r.min_region_valid.get(split, {}).items()}}
    out["baselines"] = {
        "prior": {split: _mean_row(p) for split, p in r.priors.items()},
        "prior_area": r.prior_area,
        **{name: _mean_row(row) for name, row in r.trivial.items()},
    }
    if r.texture:
        out["baselines"]["texture"] = {split: {**_mean_row(t.ious), "threshold": t.threshold,
                                                "min_region": t.min_region}
                                       for split, t in r.texture.items()}
    if r.ceiling:
        out["baselines"]["ceiling"] = _mean_row(r.ceiling)
    return out


def _other_threshold_record(other: ValidThresholdScores) -> dict:
    """One model's scores at a threshold chosen on its valid set."""
    clean = real_clean(other.real_flagged)
    return {"threshold": other.threshold, "iou": {g: rounded(float(v.mean())) for g, v in other.ious.items()},
            "real_clean": rounded(float(clean.mean())) if len(clean) else None}


def at_valid_thresholds(r: Results) -> dict:
    """summary.json's `valid_thresholds`: per way of choosing (localize.evaluation.valid_thresholds), the
    headline means with each model at its own choice (each model's threshold is in scores.json, so
    that `dvc metrics show` stays one glance). Not Dolos' protocol, which fixes 0.5."""
    names = set.intersection(*(set(s.at_valid_thresholds) for s in r.scores.values()))
    return {name: _at_threshold(r, {split: s.at_valid_thresholds[name] for split, s in r.scores.items()})
            for name in sorted(names)}


def _at_threshold(r: Results, others: dict[str, ValidThresholdScores]) -> dict:
    ious = {split: other.ious for split, other in others.items()}
    out = {"in_domain": _mean_with_interval(r, in_domain_cells(ious)),
           "held_out": _mean_with_interval(r, held_out_cells(ious, r.generators))}
    clean = [(REAL, real_clean(other.real_flagged)) for other in others.values()]
    if all(len(c) for _, c in clean):
        out["real_faces_clean"] = rounded(float(np.mean([c.mean() for _, c in clean])))
        out["real_faces_clean_ci"] = _interval(r.boot.interval(clean))
    return out


def headline(r: Results, detailed: dict) -> dict:
    """summary.json, the one DVC metrics file: what `dvc metrics show` and `dvc exp show` print.

    `detailed` is `detailed_scores(r)`, whose real-face records it averages."""
    ious, gens = r.ious(), r.generators
    cells = {"in_domain": in_domain_cells(ious), "held_out": held_out_cells(ious, gens)}
    priors = {"in_domain": in_domain_cells(r.priors), "held_out": held_out_cells(r.priors, gens)}
    out: dict = {}
    for name, chosen in cells.items():
        out[name] = {**_mean_with_interval(r, chosen), "prior": rounded(mean_of(priors[name])),
                     **_detection(r, chosen_splits(name, r))}
    reals = [detailed[split][REAL] for split in r.scores]
    has_reals = reals[0]["clean"] is not None
    out["real_faces"] = {key: rounded(float(np.mean([x[key] for x in reals]))) if has_reals else None
                         for key in ("clean", "fake_area")}
    if has_reals:  # the interval of the mean over models: every model sees the same resampled real faces
        clean = [(REAL, real_clean(s.real_flagged)) for s in r.scores.values()]
        out["real_faces"]["clean_ci"] = _interval(r.boot.interval(clean))
    out["baselines"] = {name: rounded(_mean_row(row)["mean"]) for name, row in r.trivial.items()}
    if r.texture:
        out["baselines"]["texture"] = texture_summary(r.texture, gens, r.boot)
    if r.ceiling:
        out["ceiling"] = ceiling_summary(r.ceiling, r.boot)
    out["valid_thresholds"] = at_valid_thresholds(r)
    out["runtime"] = runtime_record(r.models)
    budget = summary_record({split: m.budget for split, m in r.models.items()})
    if budget:  # only a run whose models saw less than one pass over their training fakes has the key
        out["budget"] = budget
    return out


def chosen_splits(name: str, r: Results) -> list[tuple[str, str]]:
    """(split, generator) of the in-domain or the held-out cells."""
    if name == "in_domain":
        return [(split, split) for split in r.scores if split in r.scores[split].detection]
    return [(split, held_out(split, r.generators)) for split in r.scores
            if held_out(split, r.generators) in r.scores[split].detection]


def _detection(r: Results, chosen: list[tuple[str, str]]) -> dict:
    """Mean image-level detection AUC (fakes of the cell against the real test faces), with its interval."""
    if not chosen or not len(r.scores[chosen[0][0]].real_detection):
        return {"auc": None, "auc_ci": [None, None]}
    aucs = [r.scores[split].cells[gen]["auc"] for split, gen in chosen]
    # Each cell against its own model's real-face scores.
    interval = r.boot.auc_interval([(gen, r.scores[split].detection[gen], r.scores[split].real_detection)
                                    for split, gen in chosen])
    return {"auc": rounded(float(np.mean(aucs))), "auc_ci": _interval(interval)}


def runtime_record(models: dict[str, SavedModel]) -> dict[str, str | int]:
    """How the models were trained (a table depends on precision); evaluation runs in fp32 on CPU."""
    seen = {(m.device, m.precision, m.threads) for m in models.values()}
    device, precision, threads = seen.pop() if len(seen) == 1 else ("mixed", "mixed", 0)
    return {"train_device": device, "train_precision": precision, "train_threads": threads,
            "evaluate_device": "cpu", "evaluate_precision": "fp32", "evaluate_cpu": cpu_features()}


def markdown_table(r: Results, detailed: dict, summary: dict) -> str:
    """table.md, rendered from what `detailed_scores` and `headline` computed."""
    gens = r.generators
    header = "| trained on | " + " | ".join(gens) + " | mean | real faces clean | prior, same generators |"
    lines = [header, "|---" * (len(gens) + 4) + "|"]
    for split, s in r.scores.items():
        cells = []
        for g in gens:
            cell = percent(float(s.ious[g].mean()), r.boot.interval([(g, s.ious[g])])) if g in s.ious else "–"
            # In-domain cells in bold, held-out (generalization) cells in italics.
            cells.append(f"**{cell}**" if g == split else f"*{cell}*" if held_out(split, gens) == g else cell)
        real = detailed[split][REAL]
        clean = "–" if real["clean"] is None else percent(real["clean"], tuple(real["clean_ci"]))
        own = [g for g in r.models[split].train_generators if g in r.priors[split]]
        prior_own = np.mean([r.priors[split][g].mean() for g in own]) if own else math.nan
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {percent(_mean_row(s.ious)['mean'])} | {clean} | "
                     f"{percent(prior_own)} |")
    in_domain_prior = {g: r.priors[g][g] for g in gens if g in r.priors}
    baselines = {"prior (fit on that generator's masks)": in_domain_prior, **r.trivial}
    real_clean = {"prior (fit on that generator's masks)": "0", "all-fake": "0", "all-real": "100"}
    for name, row in baselines.items():
        cells = [percent(float(row[g].mean())) if g in row else "–" for g in gens]
        lines.append(f"| _baseline: {name}_ | " + " | ".join(cells) + f" | {percent(_mean_row(row)['mean'])} | "
                     f"{real_clean[name]} | |")
    lines += markdown_rows(r.texture, r.ceiling, gens, r.boot)
    notes = [_headline_note(name.replace("_", "-"), summary[name]) for name in ("in_domain", "held_out")]
    return ("\n".join(lines) + "\n\nIoU ×100 with 95% bootstrap intervals over test images. " + "; ".join(notes)
            + ".\n" + _min_region_note(r) + _valid_thresholds_note(summary["valid_thresholds"], detailed))


def _min_region_note(r: Results) -> str:
    """Which post-process each row's maps had (localize/regions.py); nothing where none had any."""
    models = sorted({s.min_region for s in r.scores.values()})
    texture = sorted({t.min_region for t in r.texture.values()})
    if not any(models) and not any(texture):
        return ""
    listed = ", ".join(f"{k} px" for k in models)
    rows = f"; {', '.join(f'{k} px' for k in texture)} for the texture rows" if texture else ""
    return (f"\nEach model's maps drop flagged regions smaller than its min region, chosen on its valid split: "
            f"{listed} for the models{rows} (scores.json, `min_region`).\n")


# How the table's note names each way of choosing a threshold on valid.
CHOSEN_FOR = {"iou": "the fakes' IoU", "selection": "the selection score (fakes' IoU x (1 + real faces clean) / 2)"}


def _valid_thresholds_note(parts: dict, detailed: dict) -> str:
    if not parts:
        return ""
    lines = ["\nNot the protocol, reported apart: each model at a threshold chosen on its own valid set."]
    for name, part in parts.items():
        thresholds = {row["valid_thresholds"][name]["threshold"] for split, row in detailed.items()
                      if split != "baselines"}
        chosen = ", ".join(f"{t:g}" for t in sorted(thresholds))
        ind, out = part["in_domain"], part["held_out"]
        lines.append(f"- best for {CHOSEN_FOR[name]} ({chosen}): in-domain mean "
                     f"{percent(ind['iou'], (ind['low'], ind['high']))}, held-out "
                     f"{percent(out['iou'], (out['low'], out['high']))}, real faces clean "
                     f"{percent(part.get('real_faces_clean'), part.get('real_faces_clean_ci'))}")
    return "\n".join(lines) + "\n"


def _headline_note(name: str, part: dict) -> str:
    if part["iou"] is None:
        return f"{name} mean –"
    return (f"{name} mean {percent(part['iou'], (part['low'], part['high']))} "
            f"against {percent(part['prior'])} for the prior of the same splits")


def write_json(path: Path, obj: dict) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_overlays(r: Results, prepared: Prepared, folder: Path, threshold: float) -> None:
    gens = r.generators
    with atomic_dir(folder) as tmp:
        for gen in gens:
            # The model trained on this generator, then the one that never saw it, then the rest.
            shown = sorted((s for s in r.scores if len(r.scores[s].overlays.get(gen, ()))),
                           key=lambda s: (s != gen, held_out(s, gens) != gen, s))[:4]
            if not shown:
                continue
            images, masks = prepared.arrays(gen, "test")
            rows = [[np.asarray(images[i]), overlay(np.asarray(images[i]), masks[i], (0, 255, 0))]
                    + [overlay(np.asarray(images[i]), drop_small_regions(
                        binarize(r.scores[s].overlays[gen][i][None], threshold), r.scores[s].min_region)[0])
                       for s in shown]
                    for i in range(len(r.scores[shown[0]].overlays[gen]))]
            grid(rows, ["input", "truth"] + [f"pred: {s}" for s in shown], tmp / f"{gen}.png",
                 f"test generator: {gen}")


def score_all(prepared_dir: Path, models_dir: Path, ep: EvaluateParams, texture_dir: Path | None = None,
              ceiling_path: Path | None = None) -> tuple[Prepared, Results]:
    prepared = Prepared(prepared_dir)
    setup_threads(None)
    model_files = ordered_model_files(models_dir)
    if not model_files:
        raise FileNotFoundError(f"{models_dir}: no trained models (*.pt) to evaluate")
    models, scores, region_scores = {}, {}, {}
    for path in model_files:
        model, saved = load_model(path)
        if saved.size != prepared.size:
            raise ValueError(f"{path}: trained at {saved.size}px but the prepared data is {prepared.size}px")
        models[saved.split] = saved
        model = with_tta(model, ep.tta)
        # One pass over the valid images for both choices made on them.
        valid = read_valid(model, prepared, saved.train_generators, ep.threshold, ep.batch_size)
        chosen = valid_thresholds(model, prepared, saved.train_generators, ep.batch_size, valid)
        share, region_scores[saved.split] = valid_min_region(model, prepared, saved.train_generators, ep.threshold,
                                                             ep.min_region, ep.batch_size, valid)
        scores[saved.split] = score_model(model, prepared, ep.threshold, ep.batch_size, ep.detection_score,
                                          keep=ep.overlay_images, other_thresholds=chosen,
                                          min_region=min_pixels(share, prepared.size, prepared.size))
        ious = scores[saved.split].ious
        print(f"{saved.split:>20}: " + "  ".join(f"{g} {100 * v.mean():.1f}" for g, v in ious.items())
              + f"  (min region {share:g}: {scores[saved.split].min_region} px)")
    priors = {split: prior_ious(prepared, m.train_generators) for split, m in models.items()}
    return prepared, Results(
        generators=test_generators(prepared), models=models, scores=scores,
        priors={s: p[0] for s, p in priors.items()}, prior_area={s: round(p[1], 6) for s, p in priors.items()},
        trivial=trivial_ious(prepared), boot=Bootstrap(prepared, ep.bootstrap, ep.seed),
        texture=load_texture(texture_dir) if texture_dir else {},
        ceiling=load_ceiling(ceiling_path) if ceiling_path else {}, min_region_valid=region_scores)


def check_roots(ep: EvaluateParams) -> None:
    """Every root of `evaluate.also` must be a Dolos-layout folder: checked before any work."""
    for root in ep.also:
        path = Path(root)
        if not path.is_dir():
            raise FileNotFoundError(f"evaluate.also: {root}: no such folder")
        if not (path / "fake").is_dir():
            raise ValueError(f"evaluate.also: {root}: not a Dolos-layout root (no fake/ folder in it)")


def run(prepared_dir: Path, models_dir: Path, out: dict[str, Path], ep: EvaluateParams,
        texture_dir: Path | None = None, ceiling_path: Path | None = None) -> dict:
    """Score every model, at home and on every other root, then write every output at once.

    All or nothing: nothing is written until every score is known, and then every output goes
    to a temporary beside it, moved in together at the end (localize.atomic.atomic_outputs); a
    failure or Ctrl-C before that, or among those moves (rolled back; SIGINT/SIGTERM wait until
    the moves are done), leaves every previous output as it was.
    """
    check_roots(ep)
    prepared, r = score_all(prepared_dir, models_dir, ep, texture_dir, ceiling_path)
    table = iou_table(r)
    detailed = detailed_scores(r)
    summary = headline(r, detailed)
    cross = cross_root_results(models_dir, r.generators, prepared.size, ep,
                               {split: s.min_region for split, s in r.scores.items()})
    files = [out[k] for k in ("iou", "scores", "summary", "table", "heatmap", "cross_root", "cross_root_table")]
    with atomic_outputs(files, [out["overlays"]]) as tmp:
        write_json(tmp[out["iou"]], {s: {g: rounded(v) for g, v in row.items()} for s, row in table.items()})
        write_json(tmp[out["scores"]], detailed)
        write_json(tmp[out["summary"]], summary)
        tmp[out["table"]].write_text(markdown_table(r, detailed, summary))
        heatmap(table, [*r.generators, "mean"], tmp[out["heatmap"]], f"IoU x100, test split, {prepared.size}px")
        write_overlays(r, prepared, tmp[out["overlays"]], ep.threshold)
        write_json(tmp[out["cross_root"]], cross)
        tmp[out["cross_root_table"]].write_text(cross_root_markdown(cross))
    return table


def cross_root_results(models_dir: Path, generators: list[str], size: int, ep: EvaluateParams,
                       min_region: dict[str, int]) -> dict:
    """Every model on every root of `evaluate.also`, keyed by root (metrics/cross_root.json, .md), each
    with the min region chosen on its home valid split (`min_region`: split -> pixels)."""
    files = ordered_model_files(models_dir)
    return {root: score_root(Path(root), files, generators, size, ep.threshold, ep.batch_size,
                             ep.detection_score, ep.bootstrap, ep.seed, ep.tta, min_region) for root in ep.also}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--texture", type=Path, help="the texture stage's folder: the table's texture rows")
    ap.add_argument("--ceiling", type=Path, help="the ceiling stage's .npz: the table's visible-change row")
    names = ("iou", "scores", "summary", "table", "heatmap", "overlays", "cross_root", "cross_root_table")
    for name in names:
        ap.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    out = {k: getattr(args, k) for k in names}
    try:
        check_and_clear(args.params, [args.prepared, args.models, *out.values()])
        ep = load_section(EvaluateParams, "evaluate", args.params)
        run(args.prepared, args.models, out, ep, args.texture, args.ceiling)
    except (ParamsError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
