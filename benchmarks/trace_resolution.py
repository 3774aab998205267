"""Benchmark: how much trace the evaluation resolution throws away, measured with the texture baseline.

    python -m stages.preprocess --index data/index.csv --out /tmp/prepared-128   # with preprocess.size: 128
    python benchmarks/trace_resolution.py --prepared-2x /tmp/prepared-128 --modes 64 128 both

The same per-pixel boosted trees (the committed `texture` section's iterations, rate, leaves,
smoothing, pixels and real share) classify every pixel of the 64 px maps from the residual
statistics (localize.residuals) computed in one of three ways:
- `64`: on the 64 px images, as the `texture` stage does;
- `128`: on the 2x arrays (the demo's native 128 px), then averaged over each 2 x 2 block, so the
  map, the masks and the IoU stay at 64 px;
- `both`: the two concatenated.
Every single-generator split (in-domain cell) and every leave-one-out split (held-out cell) is fit,
thresholded on its valid fakes and scored on the held-out test set at 64 px; no small-region
post-process. It prints each row with the mean's 95% interval (bootstrap over each cell's test
images, 1000 resamples). A benchmark, not a test: minutes per mode on two cores.

`--learner mlp` puts a small network in the trees' place, of `unet-tex`'s per-pixel head's shape
(BatchNorm, then 32 and 32 hidden units), fit by BCE on the same pixels for `--mlp-steps` Adam steps of
4096 pixels: how fast such a head learns what the trees learn (localize/head_fit.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localize.batches import to_input  # noqa: E402
from localize.config import load_section  # noqa: E402
from localize.layout import REAL  # noqa: E402
from localize.metrics import bootstrap_means, iou_per_image, percentile_interval, resample_indices  # noqa: E402
from localize.params import TextureParams  # noqa: E402
from localize.prepared import Prepared  # noqa: E402
from localize.residuals import residual_features  # noqa: E402
from localize.runtime import setup_threads  # noqa: E402
from localize.texture import BATCH, choose_threshold  # noqa: E402


class Features:
    """Per-pixel statistics of one (generator, split) at the 1x arrays' size, computed per `mode`."""

    def __init__(self, base: Prepared, double: Prepared, mode: str):
        self.base, self.double, self.mode = base, double, mode
        self.done: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, gen: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Computed once per (generator, split): the ten splits share each generator's arrays."""
        if (gen, split) not in self.done:
            self.done[gen, split] = self.compute(gen, split)
        return self.done[gen, split]

    def compute(self, gen: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        images, masks = self.base.arrays(gen, split)
        images_2x, _ = self.double.arrays(gen, split)
        out = []
        for s in range(0, len(images), BATCH):
            parts = []
            with torch.no_grad():
                if self.mode in ("64", "both"):
                    parts.append(residual_features(to_input(np.asarray(images[s : s + BATCH]))))
                if self.mode in ("128", "both"):
                    parts.append(F.avg_pool2d(residual_features(to_input(np.asarray(images_2x[s : s + BATCH]))), 2))
            out.append(torch.cat(parts, 1).permute(0, 2, 3, 1).numpy())
        return np.concatenate(out), np.asarray(masks) != 0


def smooth(prob: np.ndarray, side: int) -> np.ndarray:
    t = torch.from_numpy(prob)[:, None]
    return F.avg_pool2d(F.pad(t, (side // 2,) * 4, mode="replicate"), side, 1)[:, 0].numpy()


class HeadMLP:
    """The per-pixel head's shape as a classifier with the trees' fit / predict_proba interface."""

    def __init__(self, steps: int, seed: int):
        self.steps, self.seed = steps, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> HeadMLP:
        torch.manual_seed(self.seed)
        k = x.shape[1]
        self.net = torch.nn.Sequential(torch.nn.BatchNorm1d(k), torch.nn.Linear(k, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=3e-3)
        xs, ys = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(y.astype(np.float32))
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.steps):
            i = torch.randint(0, len(xs), (4096,), generator=generator)
            loss = F.binary_cross_entropy_with_logits(self.net(xs[i])[:, 0], ys[i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.net.eval()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            p = torch.sigmoid(self.net(torch.from_numpy(np.ascontiguousarray(x, np.float32)))[:, 0]).numpy()
        return np.stack([1 - p, p], 1)


def trees(p: TextureParams) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=p.iterations, learning_rate=p.learning_rate,
                                          max_leaf_nodes=p.leaves, early_stopping=False, random_state=p.seed)


def fit(features: Features, gens: list[str], p: TextureParams, learner=trees):
    """Trees (or the head-shaped MLP) on p.pixels training pixels: (1 - p.real) of them from the split's
    fakes, the rest real."""
    rng = np.random.default_rng(p.seed)
    draws = [(g, int((1 - p.real) * p.pixels / len(gens))) for g in gens] + [(REAL, int(p.real * p.pixels))]
    xs, ys = [], []
    for gen, k in draws:
        f, m = features(gen, "train")
        chosen = rng.choice(m.size, min(k, m.size), replace=False)
        xs.append(f.reshape(m.size, -1)[chosen])
        ys.append(m.reshape(-1)[chosen])
    return learner(p).fit(np.concatenate(xs), np.concatenate(ys))


def cell(features: Features, gens: list[str], test_gen: str, p: TextureParams, learner=trees) -> np.ndarray:
    """Per-image IoU on `test_gen`'s test fakes of the split trained on `gens`, thresholded on its valid."""
    model = fit(features, gens, p, learner)

    def maps(gen: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        f, m = features(gen, split)
        prob = model.predict_proba(f.reshape(-1, f.shape[-1]))[:, 1].reshape(m.shape).astype(np.float32)
        return smooth(prob, p.smooth), m

    valid = [maps(g, "valid") for g in gens]
    threshold = choose_threshold([prob for prob, _ in valid], [m for _, m in valid])
    prob, m = maps(test_gen, "test")
    return iou_per_image(prob >= threshold, m)


def row(label: str, cells: dict[str, np.ndarray], rng: np.random.Generator) -> str:
    means = np.mean([bootstrap_means(v, resample_indices(len(v), 1000, rng)) for v in cells.values()], axis=0)
    low, high = percentile_interval(means)
    mean = np.mean([v.mean() for v in cells.values()])
    return (f"{label}: " + "  ".join(f"{g} {100 * v.mean():.1f}" for g, v in cells.items())
            + f" | mean {100 * mean:.1f} ({100 * low:.1f}-{100 * high:.1f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    ap.add_argument("--prepared-2x", type=Path, required=True, help="the same index preprocessed at twice the size")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--modes", nargs="+", choices=["64", "128", "both"], default=["64", "128"])
    ap.add_argument("--learner", choices=["trees", "mlp"], default="trees")
    ap.add_argument("--mlp-steps", type=int, default=400, help="--learner mlp: Adam steps of 4096 pixels")
    args = ap.parse_args(argv)
    learner = trees if args.learner == "trees" else lambda p: HeadMLP(args.mlp_steps, p.seed)
    p = load_section(TextureParams, "texture", args.params)
    base, double = Prepared(args.prepared), Prepared(args.prepared_2x)
    gens = base.generators
    setup_threads(None)
    for mode in args.modes:
        started, features = time.perf_counter(), Features(base, double, mode)
        own = {g: cell(features, [g], g, p, learner) for g in gens}
        held = {g: cell(features, [x for x in gens if x != g], g, p, learner) for g in gens}
        rng = np.random.default_rng(0)
        print(row(f"{args.learner} {mode} in-domain", own, rng))
        seconds = time.perf_counter() - started
        print(row(f"{args.learner} {mode} held-out", held, rng) + f" | {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
