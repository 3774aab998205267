"""Train one model per training split named by `train.source`.

    python -m stages.train --prepared data/prepared --models models \
        --live dvclive --curves plots/train/curves.png --checkpoints .checkpoints

Writes models/<split>.pt (best epoch on the training generators' valid split), a DVCLive
log per split and a PNG of the curves. Per-epoch checkpoints go to --checkpoints, which
is not a DVC output: a killed run resumes there, and they are deleted once every split
is done.

With `train.procs: N` > 1 the stage starts itself N times under torchrun (one machine);
started by an outer torchrun (several machines), it uses the world that torchrun made.
`train.distribute` says whether the processes share each batch (DDP) or take whole splits.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import signal
import sys
from pathlib import Path

import torch
from dvclive import Live
from tqdm import tqdm

from localize import torchrun
from localize.atomic import atomic_dir, atomic_file
from localize.config import ParamsError, load_section
from localize.layout import REAL
from localize.models import ModelParams
from localize.plots import training_curves
from localize.preflight import start
from localize.prepared import Prepared
from localize.runtime import pick_device, pick_precision, setup_threads
from localize.splits import resolve_source
from localize.torchrun import SINGLE, Ranks
from localize.training import NonFiniteLoss, TrainParams, batch_slice, fit, run_key


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


def _log_history(live, split: str, history: list[dict]) -> None:
    for row in history:
        _epoch_logger(live, split)(row)


def _epoch_logger(live, split: str):
    """Log one epoch's row under `<split>/...`, at step = epoch (splits train one after another)."""

    def log(row: dict) -> None:
        live.step = row["epoch"]
        live.log_metric(f"{split}/train_loss", row["train_loss"])
        live.log_metric(f"{split}/valid_iou", row["valid_iou"])

    return log


def plan(prepared: Prepared, mp: ModelParams, tp: TrainParams, world: int) -> dict[str, list[str]]:
    """The splits to train, once every setting is known to fit the data and the process count."""
    splits = resolve_source(tp.source, prepared.generators)
    untrainable = [s for s, gens in splits.items() if not any(prepared.has(g, "train") for g in gens)]
    if untrainable:  # refused here, not after the splits before them have trained
        raise ValueError(f"train.source={tp.source}: {', '.join(untrainable)} cannot train, none of its "
                         "generators has train images; choose another train.source or add a train split")
    if mp.arch == "unet-seed" and prepared.size % 4:
        # Two max-pools and two x2 upsamplings: other sizes cannot be concatenated back.
        raise ValueError(f"model.arch unet-seed needs preprocess.size divisible by 4, got {prepared.size}")
    if tp.distribute == "data":
        batch_slice(tp.batch_size, Ranks(world=world))  # fit's check, made before any process starts
    if world > 1 and tp.distribute == "splits" and len(splits) < world:
        raise ValueError(f"train.distribute=splits gives each of {world} processes whole splits, but "
                         f"train.source={tp.source} has {len(splits)}; use train.distribute=data")
    return splits


