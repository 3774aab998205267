"""Run a trained model on your own images.

    python -m tools.predict --model models/no-telea.pt --out predictions photo1.jpg photo2.png ...
    python -m tools.predict --model models/no-telea.pt --out predictions --scores scores.csv photos/*.jpg

For each IMAGE it writes DIR/<stem>.prob.png, the fake probability as a grey map at the
input's own size (255 = surely fake), and DIR/<stem>.overlay.png, the input with the
pixels above the threshold tinted red. With --scores CSV it also writes one row per input
(a path given twice: one row): its path, its image-level detection score (evaluate's: the max,
or with --detection-score mean the mean, of the probability map at the model's size, as
evaluate scores its test images for the detection AUC), and the verdict at --threshold, `fake`
when the score is above it (with `max`: when any pixel is flagged) and, with --min-region K, a
flagged region of at least K pixels (at the model's size) remains, else `real`; an image that
failed has an empty score and `error`. --min-region drops smaller flagged regions from the
overlay and the verdict as evaluate drops them from its maps; metrics/scores.json gives each
model's own K (`min_region.pixels`, chosen on its valid split).
Any size and mode (RGB, RGBA, L, palette, 16-bit)
is accepted: the image is converted to RGB and resized to the model's training size,
and the map is resized back. Photos are read upright: an EXIF orientation (phone
photos) is applied, and said, so the maps match the photo as viewers show it.

Every error is one line naming the file. An image that cannot be read, or whose header
declares more than --max-pixels pixels (refused before decoding), is skipped: the other
images are still processed, and the exit status is 1. A bad model file, an --out that
cannot be written or a bad option stops before any image.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from localize.atomic import atomic_file
from localize.evaluation import decide, image_scores
from localize.imageio import (
    MAX_FILE_BYTES_PER_PIXEL,
    MAX_PIXELS,
    ImageReadError,
    check_max_file_bytes_per_pixel,
    check_max_pixels,
    load_upright_rgb,
    resize_image,
)
from localize.inference import predict_probs
from localize.metrics import check_threshold as check_probability
from localize.plots import overlay
from localize.runtime import setup_threads
from localize.saved_model import load_model


def check_threshold(threshold: float) -> None:
    """The rule of evaluate.threshold, for --threshold."""
    try:
        check_probability(threshold)
    except ValueError as e:
        raise ValueError(f"--threshold {threshold}: {e} (as evaluate.threshold)") from None


def check_out(out: Path) -> None:
    """Refuse an --out that cannot become a folder this process writes in, without creating anything."""
    if out.is_symlink() and not out.exists():
        raise ValueError(f"--out {out}: a broken symlink, not a folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, so no folder can be made there")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write in {existing} ({e.strerror or e})") from None


DETECTION_SCORES = ("max", "mean")  # as evaluate.detection_score


def predict_image(model, size: int, path: Path, max_pixels: int = MAX_PIXELS,
                  max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL, detection: str = "max",
                  ) -> tuple[np.ndarray, np.ndarray, str | None, float, np.ndarray]:
    """(upright RGB image, fake probability in [0, 1]) at the image's own size, the EXIF turn applied,
    the image's detection score (`detection` of the map at the model's size, as evaluate's), and the
    probability map at the model's size."""
    rgb, turn = load_upright_rgb(path, max_pixels, max_file_bytes_per_pixel)
    h, w = rgb.shape[:2]
    small = resize_image(rgb, size, size)
    prob = predict_probs(model, small[None])[0]
    score = float(image_scores(prob[None], detection)[0])
    return rgb, np.clip(resize_image(prob, h, w), 0.0, 1.0), turn, score, prob


def flagged_map(prob: np.ndarray, small_prob: np.ndarray, threshold: float, min_region: int) -> np.ndarray:
    """The pixels of `prob` (the image's size) above `threshold` that lie in a flagged region of the
    model-size map `small_prob` of at least `min_region` pixels: evaluate's decision, drawn at the
    image's own size."""
    flagged = prob > threshold
    if min_region <= 1:
        return flagged
    kept = decide(small_prob[None], threshold, min_region)[0]
    h, w = prob.shape
    return flagged & (np.asarray(Image.fromarray(kept.astype(np.uint8)).resize((w, h), Image.NEAREST)) > 0)


def check_scores(scores: Path | None) -> None:
    if scores is not None and (scores.is_dir() or not scores.parent.is_dir()):
        raise ValueError(f"--scores {scores}: " + ("is a folder" if scores.is_dir() else
                                                   f"{scores.parent} is not a folder"))


def write_scores(path: Path, rows: list[tuple[Path, float | None, str]]) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "score", "verdict"])
        w.writerows([str(p), "" if s is None else f"{s:.6f}", v] for p, s, v in rows)


def _write(out_dir: Path, path: Path, rgb: np.ndarray, prob: np.ndarray, flagged: np.ndarray) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)  # made on the first result: a run that writes nothing leaves nothing
    grey = np.round(prob * 255).astype(np.uint8)
    for suffix, arr in ((".prob.png", grey), (".overlay.png", overlay(rgb, flagged))):
        with atomic_file(out_dir / f"{path.stem}{suffix}") as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")


