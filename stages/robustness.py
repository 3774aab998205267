"""Stage `robustness`: score the models on post-processed copies of the test images.

    python -m stages.robustness --index data/index.csv --prepared data/prepared --models models \
        --headline metrics/robustness.json --detail metrics/robustness_detail.json \
        --table metrics/robustness.md --plots plots/robustness

Each perturbation of `robustness.sweep` (JPEG re-save, downscale and back, Gaussian blur,
Gaussian noise: localize/degrade.py) is applied where it happens in the wild, to the source
file at its own resolution, and the result is then resized to the prepared size with the
function preprocess uses (localize.imageio's `resize_image`, area when shrinking). Every
source PNG is decoded once, every perturbation applied to that one decode, so the decode
cost is paid once per image however long the sweep. The `clean` row goes down the same
path with no perturbation, and so equals data/prepared byte for byte (tested).

Perturbed arrays live in a temporary folder under the system's temp dir, in preprocess's
format, and are deleted at the end: nothing is written into data/prepared, so the clean
table cannot change. Masks are the prepared ones: no perturbation moves a pixel.

Scoring is evaluate's: localize.evaluation's `score_model` (IoU at the evaluate threshold,
the real-face column, AP) and `Bootstrap` (the same resamples of the same test images for
every model and every perturbation), so cells compare with each other and with the clean one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from localize.atomic import atomic_dir, atomic_file, atomic_outputs, temp_dir
from localize.config import ParamsError, load_section
from localize.degrade import apply
from localize.evaluation import Bootstrap, percent, score_model, score_record, test_generators, valid_min_region
from localize.imageio import load_rgb, resize_image
from localize.index_csv import read_index
from localize.layout import REAL
from localize.params import CLEAN, RobustnessParams, label
from localize.plots import robustness_curves
from localize.preflight import check_and_clear
from localize.prepared import Prepared
from localize.preprocessing import create_npy, init_worker, write_at
from localize.process_pool import ordered_map
from localize.regions import min_pixels
from localize.runtime import available_cores, setup_threads
from localize.saved_model import load_model

# ---- perturbed copies of the test sets: one decode per source image, in worker processes ----


def perturb_source(task: tuple) -> None:
    """Decode one source image, apply every perturbation at its resolution, resize each as preprocess
    does, and write each into its perturbation's images.npy at the row's offset."""
    path, width, height, size, key, seed, cells, targets = task
    rgb = load_rgb(path, max_pixels=width * height, expected=(width, height))
    for k, ((kind, strength), (file, offset)) in enumerate(zip(cells, targets)):
        # Noise seeded by (seed, image, perturbation): the same whatever the worker or the order.
        rng = np.random.default_rng([seed, zlib.crc32(key.encode()), k])
        out = rgb if kind == CLEAN else apply(rgb, kind, strength, rng)
        write_at(file, offset, np.ascontiguousarray(resize_image(out, size, size)))


def _sources(index_path: Path, prepared: Prepared, names: list[str], limit: int | None) -> dict[str, list]:
    """name -> [(id, image path, width, height)] of its test images, in prepared's order."""
    index = read_index(index_path)
    test = index[index["split"] == "test"].set_index(["generator", "id"])
    out = {}
    for name in names:
        ids = prepared.ids(name, "test")[:limit]
        try:
            rows = test.loc[[(name, i) for i in ids]]
        except KeyError:
            raise ValueError(f"{index_path}: does not list every prepared {name}/test image; rerun the pipeline") \
                from None
        out[name] = [(i, r.image, int(r.width), int(r.height)) for i, r in zip(ids, rows.itertuples())]
    return out


def build_perturbed(index_path: Path, prepared: Prepared, rp: RobustnessParams, tmp: Path) -> dict[str, Prepared]:
    """Perturbed copies of every test set, in preprocess's format under `tmp`: label -> Prepared."""
    names = [*test_generators(prepared), *([REAL] if prepared.has(REAL, "test") else [])]
    sources = _sources(index_path, prepared, names, rp.max_images)
    cells, size = rp.cells(), prepared.size
    tasks = []
    for kind, strength in cells:
        root = tmp / label(kind, strength)
        for name in names:
            (root / name / "test").mkdir(parents=True)
    for name in names:
        n = len(sources[name])
        masks = np.asarray(prepared.arrays(name, "test")[1][:n])
        offsets = []
        for kind, strength in cells:
            folder = tmp / label(kind, strength) / name / "test"
            np.save(folder / "masks.npy", masks)
            (folder / "ids.txt").write_text("".join(f"{i}\n" for i, *_ in sources[name]))
            offsets.append((str(folder / "images.npy"), create_npy(folder / "images.npy", (n, size, size, 3))))
        for k, (i, image, width, height) in enumerate(sources[name]):
            targets = [(file, at + k * size * size * 3) for file, at in offsets]
            tasks.append((image, width, height, size, f"{name}/{i}", rp.seed, cells, targets))
    for _ in ordered_map(perturb_source, tasks, rp.workers or available_cores(), max_chunk=8,
                         initializer=init_worker):
        pass
    manifest = {"size": size, "generators": [n for n in names if n != REAL],
                "splits": {name: {"test": len(sources[name])} for name in names}}
    out = {}
    for kind, strength in cells:
        root = tmp / label(kind, strength)
        (root / "manifest.json").write_text(json.dumps(manifest))
        out[label(kind, strength)] = Prepared(root)
    print(f"robustness: {len(tasks)} source images decoded once each, {len(cells)} versions of each",
          file=sys.stderr)
    return out


# ---- scoring ----


