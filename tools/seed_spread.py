"""The spread over seeds: mean ± std of every cell over experiments that differ only in `train.seed`
(and `pretrain.seed`, which the table's header then names beside it).

    dvc exp run --queue -S 'train.seed=0,1,2' && dvc queue start -j 1    # wait: dvc queue status
    python -m tools.seed_spread --out metrics/reference/seeds $(dvc exp ls --name-only)

Each experiment is read from Git (`metrics/iou.json` and `metrics/summary.json` of its commit),
so the workspace is left alone. Writes `<out>/spread.json` and `<out>/table.md`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import NoReturn

import numpy as np
import yaml

from localize.atomic import atomic_file

GIT_MIN = (2, 24)  # the first Git with --end-of-options: a revision is never read as an option


def fail(message: str) -> NoReturn:
    raise SystemExit(f"error: {message}")


def check_git() -> None:
    """Git must be there and know --end-of-options."""
    try:
        proc = subprocess.run(["git", "version"], capture_output=True, text=True)
    except OSError as e:
        fail(f"cannot run git: {e}")
    found = re.search(r"(\d+)\.(\d+)", proc.stdout)
    if proc.returncode or not found or tuple(map(int, found.groups())) < GIT_MIN:
        fail(f"git {'.'.join(map(str, GIT_MIN))} or newer is needed (--end-of-options); found "
             f"{proc.stdout.strip()[:80] or 'none'!r}")


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, encoding="utf-8", errors="replace")


def first_line(text: str) -> str:
    return (text.strip().splitlines() or ["git failed"])[0][:200]


def commit_of(name: str, rev: str) -> str:
    """The commit that `rev` names; an unknown revision, or one that looks like an option, is refused."""
    if rev.startswith("-"):
        fail(f"experiment {name!r}: a revision cannot start with '-'")
    proc = git("log", "-1", "--no-walk", "--format=%H", "--end-of-options", rev, "--")
    if proc.returncode or not proc.stdout.strip():
        fail(f"experiment {name!r}: unknown revision {rev!r} (not an experiment name nor a Git commit): "
             f"{first_line(proc.stderr)}")
    return proc.stdout.strip()


def read_at(name: str, commit: str, path: str) -> str:
    proc = git("show", "--end-of-options", f"{commit}:{path}")
    if proc.returncode:
        fail(f"experiment {name!r} ({commit[:12]}): cannot read {path}: {first_line(proc.stderr)}")
    return proc.stdout


def json_at(name: str, commit: str, path: str):
    try:
        return json.loads(read_at(name, commit, path))
    except json.JSONDecodeError as e:
        fail(f"experiment {name!r} ({commit[:12]}): {path} is not valid JSON ({e})")


def is_score(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def load_run(name: str, rev: str) -> dict:
    """One experiment's table, headline and seed, checked so that spread() cannot fail on it."""
    commit = commit_of(name, rev)
    where = f"experiment {name!r} ({commit[:12]})"
    iou = json_at(name, commit, "metrics/iou.json")
    if not isinstance(iou, dict) or not iou or not all(
            isinstance(row, dict) and row and all(is_score(v) for v in row.values()) for row in iou.values()):
        fail(f"{where}: metrics/iou.json is not a table {{split: {{generator: iou}}}}")
    summary = json_at(name, commit, "metrics/summary.json")
    for key in ("in_domain", "held_out"):
        part = summary.get(key) if isinstance(summary, dict) else None
        if not isinstance(part, dict) or "iou" not in part or not is_score(part["iou"]):
            fail(f"{where}: metrics/summary.json has no {key}.iou score")
    try:
        params = yaml.safe_load(read_at(name, commit, "params.yaml"))
    except yaml.YAMLError as e:
        fail(f"{where}: params.yaml is not valid YAML ({first_line(str(e))})")
    train = params.get("train") if isinstance(params, dict) else None
    seed = train.get("seed") if isinstance(train, dict) else None
    if not isinstance(seed, int) or isinstance(seed, bool):
        fail(f"{where}: params.yaml has no integer train.seed")
    pretrain = params.get("pretrain") if isinstance(params, dict) else None
    pretrain_seed = pretrain.get("seed") if isinstance(pretrain, dict) else None  # None: no pretrain section
    return {"iou": iou, "summary": summary, "seed": seed, "pretrain_seed": pretrain_seed}


def experiment_commits() -> dict[str, str]:
    """Experiment name -> its commit, for every experiment `dvc exp show` lists (one call for all);
    none where DVC cannot say (not a DVC repo, no experiments)."""
    try:
        proc = subprocess.run(["dvc", "exp", "show", "--json", "--no-fetch"], capture_output=True, text=True)
        return {exp["name"]: exp["revs"][0]["rev"] for base in json.loads(proc.stdout or "[]")
                for exp in base.get("experiments") or [] if exp.get("name") and exp.get("revs")}
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {}


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
            "pretrain_seeds": {name: r.get("pretrain_seed") for name, r in runs.items()},
            "cells": {s: {g: stats(v) for g, v in row.items()} for s, row in cells.items()},
            "headline": {k: stats(v) for k, v in head.items()}}


def seeds_line(result: dict) -> str:
    """`training seeds [0, 1, 2]`, or, where the pretraining seed varied too, both seeds of each run."""
    pretrain = result.get("pretrain_seeds") or {}
    if len(set(pretrain.values())) <= 1:
        return f"training seeds {sorted(result['seeds'].values())}"
    pairs = sorted((result["seeds"][name], pretrain[name]) for name in result["seeds"])
    return "seeds (train.seed / pretrain.seed) " + ", ".join(f"{t} / {p}" for t, p in pairs)


def markdown(result: dict) -> str:
    cells = result["cells"]
    gens = [g for g in next(iter(cells.values())) if g != "mean"]
    lines = [f"IoU ×100, mean ± std over {seeds_line(result)} (everything else equal).", "",
             "| trained on | " + " | ".join(gens) + " | mean |", "|---" * (len(gens) + 2) + "|"]
    for split, row in cells.items():
        fmt = [f"{100 * row[g]['mean']:.1f} ± {100 * (row[g]['std'] or 0):.1f}" if row[g]["mean"] is not None
               else "–" for g in [*gens, "mean"]]  # – : a run without this score
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
    if args.out.exists() and not args.out.is_dir():
        fail(f"--out {args.out}: exists and is not a folder")
    check_git()
    runs, commits = {}, experiment_commits()
    for name in args.experiments:
        runs[name] = load_run(name, commits.get(name, name))  # an experiment name, or any Git revision
    first_name, first = next(iter(runs.items()))
    shape = {split: sorted(row) for split, row in first["iou"].items()}
    for name, run in runs.items():
        if {split: sorted(row) for split, row in run["iou"].items()} != shape:
            fail(f"experiment {name!r}: metrics/iou.json has other splits or generators than {first_name!r}")
    result = spread(runs)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        with atomic_file(args.out / "spread.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        with atomic_file(args.out / "table.md") as tmp:
            tmp.write_text(markdown(result))
    except OSError as e:
        fail(f"--out {args.out}: cannot write: {e}")
    print(markdown(result))

if __name__ == "__main__":
    main()