def clashes(images: list[Path]) -> dict[Path, Path]:
    """Images whose maps would take the name of an earlier image's (`a/face.png`, `b/face.png`,
    `face.jpg`: one `face.prob.png`), each mapped to that earlier image. A path given twice is not
    a clash: it is predicted once."""
    first: dict[str, Path] = {}
    out = {}
    for path in images:
        seen = first.setdefault(path.stem, path)
        if seen != path and Path(os.path.abspath(seen)) != Path(os.path.abspath(path)):
            out[path] = seen
    return out


def run(model_path: Path, out_dir: Path, images: list[Path], threshold: float = 0.5,
        max_pixels: int = MAX_PIXELS, max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL,
        scores: Path | None = None, detection: str = "max", min_region: int = 0) -> list[str]:
    """Predict every image; return the error lines of those that failed.

    The options, --out, --scores and the model are checked first: ValueError (or FileNotFoundError
    for a missing model) before any image is read.
    """
    check_threshold(threshold)
    check_max_pixels(max_pixels, "--max-pixels")
    check_max_file_bytes_per_pixel(max_file_bytes_per_pixel, "--max-file-bytes-per-pixel")
    check_out(out_dir)
    check_scores(scores)
    if detection not in DETECTION_SCORES:
        raise ValueError(f"--detection-score {detection!r}: must be one of {', '.join(DETECTION_SCORES)}")
    if min_region < 0:
        raise ValueError(f"--min-region {min_region}: must be a number of pixels >= 0 (0 = none)")
    model, saved = load_model(model_path)
    errors: list[str] = []
    rows: list[tuple[Path, float | None, str]] = []
    clash = clashes(images)
    done: set[Path] = set()
    for path in images:
        if path in clash:  # never two results under one name
            errors.append(f"error: {path}: not predicted, its maps would overwrite those of {clash[path]} "
                          f"({out_dir / path.stem}.prob.png); rename it, or predict it with another --out")
            rows.append((path, None, "error"))
            continue
        if Path(os.path.abspath(path)) in done:
            continue
        done.add(Path(os.path.abspath(path)))
        error, score, flagged = _predict_one(model, saved.size, path, out_dir, threshold, max_pixels,
                                             max_file_bytes_per_pixel, detection, min_region)
        if error:
            errors.append(error)
        rows.append((path, score, "error" if error else "fake" if score > threshold and flagged else "real"))
    if scores is not None:
        write_scores(scores, rows)
    return errors


def _predict_one(model, size: int, path: Path, out_dir: Path, threshold: float, max_pixels: int,
                 max_file_bytes_per_pixel: int, detection: str, min_region: int = 0,
                 ) -> tuple[str | None, float | None, bool]:
    """(the error line, or None; the detection score, or None; whether any pixel stayed flagged)
    of one image, its maps written."""
    try:
        rgb, prob, turn, score, small = predict_image(model, size, path, max_pixels, max_file_bytes_per_pixel,
                                                      detection)
    except ImageReadError as e:
        return f"error: {e}", None, False
    except MemoryError:
        return f"error: {path}: not enough memory to process it; try a smaller copy of the image", None, False
    except Exception as e:  # anything else this one image brings about: named, and the next image runs
        return (f"error: {path}: cannot be processed ({type(e).__name__}: {str(e).strip()[:200]})"
                .replace("\n", " ")), None, False
    flagged = flagged_map(prob, small, threshold, min_region)
    try:
        _write(out_dir, path, rgb, prob, flagged)
    except OSError as e:
        return (f"error: {out_dir / path.stem}.*.png: cannot write the maps of {path} ({e.strerror or e})",
                None, False)
    upright = f" (EXIF orientation applied: {turn}; the maps are upright, as viewers show it)" if turn else ""
    print(f"{path}: {100 * flagged.mean():.1f}% of pixels predicted fake, "
          f"score {score:.3f}{upright}")
    # The verdict's part: at the model's size, where the score is read (any region kept).
    return None, score, bool(decide(small[None], threshold, min_region).any())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a models/<split>.pt file")
    ap.add_argument("--out", type=Path, required=True, help="folder for the maps and overlays")
    ap.add_argument("--threshold", type=float, default=0.5, help="for the overlay, in (0, 1) (Dolos uses 0.5)")
    ap.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                    help=f"refuse images of more pixels than this, before decoding (default {MAX_PIXELS:,})")
    ap.add_argument("--max-file-bytes-per-pixel", type=int, default=MAX_FILE_BYTES_PER_PIXEL,
                    help="refuse files larger than this many bytes per declared pixel plus 1 MiB, unread "
                         f"(default {MAX_FILE_BYTES_PER_PIXEL})")
    ap.add_argument("--scores", type=Path,
                    help="also write this CSV: path, image-level detection score, verdict at --threshold")
    ap.add_argument("--detection-score", choices=DETECTION_SCORES, default="max",
                    help="how a map becomes the image's score, as evaluate.detection_score (default max)")
    ap.add_argument("--min-region", type=int, default=0,
                    help="drop flagged regions of fewer pixels at the model's size, as evaluate does: each "
                         "model's choice is `min_region.pixels` in metrics/scores.json (default 0, none)")
    ap.add_argument("images", type=Path, nargs="+")
    args = ap.parse_args(argv)
    try:
        setup_threads(None)
        errors = run(args.model, args.out, args.images, args.threshold, args.max_pixels,
                     args.max_file_bytes_per_pixel, args.scores, args.detection_score, args.min_region)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        print("predict: interrupted; the maps written so far are complete", file=sys.stderr)
        raise SystemExit(130) from None
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