def chosen_models(models_dir: Path, prepared: Prepared, wanted: str | list[str]) -> list[Path]:
    files = {p.stem: p for p in sorted(models_dir.glob("*.pt"))}
    if not files:
        raise FileNotFoundError(f"{models_dir}: no trained models (*.pt) to score")
    if wanted == "all":
        return list(files.values())
    if wanted == "single":
        picked = [files[g] for g in prepared.generators if g in files]
        return picked or list(files.values())  # a single-split run (`train.source=no-x`): score what is there
    unknown = [m for m in wanted if m not in files]
    if unknown:
        raise ValueError(f"robustness.models: no trained model for {', '.join(unknown)}; "
                         f"trained: {', '.join(files)}")
    return [files[m] for m in wanted]


def score_sweep(sets: dict[str, Prepared], model_files: list[Path], rp: RobustnessParams,
                home: Prepared) -> dict:
    """{model: {perturbation label: score_record}}, every model on every perturbed copy, each with the
    min region chosen on its clean valid split of `home` (as evaluate chooses it)."""
    boot = Bootstrap(sets[CLEAN], rp.bootstrap, rp.seed)  # same images in every copy: same resamples
    out: dict = {}
    for path in model_files:
        model, saved = load_model(path)
        if saved.size != sets[CLEAN].size:
            raise ValueError(f"{path}: trained at {saved.size}px but the prepared data is {sets[CLEAN].size}px")
        out[saved.split] = {}
        share, _ = valid_min_region(model, home, saved.train_generators, rp.threshold, rp.min_region, rp.batch_size)
        pixels = min_pixels(share, home.size, home.size)
        for name, prepared in sets.items():
            scores = score_model(model, prepared, rp.threshold, rp.batch_size, rp.detection_score,
                                 min_region=pixels)
            out[saved.split][name] = score_record(scores, boot)
        row = "  ".join(f"{n} {100 * r['iou']:.1f}" for n, r in out[saved.split].items())
        print(f"{saved.split:>20}: {row}", file=sys.stderr)
    return out


def headline(detail: dict) -> dict:
    """The DVC metric: per perturbation, the mean IoU of the scored models (one number each)."""
    labels = next(iter(detail.values()))
    return {"mean_iou": {lab: round(float(np.mean([m[lab]["iou"] for m in detail.values()])), 6) for lab in labels}}


def markdown(detail: dict) -> str:
    labels = list(next(iter(detail.values())))
    lines = ["| model | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for model, row in detail.items():
        cells = [percent(row[lab]["iou"], row[lab]["iou_ci"]) for lab in labels]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for model, row in detail.items():
        lines.append(f"| {model}: real faces clean | "
                     + " | ".join(percent(row[lab]["real_clean"], row[lab]["real_clean_ci"]) for lab in labels) + " |")
    return ("\n".join(lines) + "\n\nIoU ×100, mean over test generators, with 95% bootstrap intervals over test "
            "images; the last rows: share of real test faces with no pixel flagged ×100.\n")


def write_plots(detail: dict, rp: RobustnessParams, folder: Path) -> None:
    with atomic_dir(folder) as tmp:
        for kind, strengths in rp.sweep.items():
            curves = {m: [row[label(kind, float(s))]["iou"] for s in strengths] for m, row in detail.items()}
            clean = {m: row[CLEAN]["iou"] for m, row in detail.items()}
            robustness_curves(kind, [float(s) for s in strengths], curves, clean, tmp / f"{kind}.png")


def write_json(path: Path, obj: dict) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def run(index_path: Path, prepared_dir: Path, models_dir: Path, out: dict[str, Path], rp: RobustnessParams) -> dict:
    began = time.monotonic()
    prepared = Prepared(prepared_dir)
    model_files = chosen_models(models_dir, prepared, rp.models)
    for path in model_files:  # every model checked before the sweep's work, not after it
        _, saved = load_model(path)
        if saved.size != prepared.size:
            raise ValueError(f"{path}: trained at {saved.size}px but the prepared data is {prepared.size}px")
    # The system's temp dir, never data/prepared: the perturbed copies are gone when this returns.
    with temp_dir("robustness") as tmp:
        sets = build_perturbed(index_path, prepared, rp, Path(tmp))
        decoded = time.monotonic() - began
        setup_threads(None)  # after the worker processes: inference then takes every core
        detail = score_sweep(sets, model_files, rp, prepared)
        images = {n: c["test"] for n, c in sets[CLEAN].splits.items()}
    seconds = time.monotonic() - began
    # All or nothing: every output to a temporary beside it, moved in together once all are written.
    with atomic_outputs([out["detail"], out["headline"], out["table"]], [out["plots"]]) as tmp:
        # No wall-clock seconds in the file (printed below): the same inputs give the same bytes.
        write_json(tmp[out["detail"]], {"images": images, "models": detail})
        write_json(tmp[out["headline"]], headline(detail))
        tmp[out["table"]].write_text(markdown(detail))
        write_plots(detail, rp, tmp[out["plots"]])
    print(f"robustness: {len(model_files)} model(s) x {len(sets)} versions in {seconds:.0f} s "
          f"(decode and perturb {decoded:.0f} s)", file=sys.stderr)
    return detail


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("index", "prepared", "models", "headline", "detail", "table", "plots"):
        ap.add_argument(f"--{name}", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    out = {k: getattr(args, k) for k in ("headline", "detail", "table", "plots")}
    try:
        check_and_clear(args.params, [args.prepared, args.models, *out.values()])
        rp = load_section(RobustnessParams, "robustness", args.params)
        run(args.index, args.prepared, args.models, out, rp)
    except (ParamsError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
