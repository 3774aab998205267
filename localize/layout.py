"""The Dolos directory layout, shared by the demo builder and the index stage.

    <root>/real/<split>/<id>.png
    <root>/fake/<folder>/images/<split>/<id>.png
    <root>/fake/<folder>/masks/<split>/<id>.png     0 = fake (inpainted), 255 = real

Inside the pipeline 1 means fake, everywhere.
"""

from __future__ import annotations

SPLITS = ("train", "valid", "test")
REAL = "real"  # the generator name given to untouched faces in the index
# Dolos' fully generated faces: <root>/fake/p2/<split>/<id>.png (or fake/p2/images/<split>), no masks,
# since every pixel is generated. Indexed under this name, with an all-fake mask, for weak training
# only (setup A: real vs fully generated); never a localization test set.
FULLY_GENERATED = "p2"

# Published Dolos folder -> the short name users type. Any other folder keeps its own
# name, so the demo's generators (and new ones) need no code change.
DOLOS_FOLDERS = {
    "repaint-p2-9k": "repaint",
    "repaint-p2": "repaint",
    "ldm": "ldm",
    "lama": "lama",
    "pluralistic": "pluralistic",
}


def generator_name(folder: str) -> str:
    return DOLOS_FOLDERS.get(folder, folder)
