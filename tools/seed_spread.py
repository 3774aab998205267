"""The spread over training seeds: mean ± std of every cell over experiments that differ only in `train.seed`.

    dvc exp run --queue -S 'train.seed=0,1,2' && dvc queue start -j 1    # wait: dvc queue status
    python -m tools.seed_spread --out metrics/reference/seeds $(dvc exp ls --name-only)

Each experiment is read from Git (`metrics/iou.json` and `metrics/summary.json` of its commit),
so the workspace is left alone. Writes `<out>/spread.json` and `<out>/table.md`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import yaml

from localize.atomic import atomic_file


def read_at(rev: str, path: str) -> str:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"error: cannot read {path} of experiment {rev!r}: {proc.stderr.strip()}")
    return proc.stdout


def experiment_commits() -> dict[str, str]:
    """Experiment name -> its commit, for every experiment `dvc exp show` lists (one call for all)."""
    proc = subprocess.run(["dvc", "exp", "show", "--json", "--no-fetch"], capture_output=True, text=True)
    return {exp["name"]: exp["revs"][0]["rev"] for base in json.loads(proc.stdout or "[]")
            for exp in base.get("experiments") or [] if exp.get("name") and exp.get("revs")}


def spread(runs: dict[str, dict]) -> dict:
    """{split: {generator: {"mean", "std", "values"}}} over the runs, and the same for the headline."""
    first = next(iter(runs.values()))
    cells = {split: {g: [r["iou"][split][g] for r in runs.values()] for g in row}
             for split, row in first["iou"].items()}
    head = {k: [r["summary"][k]["iou"] for r in runs.values()] for k in ("in_domain", "held_out")}

    def stats(values: list[float | None]) -> dict:
        v = np.array([np.nan if x is None else x for x in values], dtype=float)
        if np.isnan(v).any():
            return {"mean": None, "std": None, "values": values}
        return {"mean": round(float(v.mean()), 6), "std": round(float(v.std(ddof=1)), 6) if len(v) > 1 else None,
                "values": values}

    return {"seeds": {name: r["seed"] for name, r in runs.items()},
            "cells": {s: {g: stats(v) for g, v in row.items()} for s, row in cells.items()},
            "headline": {k: stats(v) for k, v in head.items()}}


def markdown(result: dict) -> str:
    cells = result["cells"]
    gens = [g for g in next(iter(cells.values())) if g != "mean"]
    lines = [f"IoU ×100, mean ± std over training seeds {sorted(result['seeds'].values())} "
             "(everything else equal).", "",
             "| trained on | " + " | ".join(gens) + " | mean |", "|---" * (len(gens) + 2) + "|"]
    for split, row in cells.items():
        fmt = [f"{100 * row[g]['mean']:.1f} ± {100 * (row[g]['std'] or 0):.1f}" for g in [*gens, "mean"]]
        lines.append(f"| {split} | " + " | ".join(fmt) + " |")
    for k, v in result["headline"].items():
        if v["mean"] is None:
            continue
        lines.append(f"\n{k.replace('_', '-')} mean: {100 * v['mean']:.1f} ± {100 * (v['std'] or 0):.1f} "
                     f"(seeds: {', '.join(f'{100 * x:.1f}' for x in v['values'])})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("experiments", nargs="+", help="experiment names or Git revisions")
    args = ap.parse_args(argv)
    runs, commits = {}, experiment_commits()
    for name in args.experiments:
        rev = commits.get(name, name)  # an experiment name, or any Git revision
        runs[name] = {"iou": json.loads(read_at(rev, "metrics/iou.json")),
                      "summary": json.loads(read_at(rev, "metrics/summary.json")),
                      "seed": yaml.safe_load(read_at(rev, "params.yaml"))["train"]["seed"]}
    result = spread(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "spread.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_file(args.out / "table.md") as tmp:
        tmp.write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
