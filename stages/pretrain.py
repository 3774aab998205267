"""One generator-agnostic starting point that every training split fine-tunes from.

    python -m stages.pretrain --prepared data/prepared --out data/pretrained.pt

Trains the `model` network on self-blended fakes (localize/synthetic.py) made from the *real
training faces only*, with plain real faces beside them, for `pretrain.steps` steps. It never
reads a generator's images, so a leave-one-out split that starts from it has still never seen
its held-out generator. DVC caches the result: `dvc exp run -S train.source=...` pays only for
the fine-tune (`train.init: pretrained`). The last step's weights are kept (there is no valid
set of self-blends to select on, and the fine-tune selects its own best epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from localize.atomic import atomic_file
from localize.config import ParamsError, load_section
from localize.layout import REAL
from localize.models import ModelParams
from localize.params import PretrainParams, TrainParams
from localize.preflight import check_and_clear
from localize.prepared import Prepared
from localize.runtime import Runtime, pick_device, pick_precision, setup_threads
from localize.saved_model import SavedModel
from localize.training import SplitData, fit


def as_train_params(p: PretrainParams) -> TrainParams:
    """The training loop's view of a pretraining run: batches of self-blends and plain reals only."""
    return TrainParams(source="pretrain", epochs=p.epochs, steps_per_epoch=p.steps_per_epoch,
                       batch_size=p.batch_size, lr=p.lr, weight_decay=0.0, loss=p.loss, augment="flip",
                       synthetic=1 - p.real, blends=p.blends, real=p.real, schedule="cosine", supervision="full",
                       degrade=0.0,
                       seed=p.seed, device=p.device, precision=p.precision, threads=None, procs=1,
                       distribute="data", init="scratch")


def pretrain(prepared: Prepared, mp: ModelParams, p: PretrainParams) -> SavedModel:
    if not prepared.has(REAL, "train"):
        raise ValueError(f"{prepared.root}: pretraining makes its fakes from real training faces, and the data "
                         f"has none ({REAL}/train); set train.init: scratch")
    tp = as_train_params(p)
    device = pick_device(p.device)
    rt = Runtime(device, pick_precision(p.precision, device), setup_threads(None))
    reals = [prepared.arrays(REAL, "train")]  # the only arrays this stage reads
    weights, progress = fit("pretrain", SplitData(train=reals, valid=[], real_train=reals), mp, tp, rt)
    return SavedModel(state_dict=weights, best_epoch=progress.epoch, valid_score=float("nan"),
                      history=progress.history, split="pretrain", train_generators=[], size=prepared.size,
                      model=dataclasses.asdict(mp), precision=rt.precision, device=device.type, threads=rt.threads)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    try:
        check_and_clear(args.params, [args.out])
        p = load_section(PretrainParams, "pretrain", args.params)
        mp = load_section(ModelParams, "model", args.params)
        saved = pretrain(Prepared(args.prepared), mp, p)
        with atomic_file(args.out) as tmp:
            saved.save(tmp)
    except (ParamsError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
