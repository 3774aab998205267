"""What made the difference: the default recipe's changes, one at a time, on one training split.

    python benchmarks/ablation.py [--prepared data/prepared] [--split no-poisson] [--rows r1 r2 ...] [--min-region]

Each row trains `--split` with the stages' own code (localize.training.fit, the `model` and
`train` params of the row: the committed params.yaml's, then the row's overrides) and scores
it with evaluate's code (localize.evaluation.score_model, bootstrap intervals over test images).
It prints, per row: the mean IoU over the split's own generators, the IoU on the generators it
never saw, the share of real test faces left clean, and the training time. Rows run one after
another in one process, so their times compare within the run (a shared machine slows them all).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localize.config import load_section, parse_section  # noqa: E402
from localize.evaluation import Bootstrap, score_model, valid_min_region  # noqa: E402
from localize.inference import with_tta  # noqa: E402
from localize.layout import REAL  # noqa: E402
from localize.models import ModelParams, build_model  # noqa: E402
from localize.params import EvaluateParams, PretrainParams  # noqa: E402
from localize.prepared import Prepared  # noqa: E402
from localize.regions import min_pixels  # noqa: E402
from localize.runtime import Runtime, pick_precision, setup_threads  # noqa: E402
from localize.splits import training_splits  # noqa: E402
from localize.training import SplitData, TrainParams, fit  # noqa: E402
from stages.pretrain import pretrain  # noqa: E402

# The measured budget: 12 epochs x 25 steps (300 steps of batch 16), width 32, one change per row.
BUDGET = {"train.epochs": 12, "train.steps_per_epoch": 25, "model.width": 32}
DEFAULT_RECIPE = {"model.arch": "unet-hp", "train.real": 0.25, "train.loss": "dice-bce", "train.schedule": "cosine",
                  "model.width": 24}
SEED_RECIPE = {"model.arch": "unet-seed", "train.loss": "dice", "train.real": 0.0, "train.schedule": "constant",
               "train.init": "scratch"}
DEFAULT_BUDGET = {"train.epochs": 8, "train.steps_per_epoch": 20, "train.precision": "fp32"}
ROWS = {
    "seed": ("the seed's U-Net and recipe (Dice, no real faces, constant rate)", {}),
    "hp": ("unet-hp instead of unet-seed", {"model.arch": "unet-hp"}),
    "real": ("+ a quarter of each batch real faces", {"model.arch": "unet-hp", "train.real": 0.25}),
    "bce": ("+ Dice + BCE", {"model.arch": "unet-hp", "train.real": 0.25, "train.loss": "dice-bce"}),
    "cosine": ("+ cosine schedule", {"model.arch": "unet-hp", "train.real": 0.25, "train.loss": "dice-bce",
                                     "train.schedule": "cosine"}),
    "width24": ("+ width 24 (the default)", {"model.arch": "unet-hp", "train.real": 0.25,
                                             "train.loss": "dice-bce", "train.schedule": "cosine",
                                             "model.width": 24}),
    "width16": ("width 16 instead", {"model.arch": "unet-hp", "train.real": 0.25, "train.loss": "dice-bce",
                                     "train.schedule": "cosine", "model.width": 16}),
    "dice-cosine": ("Dice alone, real faces, cosine", {"model.arch": "unet-hp", "train.real": 0.25,
                                                      "train.schedule": "cosine"}),
    "real50": ("Dice alone, half real faces, cosine", {"model.arch": "unet-hp", "train.real": 0.5,
                                                      "train.schedule": "cosine"}),
    "tta": ("Dice alone, real faces, cosine + flip averaging", {"model.arch": "unet-hp", "train.real": 0.25,
                                                               "train.schedule": "cosine", "evaluate.tta": "flip"}),
    "steps2x": ("the default recipe, twice the steps (600)", {**DEFAULT_RECIPE, "train.epochs": 24}),
    "steps4x": ("the default recipe, four times the steps (1200)", {**DEFAULT_RECIPE, "train.epochs": 48}),
    "size128": ("the default recipe at 128 px (the demo's native crop)", {**DEFAULT_RECIPE, "preprocess.size": 128}),
    "size128-2x": ("the default recipe at 128 px, twice the steps", {**DEFAULT_RECIPE, "preprocess.size": 128,
                                                                     "train.epochs": 24}),
    # At the default table's budget (8 epochs x 20 steps, width 24, fp32): the levers of unet-tex.
    "hp160": ("the previous default (unet-hp) at this budget", {**DEFAULT_RECIPE, **DEFAULT_BUDGET}),
    "tex-inputs": ("unet-tex-inputs: + the texture baseline's residual statistics as inputs",
                   {**DEFAULT_RECIPE, **DEFAULT_BUDGET, "model.arch": "unet-tex-inputs"}),
    "tex-lr3": ("unet-tex-inputs, learning rate 0.003",
                {**DEFAULT_RECIPE, **DEFAULT_BUDGET, "model.arch": "unet-tex-inputs", "train.lr": 0.003}),
    "tex": ("unet-tex: + a per-pixel head on the statistics", {**DEFAULT_RECIPE, **DEFAULT_BUDGET,
                                                             "model.arch": "unet-tex"}),
    "tex-inputs-pre": ("unet-tex-inputs fine-tuned from the pretrain stage's weights",
                       {**DEFAULT_RECIPE, **DEFAULT_BUDGET, "model.arch": "unet-tex-inputs",
                        "train.init": "pretrained"}),
    "tex-pre": ("unet-tex fine-tuned from the pretrain stage's weights (the default)",
                {**DEFAULT_RECIPE, **DEFAULT_BUDGET, "model.arch": "unet-tex", "train.init": "pretrained"}),
}
TEX_PRE = ROWS["tex-pre"][1]
ROWS.update({
    "syn25": ("tex-pre, a quarter of each fine-tuning batch self-blends", {**TEX_PRE, "train.synthetic": 0.25}),
    "lr2": ("tex-pre, fine-tuning rate 0.002", {**TEX_PRE, "train.lr": 0.002}),
    "pre2x": ("tex-pre, twice the pretraining (1200 steps)", {**TEX_PRE, "pretrain.epochs": 24}),
    "blends5": ("tex-pre, pretrained on five kinds of self-blend (+ resample, noise)",
                {**TEX_PRE, "pretrain.blends": ["blur", "splice", "shift", "resample", "noise"]}),
    "pre400": ("tex-pre, pretrained for 400 steps instead of 600", {**TEX_PRE, "pretrain.epochs": 8}),
    "crop48": ("tex-pre on 48 px crops, 36 steps per epoch instead of 20 (about the same time)",
               {**TEX_PRE, "train.crop": 48, "train.steps_per_epoch": 36}),
    "crop32": ("tex-pre on 32 px crops, 80 steps per epoch instead of 20 (about the same time)",
               {**TEX_PRE, "train.crop": 32, "train.steps_per_epoch": 80}),
    "ft2x": ("tex-pre, twice the fine-tuning steps (320)", {**TEX_PRE, "train.epochs": 16}),
    "ft4x": ("tex-pre, four times the fine-tuning steps (640)", {**TEX_PRE, "train.epochs": 32}),
    "maxbce": ("tex-pre, + a BCE on each image's most confident pixel (train.loss dice-bce-max)",
               {**TEX_PRE, "train.loss": "dice-bce-max"}),
    "crop48-maxbce": ("crop48 with train.loss dice-bce-max",
                      {**TEX_PRE, "train.crop": 48, "train.steps_per_epoch": 36, "train.loss": "dice-bce-max"}),
    "ema9": ("tex-pre, validated and saved as a moving average of its weights, decay 0.9",
             {**TEX_PRE, "train.ema": 0.9}),
    "ema97": ("tex-pre, moving average with decay 0.97", {**TEX_PRE, "train.ema": 0.97}),
    "tex-pre-128": ("tex-pre at 128 px, pretraining included (the demo's native crop; IoU at 128 px)",
                    {**TEX_PRE, "preprocess.size": 128}),
    "tex-pre-128-ctx2": ("tex-pre at 128 px, its U-Net at 64 px (model.context 2): full-resolution statistics "
                         "and per-pixel head, pretraining included (IoU at 128 px)",
                         {**TEX_PRE, "preprocess.size": 128, "model.context": 2}),
    "head1000": ("tex-pre, its per-pixel head first refit alone for 1000 steps (train.head_steps)",
                 {**TEX_PRE, "train.head_steps": 1000}),
    "head1000-128-ctx2": ("tex-pre-128-ctx2 with train.head_steps 1000",
                          {**TEX_PRE, "preprocess.size": 128, "model.context": 2, "train.head_steps": 1000}),
    "head300-128-ctx2": ("tex-pre-128-ctx2 with train.head_steps 300",
                         {**TEX_PRE, "preprocess.size": 128, "model.context": 2, "train.head_steps": 300}),
    "head1000-128-ctx2-degrade": ("head1000-128-ctx2 with each fine-tuning image resized and JPEG re-saved with "
                                  "probability 0.5 (train.degrade), the head refit's sampled images too",
                                  {**TEX_PRE, "preprocess.size": 128, "model.context": 2, "train.head_steps": 1000,
                                   "train.degrade": 0.5}),
    "head1000-real50-128-ctx2": ("head1000-128-ctx2 with half of each batch (and of the refit's pixels) real",
                                 {**TEX_PRE, "preprocess.size": 128, "model.context": 2, "train.head_steps": 1000,
                                  "train.real": 0.5}),
})


@dataclass(frozen=True)
class Row:
    model: ModelParams
    train: TrainParams
    tta: str = "none"
    size: int | None = None  # preprocess.size; None = the --prepared arrays' own
    pretrain: PretrainParams | None = None  # the committed `pretrain` section, for train.init: pretrained


def row_params(params: Path, overrides: dict) -> Row:
    committed = yaml.safe_load(params.read_text())
    sections = {"model": dict(committed["model"]), "train": dict(committed["train"]),
                "pretrain": dict(committed.get("pretrain") or {})}
    other = {}
    for key, value in {**SEED_RECIPE, **BUDGET, **overrides}.items():
        section, name = key.split(".")
        if section in sections:
            sections[section][name] = value
        else:
            other[key] = value
    return Row(parse_section(ModelParams, sections["model"], "model"),
               parse_section(TrainParams, sections["train"], "train"),
               other.get("evaluate.tta", "none"), other.get("preprocess.size"),
               parse_section(PretrainParams, sections["pretrain"], "pretrain"))


def size_and_folder(spec: str) -> tuple[int, Path]:
    """`--prepared-at` values: SIZE=FOLDER."""
    size, sep, folder = spec.partition("=")
    if not sep or not size.isdigit() or not folder:
        raise argparse.ArgumentTypeError(f"{spec!r} is not SIZE=FOLDER (e.g. 128=/tmp/prepared-128)")
    return int(size), Path(folder)


def prepared_at(size: int | None, default: Path, others: dict[int, Path]) -> Prepared:
    """The row's arrays: --prepared, or the --prepared-at folder made at the row's preprocess.size."""
    prepared = Prepared(default)
    if size is None or size == prepared.size:
        return prepared
    if size not in others:
        raise SystemExit(f"this row needs arrays at {size} px: make them with the preprocess stage at "
                         f"preprocess.size={size} (python -m stages.preprocess with that params.yaml) "
                         f"and pass --prepared-at {size}=<its --out folder>")
    return Prepared(others[size])


_PRETRAINED: dict[str, dict] = {}


def pretrained(prepared: Prepared, mp: ModelParams, p: PretrainParams) -> dict:
    """The pretrain stage's weights for this network (once per process and recipe; its time is the first
    row's that needs it)."""
    key = repr((prepared.root.resolve(), mp, p))
    if key not in _PRETRAINED:
        _PRETRAINED[key] = pretrain(prepared, mp, p).state_dict
    return _PRETRAINED[key]


