"""The robustness stage's two costs, measured apart, and the default sweep's time estimated from them.

    python benchmarks/bench_robustness.py                    # the default demo's shape: 1216 test images
    python benchmarks/bench_robustness.py --images 300 --models 10

1. Decode and perturb: `stages.robustness.build_perturbed` on `--images` random PNGs of
   `--source` px (the demo's crops are 128 px), the default sweep, every core.
2. Inference: `localize.evaluation.score_model` of an untrained `model` (default params) on
   the prepared arrays at `--size`, in images/s, on every core's threads.

Last line: `key=value` pairs, with the estimate for `--models` models x 12 versions (clean + the
11 of the default sweep) of `--images` images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `localize` importable without installing it
    sys.path.insert(0, str(ROOT))

from localize.evaluation import score_model  # noqa: E402
from localize.models import ModelParams, build_model  # noqa: E402
from localize.runtime import setup_threads  # noqa: E402
from stages import index as index_stage  # noqa: E402
from stages import preprocess as preprocess_stage  # noqa: E402
from stages import robustness  # noqa: E402


def make_tree(root: Path, n: int, source: int) -> None:
    """`n` test fakes of one generator, each with a mask of one square, in Dolos' layout."""
    rng = np.random.default_rng(0)
    grey = np.full((source, source), 255, np.uint8)
    grey[source // 4 : source // 2, source // 4 : source // 2] = 0
    for i in range(n):
        for kind, arr in (("images", rng.integers(0, 256, (source, source, 3), dtype=np.uint8)), ("masks", grey)):
            path = root / "fake" / "gen" / kind / "test" / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1216)
    ap.add_argument("--source", type=int, default=128)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--models", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_tree(tmp / "root", args.images, args.source)
        index_stage.run(tmp / "root", tmp / "index.csv", tmp / "problems.csv", tmp / "data.json",
                        index_stage.IndexParams())
        preprocess_stage.run(tmp / "index.csv", tmp / "prepared", preprocess_stage.PreprocessParams(size=args.size))
        rp = robustness.RobustnessParams()
        prepared = robustness.Prepared(tmp / "prepared")
        began = time.monotonic()
        sets = robustness.build_perturbed(tmp / "index.csv", prepared, rp, tmp / "sets")
        perturb_s = time.monotonic() - began
        setup_threads(None)
        model = build_model(ModelParams())
        score_model(model, sets["clean"], 0.5, rp.batch_size, "max")  # warm-up
        began = time.monotonic()
        score_model(model, sets["clean"], 0.5, rp.batch_size, "max")
        per_s = args.images / (time.monotonic() - began)
    versions = len(rp.cells())
    estimate = perturb_s + args.models * versions * args.images / per_s
    print(f"images={args.images} source={args.source} size={args.size} decode_perturb_s={perturb_s:.1f} "
          f"inference_images_per_s={per_s:.0f} versions={versions} models={args.models} "
          f"estimated_stage_s={estimate:.0f}")


if __name__ == "__main__":
    main()
