"""The `visible change` ceiling of every test generator, where the real source of each fake is known.

    python -m stages.ceiling --index data/index.csv --prepared data/prepared --out data/ceiling.npz

Per test fake: the pixels that differ from its real source by at least `ceiling.min_change`
grey levels (localize/demo/ceiling.py), resized as preprocess resizes masks, scored with Dolos'
IoU against the true mask. Writes `iou/<generator>` (per image, in the prepared arrays' order)
to one .npz, for the evaluate stage's `ceiling` row. The real source is known on the demo data
only (`real/test/<id>.png` behind `fake/<generator>/images/test/<id>-<k>.png`); on any other
root, such as Dolos, the file says why there is no ceiling (`unavailable`) and the row is left out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from localize.atomic import atomic_file
from localize.config import ParamsError, load_section, read_params
from localize.demo.ceiling import source_id, visible_change
from localize.imageio import load_rgb, resize_mask
from localize.index_csv import read_index
from localize.layout import REAL
from localize.metrics import iou_per_image
from localize.params import CeilingParams
from localize.preflight import check_and_clear
from localize.prepared import Prepared


def ceiling_ious(index_path: Path, prepared: Prepared, jpeg_quality: int, p: CeilingParams) -> dict[str, np.ndarray]:
    """`iou/<generator>` per test image, or `unavailable` (a message) where a fake's source is unknown."""
    index = read_index(index_path)
    test = index[index["split"] == "test"]
    reals = dict(zip(test.loc[test["generator"] == REAL, "id"], test.loc[test["generator"] == REAL, "image"]))
    out: dict[str, np.ndarray] = {}
    for gen in prepared.generators:
        if not prepared.has(gen, "test"):
            continue
        rows = test[test["generator"] == gen].set_index("id")
        ids = prepared.ids(gen, "test")
        missing = [i for i in ids if source_id(i) not in reals]
        if missing:
            return {"unavailable": np.array(f"no real source for {gen} test fake {missing[0]!r} "
                                            f"(and {len(missing) - 1} more): the ceiling needs the demo data")}
        _, masks = prepared.arrays(gen, "test")
        size = prepared.size
        visible = np.stack([resize_mask(visible_change(load_rgb(rows.loc[i, "image"]), load_rgb(reals[source_id(i)]),
                                                       gen, jpeg_quality, p.min_change), size, size) for i in ids])
        out[f"iou/{gen}"] = iou_per_image(visible, np.asarray(masks) != 0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    try:
        check_and_clear(args.params, [args.out])
        p = load_section(CeilingParams, "ceiling", args.params)
        # How the demo re-encoded its `-jpeg` fakes (dvc.yaml declares demo.jpeg_quality as a param).
        demo = read_params(args.params).get("demo") or {}
        if "jpeg_quality" not in demo:
            raise ParamsError("params 'demo.jpeg_quality' is required (the ceiling's JPEG reference)")
        scores = ceiling_ious(args.index, Prepared(args.prepared), int(demo["jpeg_quality"]), p)
        with atomic_file(args.out) as tmp:
            with tmp.open("wb") as f:
                np.savez(f, **scores)
        for key, value in scores.items():
            print(f"ceiling {key}: " + (str(value) if key == "unavailable" else f"{100 * value.mean():.1f}"))
    except (ParamsError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
