"""Run a trained model on your own images.

    python -m stages.predict --model models/no-telea.pt --out predictions photo1.jpg photo2.png ...

For each IMAGE it writes DIR/<stem>.prob.png, the fake probability as a grey map at the
input's own size (255 = surely fake), and DIR/<stem>.overlay.png, the input with the
pixels above the threshold tinted red. Any size and mode (RGB, RGBA, L, palette, 16-bit)
is accepted: the image is converted to RGB and resized to the model's training size,
and the map is resized back. A file that cannot be read gets one error line naming it;
the other images are still processed, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from localize.atomic import atomic_file
from localize.imageio import ImageReadError, load_rgb, resize_image
from localize.inference import predict_probs
from localize.plots import overlay
from localize.runtime import setup_threads
from localize.saved_model import load_model


def predict_image(model, size: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, fake probability in [0, 1]) at the image's own size."""
    rgb = np.asarray(load_rgb(path))
    h, w = rgb.shape[:2]
    small = resize_image(rgb, size, size)
    prob = predict_probs(model, small[None])[0]
    return rgb, np.clip(resize_image(prob, h, w), 0.0, 1.0)


def run(model_path: Path, out_dir: Path, images: list[Path], threshold: float = 0.5) -> list[str]:
    """Predict every image; return the error lines of those that failed."""
    model, saved = load_model(model_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for path in images:
        try:
            rgb, prob = predict_image(model, saved.size, path)
        except ImageReadError as e:
            errors.append(f"error: {e}")
            continue
        grey = np.round(prob * 255).astype(np.uint8)
        for suffix, arr in ((".prob.png", grey), (".overlay.png", overlay(rgb, prob > threshold))):
            with atomic_file(out_dir / f"{path.stem}{suffix}") as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
        print(f"{path}: {100 * (prob > threshold).mean():.1f}% of pixels predicted fake")
    return errors


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a models/<split>.pt file")
    ap.add_argument("--out", type=Path, required=True, help="folder for the maps and overlays")
    ap.add_argument("--threshold", type=float, default=0.5, help="for the overlay (Dolos uses 0.5)")
    ap.add_argument("images", type=Path, nargs="+")
    args = ap.parse_args(argv)
    setup_threads(None)
    try:
        errors = run(args.model, args.out, args.images, args.threshold)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
