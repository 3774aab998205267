"""Run a reference recipe and keep its results beside its overrides.

    python -m tools.reference metrics/reference/<name>

`<name>/overrides` holds the recipe: one `key=value` a line (`#` starts a comment), each
passed to `dvc exp run evaluate -S` (up to the table; `--target` names other stages). The
experiment runs in the workspace, like any `dvc exp run`; then its results (RESULTS) are
copied into `<name>/results/`, so the README's tables can cite them. A rerun of the same
overrides on the same data gives the same metrics (seeds come from params). params.yaml is put
back byte for byte afterwards (the experiment keeps its params in its own commit), so the next
recipe starts from the committed params. `--collect` copies the workspace's current results
without running anything; `--compare B C ...` prints the headlines of this and other recipes as
one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from localize.atomic import atomic_dir, atomic_file
from localize.evaluation import percent

# What a reference run keeps: metrics, the table, the heatmap, overlays and curves.
RESULTS = ("metrics/summary.json", "metrics/iou.json", "metrics/scores.json", "metrics/table.md",
           "plots/evaluate/iou_heatmap.png", "plots/evaluate/overlays", "plots/train/curves.png")


# Kept too when the run included the robustness stage (--target evaluate robustness). Only then:
# the workspace always holds these files (the default's are committed), so their presence says nothing.
ROBUSTNESS = ("metrics/robustness.json", "metrics/robustness.md", "plots/robustness")


def read_overrides(path: Path) -> list[str]:
    """`key=value` lines, in order; a clear error names the file and the line otherwise."""
    overrides = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        overrides.append(override(line, f"{path}:{number}: {raw!r}"))
    return overrides


def override(text: str, where: str, spaces_in_key: bool = False) -> str:
    """`text` as a `key=value` override for `dvc exp run -S`, stripped; a clear error names `where`."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value or (" " in key and not spaces_in_key):
        raise ValueError(f"{where} is not `key=value`")
    if key.startswith("-"):
        raise ValueError(f"{where}: a key cannot start with '-'")
    return f"{key}={value}"


def with_sets(overrides: list[str], sets: list[str]) -> list[str]:
    """`overrides` with each `key=value` of `sets` in place of the same key's line (or added at the end)."""
    out = list(overrides)
    for item in sets:
        line = override(item, f"--set {item!r}", spaces_in_key=True)
        key = line.partition("=")[0]
        keys = [o.partition("=")[0] for o in out]
        if key in keys:
            out[keys.index(key)] = line
        else:
            out.append(line)
    return out


def collect(folder: Path, workspace: Path = Path("."), robustness: bool = False) -> None:
    """Copy the workspace's results into `folder`, beside its overrides (all or nothing); with
    `robustness`, the robustness stage's too (the run reproduced that stage)."""
    wanted = [*RESULTS, *(ROBUSTNESS if robustness else ())]
    missing = [r for r in wanted if not (workspace / r).exists()]
    if missing:
        raise FileNotFoundError(f"no results to collect: {', '.join(missing)} missing; run the pipeline first")
    with atomic_dir(folder / "results") as tmp:
        for result in wanted:
            source, target = workspace / result, tmp / Path(result).name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)


HEADLINE_KEYS = {"in_domain": ("iou", "low", "high", "prior"), "held_out": ("iou", "low", "high", "prior"),
                 "real_faces": ("clean",)}


