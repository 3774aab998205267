"""The reference rows that every table reads its models against, besides the location prior:
the `texture` baseline (stages/texture.py) from below and the `visible change` ceiling
(stages/ceiling.py, demo data only) from above.

Both stages write per-image scores, so the rows get the same bootstrap intervals over test images
as every model's cells (localize.evaluation.Bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localize.evaluation import Bootstrap, held_out_cells, in_domain_cells, mean_of, percent, rounded
from localize.layout import REAL


@dataclass(frozen=True)
class TextureScores:
    """One split's texture model on the test sets."""

    ious: dict[str, np.ndarray]  # test generator -> per-image IoU
    real_flagged: np.ndarray  # per real test face, the share of its pixels flagged
    threshold: float  # chosen on the split's valid fakes
    min_region: int = 0  # flagged regions of fewer pixels were dropped (chosen on valid: localize/regions.py)


def load_texture(folder: Path) -> dict[str, TextureScores]:
    """split -> its scores, from the texture stage's <split>.npz files."""
    out = {}
    for path in sorted(Path(folder).glob("*.npz")):
        with np.load(path) as f:
            out[path.stem] = TextureScores(
                ious={k.removeprefix("iou/"): f[k] for k in f.files if k.startswith("iou/")},
                real_flagged=f["real_flagged"] if "real_flagged" in f.files else np.zeros(0),
                threshold=float(f["threshold"]),
                min_region=int(f["min_region"]) if "min_region" in f.files else 0)
    return out


def load_ceiling(path: Path) -> dict[str, np.ndarray]:
    """test generator -> per-image IoU of the visible change; empty where the data has no ceiling."""
    with np.load(path) as f:
        return {k.removeprefix("iou/"): f[k] for k in f.files if k.startswith("iou/")}


def _mean_with_interval(boot: Bootstrap, cells: list[tuple[str, np.ndarray]]) -> dict:
    low, high = boot.interval(cells)
    return {"iou": rounded(mean_of(cells)), "low": rounded(low), "high": rounded(high)}


def texture_summary(texture: dict[str, TextureScores], generators: list[str], boot: Bootstrap) -> dict:
    """summary.json's `texture`: the in-domain and held-out means with intervals, and real faces clean."""
    ious = {split: t.ious for split, t in texture.items()}
    out = {"in_domain": _mean_with_interval(boot, in_domain_cells(ious)),
           "held_out": _mean_with_interval(boot, held_out_cells(ious, generators))}
    clean = [(REAL, (t.real_flagged == 0).astype(np.float64)) for t in texture.values() if len(t.real_flagged)]
    if clean:
        out["real_faces_clean"] = rounded(float(np.mean([c.mean() for _, c in clean])))
    return out


def ceiling_summary(ceiling: dict[str, np.ndarray], boot: Bootstrap) -> dict:
    """summary.json's `ceiling`: the mean over test generators of the visible-change IoU, with its interval."""
    return _mean_with_interval(boot, list(ceiling.items()))


def _cell(boot: Bootstrap, gen: str, values: np.ndarray | None) -> str:
    return "–" if values is None else percent(float(values.mean()), boot.interval([(gen, values)]))


def markdown_rows(texture: dict[str, TextureScores], ceiling: dict[str, np.ndarray], generators: list[str],
                  boot: Bootstrap) -> list[str]:
    """table.md's reference rows, in its columns: generators, mean, real faces clean, (prior)."""
    rows = {}
    if texture:
        rows["texture, same generator"] = ({g: texture[g].ious.get(g) for g in generators if g in texture},
                                           [texture[g] for g in generators if g in texture])
        rows["texture, held out"] = ({g: texture[f"no-{g}"].ious.get(g) for g in generators if f"no-{g}" in texture},
                                     [texture[f"no-{g}"] for g in generators if f"no-{g}" in texture])
    lines = []
    for name, (cells, models) in rows.items():
        present = [(g, v) for g, v in cells.items() if v is not None]
        clean = [float((t.real_flagged == 0).mean()) for t in models if len(t.real_flagged)]
        lines.append(f"| _baseline: {name}_ | " + " | ".join(_cell(boot, g, cells.get(g)) for g in generators)
                     + f" | {percent(mean_of(present)) if present else '–'} | "
                     + f"{percent(float(np.mean(clean))) if clean else '–'} | |")
    if ceiling:
        lines.append("| _ceiling: visible change_ | " + " | ".join(_cell(boot, g, ceiling.get(g)) for g in generators)
                     + f" | {percent(mean_of(list(ceiling.items())))} | 100 | |")
    return lines
