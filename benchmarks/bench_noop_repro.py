"""How long `dvc repro` takes when everything is up to date (issue 5: noop_repro_s <= 3 s).

    python benchmarks/bench_noop_repro.py --repo /tmp/noop-bench --clone-from . --tiny
    python benchmarks/bench_noop_repro.py --repo /tmp/noop-bench          # reuse a built copy
    python benchmarks/bench_noop_repro.py --repo /tmp/noop-wt --clone-from . --with-uncommitted --tiny

Never point --repo at a working tree someone is using: the benchmark runs `dvc repro`
there. --clone-from makes a scratch copy with `git clone` (committed files only); --tiny
shrinks params.yaml in that copy so the first, real `dvc repro` that builds the outputs
takes seconds, not an hour. The no-op runs are then timed (one untimed warm-up first)
and each is checked to have run no stage: a stage that reruns without a change is a bug
in the pipeline, and the benchmark says which one.

The last line is `noop_repro_s=<median seconds>` (nan with status=... when it could not
be measured).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Keys set by --tiny, applied only where the copy's params.yaml already has them, so the
# stages' strict params validation never sees a key it does not know.
TINY = {
    "demo": {"size": 32, "max_faces": 24},
    "preprocess": {"size": 16},
    "model": {"width": 4},
    "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4},
    "evaluate": {"overlay_images": 2},
}


def dvc_command(explicit: str | None) -> list[str]:
    if explicit:
        return explicit.split()
    exe = shutil.which("dvc")  # what a user types; a pyenv shim costs a little, as it does for them
    return [exe] if exe else [sys.executable, "-m", "dvc"]


def run(cmd: list[str], cwd: Path, timeout: float) -> tuple[int, str, float]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}  # the machines have no internet to report to
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n(timed out after {timeout:.0f} s)", time.perf_counter() - start
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def edit_params(path: Path, tiny: bool, forced: list[str]) -> list[str]:
    """Apply TINY (to keys that exist) and `section.key=value` overrides; return what changed."""
    import yaml

    params = yaml.safe_load(path.read_text()) or {}
    changed = []
    if tiny:
        for section, values in TINY.items():
            for key, value in values.items():
                if isinstance(params.get(section), dict) and key in params[section] \
                        and not any(f.startswith(f"{section}.{key}=") for f in forced):
                    params[section][key] = value
                    changed.append(f"{section}.{key}={value}")
    for item in forced:
        name, _, text = item.partition("=")
        section, _, key = name.partition(".")
        if not (section and key and _):
            raise SystemExit(f"error: --set {item!r}: expected section.key=value")
        params.setdefault(section, {})[key] = yaml.safe_load(text)
        changed.append(item)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return changed


def copy_uncommitted(src: Path, dst: Path, skip: list[str]) -> list[str]:
    """Modified and untracked, not ignored, files of `src` into `dst` (read-only on `src`).

    Top-level folders in `skip` (pipeline outputs that are not yet ignored) stay behind:
    the copy must build its own outputs.
    """
    listing = subprocess.run(["git", "ls-files", "-z", "--modified", "--others", "--exclude-standard"],
                             cwd=src, capture_output=True, check=True).stdout.decode()
    copied = []
    for name in sorted(set(filter(None, listing.split("\0")))):
        if name.split("/")[0] in skip:
            continue
        if (src / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied


def give_up(status: str, message: str) -> None:
    print(message, flush=True)
    print(f"noop_repro_s=nan status={status}", flush=True)
    raise SystemExit(1)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True, help="the scratch copy to run dvc in")
    ap.add_argument("--clone-from", type=Path, help="git clone this repository into --repo first")
    ap.add_argument("--with-uncommitted", action="store_true",
                    help="also copy --clone-from's modified and untracked (not ignored) files: the working "
                         "tree as it is now, for a pipeline not yet committed")
    outputs = ["data", "models", "metrics", "plots", "dvclive", ".checkpoints"]
    ap.add_argument("--skip", nargs="*", default=outputs,
                    help="top-level folders --with-uncommitted does not copy (pipeline outputs)")
    ap.add_argument("--tiny", action="store_true", help="shrink params.yaml in --repo before building")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="set a params.yaml key in --repo, even one --tiny leaves alone (repeatable)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--build-timeout", type=float, default=1800, help="seconds for the first, real repro")
    ap.add_argument("--dvc", help="the dvc command to time (default: `dvc` on PATH)")
    ap.add_argument("--quick", action="store_true", help="2 timed runs")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    dvc = dvc_command(args.dvc)
    repo = args.repo.resolve()

    if args.clone_from:
        if repo.exists():
            give_up("repo_exists", f"error: {repo} exists; remove it or drop --clone-from to reuse it")
        clone = ["git", "clone", "--quiet", str(args.clone_from.resolve()), str(repo)]
        code, out, _ = run(clone, Path.cwd(), 300)
        if code:
            give_up("clone_failed", f"error: git clone failed:\n{tail(out)}")
        commit = run(["git", "rev-parse", "--short", "HEAD"], repo, 30)[1].strip()
        print(f"cloned {args.clone_from} at {commit} into {repo}")
        if args.with_uncommitted:
            copied = copy_uncommitted(args.clone_from.resolve(), repo, args.skip)
            print(f"copied {len(copied)} uncommitted file(s): {' '.join(copied)}")
    if not (repo / "dvc.yaml").exists():
        give_up("no_pipeline", f"error: {repo} has no dvc.yaml")
    if args.tiny or args.set:
        changed = edit_params(repo / "params.yaml", args.tiny, args.set)
        print("params changed in the copy: " + (", ".join(changed) or "none"))

    # The real build (or nothing, on a copy built before), then an untimed warm-up no-op.
    code, out, seconds = run([*dvc, "repro"], repo, args.build_timeout)
    if code:
        give_up("build_failed", f"error: the first `dvc repro` in {repo} failed (exit {code}) after "
                                f"{seconds:.0f} s; the committed pipeline cannot run yet:\n{tail(out)}")
    ran = re.findall(r"Running stage '([^']+)'", out)
    print(f"build: {seconds:.1f} s, ran {', '.join(ran) or 'nothing (already built)'}")

    times, reran = [], set()
    for k in range(repeats + 1):
        code, out, seconds = run([*dvc, "repro"], repo, 600)
        if code:
            give_up("noop_failed", f"error: a no-op `dvc repro` failed (exit {code}):\n{tail(out)}")
        stages = re.findall(r"Running stage '([^']+)'", out)
        reran.update(stages)
        label = "warm-up" if k == 0 else f"run {k}"
        print(f"{label}: {seconds:.2f} s" + (f"  (reran {', '.join(stages)}!)" if stages else ""))
        if k:
            times.append(seconds)

    noop = statistics.median(times)
    print(f"dvc repro, nothing to do: median {noop:.2f} s over {len(times)} runs "
          f"[{min(times):.2f}..{max(times):.2f}] ({' '.join(dvc)})")
    if reran:
        print(f"NOT a no-op: {', '.join(sorted(reran))} reran without any change; the pipeline is unstable")
    print(f"goal noop_repro_s <= 3: {'met' if noop <= 3 and not reran else 'NOT met'}")
    status = "ok" if not reran else "stages_reran"
    print(f"noop_repro_s={noop:.3g} runs={len(times)} status={status}")


if __name__ == "__main__":
    main()