def read_summary(path: Path) -> dict:
    """A recipe's summary.json with every headline key compare() prints; a clear error names the file."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: not a summary (a JSON object with {', '.join(HEADLINE_KEYS)})")
    missing = [f"{part}.{key}" for part, keys in HEADLINE_KEYS.items() for key in keys
               if not isinstance(summary.get(part), dict) or key not in summary[part]]
    if missing:
        raise ValueError(f"{path}: a partial summary, without {', '.join(missing)}")
    return summary


def compare(folders: list[Path]) -> str:
    """A Markdown table of the recipes' headlines (each `<folder>/results/summary.json`, or
    `<folder>/summary.json` for the default's `metrics`), IoU ×100. A corrupt or partial summary is a
    ValueError that names it."""
    lines = ["| recipe | in-domain IoU | held-out IoU | prior (in-domain / held-out) | real faces clean "
             "| detection AUC in-domain | detection AUC held-out |", "|---" * 7 + "|"]
    for folder in folders:
        # A reference keeps its summary under results/; `metrics` itself is the default's.
        reference = (folder / "results" / "summary.json").exists()
        if not reference and not (folder / "summary.json").exists():
            continue  # not a recipe with results (e.g. the seed spread's folder)
        path = folder / "results" / "summary.json" if reference else folder / "summary.json"
        s = read_summary(path)
        name = folder.name if reference else "default (`dvc repro`)"
        ind, out, real = s["in_domain"], s["held_out"], s["real_faces"]
        try:
            lines.append(f"| {name} | {percent(ind['iou'], [ind['low'], ind['high']])} "
                         f"| {percent(out['iou'], [out['low'], out['high']])} "
                         f"| {percent(ind['prior'])} / {percent(out['prior'])} "
                         f"| {percent(real['clean'], real.get('clean_ci'))} "
                         f"| {percent(ind.get('auc'), ind.get('auc_ci'))} "
                         f"| {percent(out.get('auc'), out.get('auc_ci'))} |")
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise ValueError(f"{path}: a headline value is not a score or an interval ({type(e).__name__}: "
                             f"{str(e)[:80]})") from None
    return "\n".join(lines) + "\n"


def run_keeping_params(command: list[str], params: Path = Path("params.yaml")) -> int:
    """Run `command` (a `dvc exp run -S ...`, which writes its overrides into params.yaml) and put
    params.yaml back byte for byte afterwards, on success, failure or Ctrl-C alike, so the next
    recipe starts from the committed params. The experiment keeps its params in its own commit."""
    original = params.read_bytes()
    try:
        return subprocess.run(command).returncode
    finally:
        if not params.exists() or params.read_bytes() != original:
            with atomic_file(params) as tmp:
                tmp.write_bytes(original)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="metrics/reference/<name>, holding `overrides`")
    ap.add_argument("--collect", action="store_true",
                    help="only copy the workspace's results (with --target evaluate robustness, that stage's too)")
    ap.add_argument("--target", nargs="+", default=["evaluate"],
                    help="the stages to reproduce (default evaluate: the table, not the robustness sweep; "
                         "`evaluate robustness` for both: robustness does not depend on evaluate)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                    help="replace (or add) one of the recipe's overrides, e.g. --set data.root=/data/dolos/celebahq")
    ap.add_argument("--compare", nargs="*", type=Path, default=None, metavar="FOLDER",
                    help="print a Markdown table of these recipes' headlines beside the first folder's")
    args = ap.parse_args(argv)
    if args.compare is not None:
        try:
            print(compare([args.folder, *args.compare]), end="")
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        return
    try:
        overrides = with_sets(read_overrides(args.folder / "overrides"), args.sets)
        bad = [t for t in args.target if t.startswith("-") or not t.strip()]
        if bad:
            raise ValueError(f"--target {bad[0]!r}: a stage name, not an option")
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    if not args.collect:
        # A recipe is the committed params plus its overrides, not whatever the last experiment left.
        if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "params.yaml"]).returncode:
            raise SystemExit("error: params.yaml differs from the commit; a reference recipe starts from the "
                             "committed params (git checkout params.yaml)")
        command = ["dvc", "exp", "run", *args.target, *[a for o in overrides for a in ("-S", o)]]
        print("running:", " ".join(command), flush=True)
        if run_keeping_params(command):
            raise SystemExit(f"error: {' '.join(command)} failed; nothing collected")
    try:
        collect(args.folder, robustness="robustness" in args.target)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"results of {' '.join(overrides)} in {args.folder / 'results'}")


if __name__ == "__main__":
    main()
