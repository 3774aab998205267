"""Benchmark: the texture baseline's cells and time at several settings, in one process.

    python benchmarks/bench_texture.py                     # the committed setting against 300 x 0.1 x 31
    python benchmarks/bench_texture.py --splits telea no-telea --settings 100,0.2,63,2 100,0.2,63 300,0.1,31

For each setting (iterations, learning rate, leaves, stride; every other `texture` param as committed)
and each split, fits the baseline with the stage's own code (stages.texture.score_split: fit,
threshold on valid, score every test set) on the prepared arrays and prints the mean IoU ×100
of every test generator and the split's time. The settings run one after the other in one
process, so their times compare as a ratio (a shared machine slows both). The last line is
`time_ratio=<slowest / fastest> max_cell_difference=<points>` (the largest difference of a cell
from the first setting's). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localize.config import load_section  # noqa: E402
from localize.params import TextureParams  # noqa: E402
from localize.prepared import Prepared  # noqa: E402
from localize.runtime import setup_threads  # noqa: E402
from localize.splits import training_splits  # noqa: E402
from stages.texture import score_split  # noqa: E402


def setting(spec: str) -> tuple[int, float, int, int]:
    try:
        iterations, rate, leaves, *stride = spec.split(",")
        if len(stride) > 1:
            raise ValueError
        return int(iterations), float(rate), int(leaves), int(stride[0]) if stride else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r} is not ITERATIONS,RATE,LEAVES[,STRIDE] (e.g. 300,0.1,31)") from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--splits", nargs="+", default=["poisson", "no-patchmatch"])
    ap.add_argument("--settings", nargs="+", type=setting, default=None,
                    help="ITERATIONS,RATE,LEAVES[,STRIDE] each; default: the committed setting and 300,0.1,31")
    args = ap.parse_args(argv)
    committed = load_section(TextureParams, "texture", args.params)
    settings = args.settings or [(committed.iterations, committed.learning_rate, committed.leaves, committed.stride),
                                 (300, 0.1, 31, 1)]
    prepared = Prepared(args.prepared)
    splits = training_splits(prepared.generators)
    setup_threads(None)
    cells, times = {}, {}
    for its, rate, leaves, stride in settings:
        p = dataclasses.replace(committed, iterations=its, learning_rate=rate, leaves=leaves, stride=stride)
        for split in args.splits:
            started = time.perf_counter()
            scores = score_split(prepared, splits[split], p)
            seconds = time.perf_counter() - started
            row = {k[4:]: 100 * float(v.mean()) for k, v in scores.items() if k.startswith("iou/")}
            cells[(its, rate, leaves, stride, split)] = row
            key = (its, rate, leaves, stride)
            times[key] = times.get(key, 0.0) + seconds
            print(f"{its} iterations, rate {rate}, {leaves} leaves, stride {stride} | {split} | "
                  + "  ".join(f"{g} {v:.1f}" for g, v in row.items()) + f" | {seconds:.0f} s",
                  flush=True)
    first = settings[0]
    diff = max(abs(cells[(*first, split)][g] - cells[(*s, split)][g])
               for s in settings[1:] for split in args.splits for g in cells[(*first, split)])
    print(f"time_ratio={max(times.values()) / min(times.values()):.2f} max_cell_difference={diff:.1f}")


if __name__ == "__main__":
    main()