def run_row(prepared: Prepared, split: str, gens: list[str], row: Row, boot: Bootstrap,
            candidates: list[float] | None = None) -> str:
    mp, tp = row.model, row.train
    device = torch.device("cpu")
    rt = Runtime(device, pick_precision(tp.precision, device), setup_threads(tp.threads))
    data = SplitData(train=[prepared.arrays(g, "train") for g in gens],
                     valid=[prepared.arrays(g, "valid") for g in gens],
                     real_valid=[prepared.arrays(REAL, "valid")], real_train=[prepared.arrays(REAL, "train")])
    start = time.perf_counter()
    init = pretrained(prepared, mp, row.pretrain) if tp.init == "pretrained" else None
    weights, _ = fit(split, data, mp, tp, rt, verbose=False, init=init)
    seconds = time.perf_counter() - start
    model = build_model(mp)
    model.load_state_dict(weights)
    model = with_tta(model, row.tta)
    pixels, note = 0, ""
    if candidates:  # evaluate's post-process: the share chosen on the split's valid (localize/regions.py)
        share, _ = valid_min_region(model, prepared, gens, 0.5, candidates, 64)
        pixels = min_pixels(share, prepared.size, prepared.size)
        note = f" | min region {share:g} ({pixels} px)"
    scores = score_model(model, prepared, 0.5, 64, "max", min_region=pixels)

    def cell(chosen: list[str]) -> str:
        if not chosen:
            return "–"
        cells = [(g, scores.ious[g]) for g in chosen]
        low, high = boot.interval(cells)
        return f"{100 * np.mean([v.mean() for _, v in cells]):.1f} ({100 * low:.1f}–{100 * high:.1f})"

    seen = [g for g in scores.ious if g in gens]
    unseen = [g for g in scores.ious if g not in gens]
    clean = (scores.real_flagged == 0).astype(np.float64)
    low, high = boot.interval([(REAL, clean)])
    return (f"{cell(seen)} | {cell(unseen)} | {100 * clean.mean():.1f} ({100 * low:.1f}–{100 * high:.1f}) "
            f"| {seconds:.0f} s{note}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    ap.add_argument("--prepared-at", nargs="*", default=[], metavar="SIZE=FOLDER", type=size_and_folder,
                    help="arrays made at another preprocess.size, for the rows that set one")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--split", default="no-poisson")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--min-region", action="store_true",
                    help="apply evaluate's small-region post-process (evaluate.min_region, chosen on valid)")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    others = dict(args.prepared_at)
    candidates = load_section(EvaluateParams, "evaluate", args.params).min_region if args.min_region else None
    gens = training_splits(Prepared(args.prepared).generators)[args.split]
    print(f"split {args.split}; budget {BUDGET}; IoU x100 with 95% intervals over test images")
    print("| row | what changes | own generators | never seen | real faces clean | training time |")
    print("|---|---|---|---|---|---|")
    for name in args.rows:
        what, overrides = ROWS[name]
        row = row_params(args.params, overrides)
        prepared = prepared_at(row.size, args.prepared, others)
        boot = Bootstrap(prepared, 1000, 0)  # resamples test images by index: the same draws at any size
        print(f"| {name} | {what} | {run_row(prepared, args.split, gens, row, boot, candidates)} |")


if __name__ == "__main__":
    main()
