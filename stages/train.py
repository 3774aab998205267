"""Train one model per training split named by `train.source`.

    python -m stages.train --prepared data/prepared --models models \
        --live dvclive --curves plots/train/curves.png --checkpoints .checkpoints

Writes models/<split>.pt (best epoch on the training generators' valid split), a DVCLive
log per split and a PNG of the curves. Per-epoch checkpoints go to --checkpoints, which
is not a DVC output: a killed run resumes there, and they are deleted once every split
is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

import torch
from dvclive import Live
from tqdm import tqdm

from localize.atomic import atomic_dir
from localize.config import ParamsError, load_section
from localize.layout import REAL
from localize.models import ModelParams
from localize.plots import training_curves
from localize.prepared import Prepared
from localize.runtime import pick_device, pick_precision, setup_threads
from localize.splits import resolve_source
from localize.training import NonFiniteLoss, TrainParams, fit, run_key


def data_fingerprint(prepared: Prepared) -> str:
    """A content hash of what training reads that changes whenever the data does."""
    h = hashlib.sha256(Path(prepared.root, "manifest.json").read_bytes())
    for path in sorted(Path(prepared.root).rglob("*")):
        if path.name in ("ids.txt", "masks.npy"):
            h.update(str(path.relative_to(prepared.root)).encode())
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()


def _epoch_logger(live, split: str):
    """Log one epoch's row under `<split>/...`, at step = epoch (splits train one after another)."""

    def log(row: dict) -> None:
        live.step = row["epoch"]
        live.log_metric(f"{split}/train_loss", row["train_loss"])
        live.log_metric(f"{split}/valid_iou", row["valid_iou"])

    return log


def run(prepared_dir: Path, models_dir: Path, live_dir: Path, curves: Path, checkpoints: Path,
        mp: ModelParams, tp: TrainParams) -> dict[str, dict]:
    prepared = Prepared(prepared_dir)
    splits = resolve_source(tp.source, prepared.generators)
    if mp.arch == "unet-seed" and prepared.size % 4:
        # Two max-pools and two x2 upsamplings: other sizes cannot be concatenated back.
        raise ValueError(f"model.arch unet-seed needs preprocess.size divisible by 4, got {prepared.size}")
    threads = setup_threads(tp.threads)
    device = pick_device(tp.device)
    precision = pick_precision(tp.precision, device)
    data_id = data_fingerprint(prepared)
    tqdm.write(f"training {', '.join(splits)} on {device} ({precision}, {threads} threads), "
               f"{mp.arch} at {prepared.size}px")

    results: dict[str, dict] = {}
    keys = []
    with atomic_dir(live_dir) as live_tmp:
        # DVCLive writes the per-epoch curves that `dvc plots show` draws; no Git commits of its own.
        live = Live(str(live_tmp), save_dvc_exp=False, dvcyaml=None, report=None)
        for split, gens in splits.items():
            key = run_key(split, gens, mp, tp, data_id, precision)
            keys.append(key)
            done = checkpoints / f"{split}-{key}.done.pt"
            if done.exists():  # finished before an interruption
                results[split] = torch.load(done, weights_only=False)
                tqdm.write(f"[{split}] already trained before the interruption; reusing {done}")
                for row in results[split]["history"]:
                    _epoch_logger(live, split)(row)
                continue
            train = [prepared.arrays(g, "train") for g in gens if prepared.has(g, "train")]
            valid = [prepared.arrays(g, "valid") for g in gens if prepared.has(g, "valid")]
            reals = [prepared.arrays(REAL, "train")] if tp.synthetic and prepared.has(REAL, "train") else []
            checkpoints.mkdir(parents=True, exist_ok=True)
            result = fit(split, train, valid, mp, tp, device, precision, real_pairs=reals,
                         checkpoint=checkpoints / f"{split}-{key}.pt", on_epoch=_epoch_logger(live, split))
            result.update(split=split, train_generators=gens, size=prepared.size,
                          model=dataclasses.asdict(mp), precision=precision)
            torch.save(result, done)
            (checkpoints / f"{split}-{key}.pt").unlink(missing_ok=True)
            results[split] = result
        live.end()

    with atomic_dir(models_dir) as tmp:
        for split, result in results.items():
            torch.save(result, tmp / f"{split}.pt")
    curves.parent.mkdir(parents=True, exist_ok=True)
    training_curves({s: r["history"] for s, r in results.items()}, curves)
    for split, key in zip(splits, keys):
        (checkpoints / f"{split}-{key}.done.pt").unlink(missing_ok=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--live", type=Path, required=True)
    ap.add_argument("--curves", type=Path, required=True)
    ap.add_argument("--checkpoints", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    try:
        tp = load_section(TrainParams, "train", args.params)
        mp = load_section(ModelParams, "model", args.params)
        run(args.prepared, args.models, args.live, args.curves, args.checkpoints, mp, tp)
    except (ParamsError, ValueError, FileNotFoundError, NonFiniteLoss, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
