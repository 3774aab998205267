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
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dvclive import Live
from tqdm import tqdm

from localize import distributed
from localize.atomic import atomic_dir, atomic_file
from localize.budget import Budget, plan_budget, under_one_pass
from localize.config import ParamsError, load_section
from localize.distributed import SINGLE, Ranks
from localize.layout import FULLY_GENERATED, REAL
from localize.models import PATCH_ARCHS, ModelParams, build_model
from localize.models.patches import grid_size
from localize.plots import training_curves
from localize.preflight import check_and_clear
from localize.prepared import Prepared
from localize.resume import code_fingerprint, parse_resume_path, resume_path
from localize.runtime import Runtime, pick_device, pick_precision, setup_threads
from localize.saved_model import SavedModel, _first_line
from localize.splits import TABLE, resolve_source
from localize.training import NonFiniteLoss, SplitData, TrainParams, batch_slice, checkpoint_epoch, fit, run_key
from localize.training import set_aside as set_aside_file


def data_fingerprint(prepared: Prepared) -> str:
    """A content hash of every prepared file (arrays, ids, manifest): any change to the data changes it."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(prepared.root).rglob("*") if p.is_file()):
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
        for name, value in row.items():  # train_loss and the valid scores, which depend on train.supervision
            if name != "epoch":
                live.log_metric(f"{split}/{name}", value)

    return log


def plan(prepared: Prepared, mp: ModelParams, tp: TrainParams, world: int) -> dict[str, list[str]]:
    """The splits to train, once every setting is known to fit the data and the process count."""
    splits = resolve_source(tp.source, prepared.generators, prepared.has(FULLY_GENERATED, "train"))
    check_supervision(prepared, mp, tp)
    untrainable = [s for s, gens in splits.items() if not any(prepared.has(g, "train") for g in gens)]
    if untrainable:  # refused here, not after the splits before them have trained
        raise ValueError(f"train.source={tp.source}: {', '.join(untrainable)} cannot train, none of its "
                         "generators has train images; choose another train.source or add a train split")
    if mp.arch == "unet-seed" and prepared.size % 4:
        # Two max-pools and two x2 upsamplings: other sizes cannot be concatenated back.
        raise ValueError(f"model.arch unet-seed needs preprocess.size divisible by 4, got {prepared.size}")
    if mp.arch == "unet-hp" and prepared.size < 16:
        raise ValueError(f"model.arch unet-hp pools four times and needs preprocess.size >= 16, got {prepared.size}")
    check_runs_at_size(mp, prepared.size)
    if tp.distribute == "data":
        batch_slice(tp.batch_size, Ranks(world=world))  # fit's check, made before any process starts
    if world > 1 and tp.distribute == "splits" and len(splits) < world:
        raise ValueError(f"train.distribute=splits gives each of {world} processes whole splits, but "
                         f"train.source={tp.source} has {len(splits)}; use train.distribute=data")
    return splits


def check_runs_at_size(mp: ModelParams, size: int) -> None:
    """One blank image through the network at `size`: an architecture that cannot run there is refused
    naming model.arch and preprocess.size, before any split trains (not with torch's shape error)."""
    import torch

    try:
        with torch.inference_mode():
            out = build_model(mp).eval()(torch.zeros(1, 3, size, size))
    except RuntimeError as e:
        raise ValueError(f"model.arch {mp.arch} cannot run at preprocess.size {size} "
                         f"({_first_line(e)}); use a larger preprocess.size") from None
    if out.shape[-2:] != (size, size) and mp.arch not in PATCH_ARCHS:
        raise ValueError(f"model.arch {mp.arch} at preprocess.size {size} gives maps of {tuple(out.shape[-2:])} "
                         "pixels; use a preprocess.size it can pool (e.g. a multiple of 16)")


def budgets(prepared: Prepared, splits: dict[str, list[str]], tp: TrainParams) -> dict[str, Budget]:
    """Each split's planned budget, from the number of its training fakes (the manifest's counts)."""
    return {split: plan_budget(sum(prepared.splits.get(g, {}).get("train", 0) for g in gens), tp)
            for split, gens in splits.items()}


def check_supervision(prepared: Prepared, mp: ModelParams, tp: TrainParams) -> None:
    """Refuse, before any split trains, a supervision the data or the source cannot give."""
    if tp.source == FULLY_GENERATED and tp.supervision != "weak":
        raise ValueError(f"train.source={FULLY_GENERATED} (fully generated faces: every pixel fake, no mask to "
                         "learn from) trains only with train.supervision=weak; with train.supervision=full choose "
                         "a partly inpainted split: " + ", ".join(resolve_source(TABLE, prepared.generators)))
    missing = [f"{REAL}/{s}" for s in ("train", "valid") if not prepared.has(REAL, s)]
    if tp.supervision == "weak" and missing:
        raise ValueError(f"train.supervision=weak learns from image labels, real faces 0 and fakes 1, and needs "
                         f"real faces in {REAL}/train and {REAL}/valid; this data has no {', '.join(missing)}: "
                         "add real faces under data.root, or use train.supervision=full")
    if mp.arch == "patches" and grid_size(prepared.size) < 1:
        raise ValueError(f"model.arch patches needs preprocess.size >= 7 (its unpadded stem), got {prepared.size}")


def assign(splits: dict[str, list[str]], tp: TrainParams, ranks: Ranks) -> tuple[Ranks, list[str]]:
    """The processes that train one split together, and the splits this process trains.

    `data` (or one process): every process trains every split, together (DDP);
    `splits`: process r trains splits r, r + world, ... alone.
    """
    if tp.distribute == "splits" and ranks.parallel:
        return SINGLE, [s for i, s in enumerate(splits) if i % ranks.world == ranks.rank]
    return ranks, list(splits)


@contextlib.contextmanager
def live_log(live_dir: Path, main: bool) -> Iterator[Live | None]:
    """DVCLive's per-epoch curves (what `dvc plots show` draws), on rank 0; no Git commits of its own."""
    if not main:
        yield None
        return
    with atomic_dir(live_dir) as tmp:
        live = Live(str(tmp), save_dvc_exp=False, dvcyaml=None, report=None)
        yield live
        live.end()


@dataclass(frozen=True)
class Trainer:
    """What every split this process trains shares: data, params, device, and where to report."""

    prepared: Prepared
    mp: ModelParams
    tp: TrainParams
    rt: Runtime
    group: Ranks  # the processes that train one split together
    checkpoints: Path
    live: Live | None  # rank 0's DVCLive log
    verbose: bool  # progress bars and epoch lines: on rank 0 of the whole run only

    def train_split(self, split: str, gens: list[str], checkpoint: Path) -> SavedModel:
        prepared, tp = self.prepared, self.tp
        data = SplitData(
            train=[prepared.arrays(g, "train") for g in gens if prepared.has(g, "train")],
            valid=[prepared.arrays(g, "valid") for g in gens if prepared.has(g, "valid")],
            real_valid=[prepared.arrays(REAL, "valid")] if prepared.has(REAL, "valid") else [],
            real_train=[prepared.arrays(REAL, "train")]
            if (tp.synthetic or tp.real or tp.supervision == "weak") and prepared.has(REAL, "train") else [],
        )
        on_epoch = _epoch_logger(self.live, split) if self.live is not None else None
        weights, progress = fit(split, data, self.mp, tp, self.rt, self.group, checkpoint, on_epoch, self.verbose)
        budget = plan_budget(sum(len(images) for images, _ in data.train), tp)
        return SavedModel(state_dict=weights, best_epoch=progress.best_epoch, valid_score=progress.best_score,
                          history=progress.history, split=split, train_generators=gens, size=prepared.size,
                          model=dataclasses.asdict(self.mp), precision=self.rt.precision,
                          device=self.rt.device.type, threads=self.rt.threads,
                          budget=budget.record(progress.steps, progress.stopped))

    def train_splits(self, mine: list[str], splits: dict[str, list[str]], keys: dict[str, str],
                     ) -> dict[str, SavedModel]:
        """Train `mine`; a split finished before an interruption is read back, not retrained."""
        results: dict[str, SavedModel] = {}
        main = self.group.main
        for split in mine:
            checkpoint = resume_path(self.checkpoints, split, keys[split])
            done = resume_path(self.checkpoints, split, keys[split], done=True)
            finished = None
            if main and done.exists():
                try:
                    finished = SavedModel.load(done)
                except ValueError as e:  # truncated or foreign: retrain the split, never fail on every rerun
                    aside = set_aside_file(done)
                    tqdm.write(f"{e}; set aside as {aside.name}, {split} trains again")
            if distributed.broadcast(finished is not None if main else None, self.group):
                if main:
                    results[split] = finished
                    tqdm.write(f"[{split}] already trained before the interruption; reusing {done}")
                    if self.live is not None:
                        _log_history(self.live, split, results[split].history)
                continue
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            result = self.train_split(split, splits[split], checkpoint)
            if main:
                with atomic_file(done) as tmp:
                    result.save(tmp)
                checkpoint.unlink(missing_ok=True)
                results[split] = result
        return results


def write_outputs(results: dict[str, SavedModel], models_dir: Path, curves: Path) -> None:
    with atomic_dir(models_dir) as tmp:
        for split, result in results.items():
            result.save(tmp / f"{split}.pt")
    curves.parent.mkdir(parents=True, exist_ok=True)
    training_curves({s: r.history for s, r in results.items()}, curves)


def run(prepared_dir: Path, models_dir: Path, live_dir: Path, curves: Path, checkpoints: Path,
        mp: ModelParams, tp: TrainParams, ranks: Ranks | None = None) -> dict[str, SavedModel]:
    """Train every split; on rank 0, write the models, curves and DVCLive log.

    A split's checkpoints belong to the process that writes them: rank 0 of its group.
    """
    ranks = ranks or distributed.from_env()
    prepared = Prepared(prepared_dir)
    splits = plan(prepared, mp, tp, ranks.world)
    threads = setup_threads(tp.threads, processes=ranks.local_world)
    device = distributed.local_device(pick_device(tp.device), ranks)
    rt = Runtime(device, pick_precision(tp.precision, device), threads)
    group, mine = assign(splits, tp, ranks)
    if ranks.main:
        how = "" if not ranks.parallel else (
            f", {ranks.world} processes (DDP)" if group.parallel else f", {ranks.world} processes, one split each")
        tqdm.write(f"training {', '.join(splits)} on {device.type} ({rt.precision}, {threads} threads{how}), "
                   f"{mp.arch} at {prepared.size}px")
        warning = under_one_pass(budgets(prepared, splits, tp))
        if warning:
            tqdm.write(warning)

    data_id = data_fingerprint(prepared) + code_fingerprint()
    keys = {s: run_key(s, splits[s], mp, tp, data_id, rt.precision, group.world) for s in splits}
    distributed.init(ranks, device)
    try:
        with live_log(live_dir, ranks.main) as live:
            trainer = Trainer(prepared, mp, tp, rt, group, checkpoints, live, verbose=ranks.main)
            results = trainer.train_splits(mine, splits, keys)
            if not group.parallel and ranks.parallel:  # `splits`: rank 0 collects every process's models
                gathered = distributed.gather(results, ranks)
                if ranks.main:
                    for theirs in gathered[1:]:
                        for split, result in theirs.items():
                            _log_history(live, split, result.history)
                            results[split] = result
                    results = {s: results[s] for s in splits}
        if ranks.main:
            write_outputs(results, models_dir, curves)
        # Every output is in place: now each writer may drop its finished splits' resume files.
        distributed.barrier(ranks)
        if group.main:
            for split in mine:
                resume_path(checkpoints, split, keys[split], done=True).unlink(missing_ok=True)
    finally:
        distributed.shutdown()
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
    ranks = distributed.from_env()
    if ranks.parallel:
        distributed.die_with_parent(signal.SIGKILL)  # never outlive torchrun
    elif os.getppid() != 1:
        # Nor a killed dvc: a run left behind would rewrite models/ after the next repro has finished.
        # SIGTERM is an orderly exit (localize.preflight): the last checkpoint stays, temporaries go.
        distributed.die_with_parent(signal.SIGTERM)
    try:
        check_and_clear(args.params, [args.prepared, args.models, args.live, args.curves, args.checkpoints])
        tp = load_section(TrainParams, "train", args.params)
        mp = load_section(ModelParams, "model", args.params)
        if tp.procs > 1 and not ranks.parallel:
            # Check what can be checked once, here, rather than in every process.
            plan(Prepared(args.prepared), mp, tp, tp.procs)
            status = distributed.relaunch_under_torchrun(tp.procs, "stages.train",
                                                         sys.argv[1:] if argv is None else argv)
            if status:
                raise RuntimeError(f"train.procs={tp.procs}: a training process failed "
                                   f"(exit status {status}); its error is above")
            return
        run(args.prepared, args.models, args.live, args.curves, args.checkpoints, mp, tp, ranks)
    except (ParamsError, ValueError, OSError, NonFiniteLoss, RuntimeError) as e:
        where = "" if ranks.main else f" (rank {ranks.rank})"
        raise SystemExit(f"error{where}: {e}") from None
    except KeyboardInterrupt:
        # One line, not tracebacks (torchrun's processes stay quiet: the one that started them speaks).
        # Where a rerun picks up: the newest checkpoint, unless a split finished after it.
        hint = "rerun to resume"
        with contextlib.suppress(Exception):
            newest = max((p for p in args.checkpoints.iterdir() if parse_resume_path(p)),
                         key=lambda p: p.stat().st_mtime)
            split, _, done = parse_resume_path(newest)
            if not done:
                hint = f"rerun to resume {split} from epoch {checkpoint_epoch(newest) + 1}"
        if not ranks.parallel:
            print(f"interrupted; {hint}", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