def run(prepared_dir: Path, models_dir: Path, live_dir: Path, curves: Path, checkpoints: Path,
        mp: ModelParams, tp: TrainParams, ranks: Ranks | None = None) -> dict[str, dict]:
    """Train every split; on rank 0, write the models, curves and DVCLive log.

    Alone, or under torchrun with `train.distribute`: `data`, every process trains every
    split together (DDP); `splits`, process r trains splits r, r + world, ... on its own
    device, and rank 0 gathers them. A split's checkpoints belong to the process that
    writes them: rank 0 in `data`, the split's process in `splits`.
    """
    ranks = ranks or torchrun.from_env()
    prepared = Prepared(prepared_dir)
    splits = plan(prepared, mp, tp, ranks.world)
    threads = setup_threads(tp.threads, processes=ranks.local_world)
    device = torchrun.local_device(pick_device(tp.device), ranks)
    precision = pick_precision(tp.precision, device)
    data_id = data_fingerprint(prepared)
    by_split = tp.distribute == "splits" and ranks.parallel
    group = SINGLE if by_split else ranks  # the processes that train one split together
    mine = [s for i, s in enumerate(splits) if not by_split or i % ranks.world == ranks.rank]
    if ranks.main:
        how = "" if not ranks.parallel else (
            f", {ranks.world} processes, one split each" if by_split else f", {ranks.world} processes (DDP)")
        tqdm.write(f"training {', '.join(splits)} on {device.type} ({precision}, {threads} threads{how}), "
                   f"{mp.arch} at {prepared.size}px")

    torchrun.init(ranks, device)
    try:
        results: dict[str, dict] = {}
        keys = {s: run_key(s, splits[s], mp, tp, data_id, precision, group.world) for s in splits}
        with atomic_dir(live_dir) if ranks.main else contextlib.nullcontext() as live_tmp:
            # DVCLive writes the per-epoch curves that `dvc plots show` draws; no Git commits of its own.
            live = Live(str(live_tmp), save_dvc_exp=False, dvcyaml=None, report=None) if ranks.main else None
            for split in mine:
                gens, key = splits[split], keys[split]
                done = checkpoints / f"{split}-{key}.done.pt"
                if torchrun.broadcast(done.exists() if group.main else None, group):
                    if group.main:  # finished before an interruption
                        results[split] = torch.load(done, weights_only=False)
                        tqdm.write(f"[{split}] already trained before the interruption; reusing {done}")
                        if live is not None:
                            _log_history(live, split, results[split]["history"])
                    continue
                train = [prepared.arrays(g, "train") for g in gens if prepared.has(g, "train")]
                valid = [prepared.arrays(g, "valid") for g in gens if prepared.has(g, "valid")]
                reals = [prepared.arrays(REAL, "train")] if tp.synthetic and prepared.has(REAL, "train") else []
                checkpoints.mkdir(parents=True, exist_ok=True)
                result = fit(split, train, valid, mp, tp, device, precision, real_pairs=reals,
                             checkpoint=checkpoints / f"{split}-{key}.pt",
                             on_epoch=_epoch_logger(live, split) if live is not None else None,
                             group=group, progress=ranks.main)
                if group.main:
                    result.update(split=split, train_generators=gens, size=prepared.size,
                                  model=dataclasses.asdict(mp), precision=precision)
                    with atomic_file(done) as tmp:
                        torch.save(result, tmp)
                    (checkpoints / f"{split}-{key}.pt").unlink(missing_ok=True)
                    results[split] = result
            if by_split:
                gathered = torchrun.gather(results, ranks)
                if ranks.main:
                    for theirs in gathered[1:]:
                        for split, result in theirs.items():
                            _log_history(live, split, result["history"])
                            results[split] = result
                    results = {s: results[s] for s in splits}
            if live is not None:
                live.end()

        if ranks.main:
            with atomic_dir(models_dir) as tmp:
                for split, result in results.items():
                    torch.save(result, tmp / f"{split}.pt")
            curves.parent.mkdir(parents=True, exist_ok=True)
            training_curves({s: r["history"] for s, r in results.items()}, curves)
        # Every output is in place: now each writer may drop its finished splits' resume files.
        torchrun.barrier(ranks)
        if group.main:
            for split in mine:
                (checkpoints / f"{split}-{keys[split]}.done.pt").unlink(missing_ok=True)
    finally:
        torchrun.shutdown()
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
    ranks = torchrun.from_env()
    if ranks.parallel:
        torchrun.die_with_parent(signal.SIGKILL)  # never outlive torchrun
    try:
        start(args.params, [args.prepared, args.models, args.live, args.curves, args.checkpoints])
        tp = load_section(TrainParams, "train", args.params)
        mp = load_section(ModelParams, "model", args.params)
        if tp.procs > 1 and not ranks.parallel:
            # Check what can be checked once, here, rather than in every process.
            plan(Prepared(args.prepared), mp, tp, tp.procs)
            status = torchrun.relaunch_under_torchrun(tp.procs, "stages.train",
                                                         sys.argv[1:] if argv is None else argv)
            if status:
                raise RuntimeError(f"train.procs={tp.procs}: a training process failed "
                                   f"(exit status {status}); its error is above")
            return
        run(args.prepared, args.models, args.live, args.curves, args.checkpoints, mp, tp, ranks)
    except (ParamsError, ValueError, FileNotFoundError, NonFiniteLoss, RuntimeError) as e:
        where = "" if ranks.main else f" (rank {ranks.rank})"
        raise SystemExit(f"error{where}: {e}") from None
    except KeyboardInterrupt:
        # One line, not tracebacks (torchrun's processes stay quiet: the one that started them speaks).
        # Where a rerun picks up: the newest checkpoint, unless a split finished after it.
        hint = "rerun to resume"
        with contextlib.suppress(Exception):
            newest = max((p for p in args.checkpoints.glob("*.pt") if not p.name.startswith(".")),
                         key=lambda p: p.stat().st_mtime)
            if not newest.name.endswith(".done.pt"):
                epoch = torch.load(newest, map_location="cpu", weights_only=False)["state"]["epoch"]
                hint = f"rerun to resume {newest.name.rsplit('-', 1)[0]} from epoch {epoch + 1}"
        if not ranks.parallel:
            print(f"interrupted; {hint}", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
