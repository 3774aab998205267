"""Predict on any image: odd modes and sizes, and a broken file among good ones."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from localize.config import parse_section
from localize.models import ModelParams
from localize.training import TrainParams
from stages import predict, train


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from conftest import make_prepared

    root = tmp_path_factory.mktemp("predict")
    prepared = make_prepared(root / "prepared", generators=("alpha",))
    tp = parse_section(TrainParams, {"source": "alpha", "epochs": 1, "steps_per_epoch": 2, "batch_size": 4,
                                     "precision": "fp32", "threads": 1}, "train")
    train.run(prepared, root / "models", root / "live", root / "curves.png", root / "ckpt", ModelParams(width=4), tp)
    return root / "models" / "alpha.pt"


def write(path, mode, size):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    img = img.convert("P") if mode == "P" else img.convert(mode)
    img.save(path)
    return path


@pytest.mark.parametrize("mode, size", [("RGB", (40, 30)), ("RGBA", (17, 50)), ("L", (64, 64)), ("P", (23, 9))])
def test_any_mode_and_size(model_path, tmp_path, mode, size):
    src = write(tmp_path / f"in.{mode}.png", mode, size)
    assert predict.run(model_path, tmp_path / "out", [src]) == []
    prob = Image.open(tmp_path / "out" / f"{src.stem}.prob.png")
    over = Image.open(tmp_path / "out" / f"{src.stem}.overlay.png")
    assert prob.mode == "L" and prob.size == size
    assert over.mode == "RGB" and over.size == size


def test_a_broken_file_is_named_and_the_others_still_run(model_path, tmp_path, capsys):
    good = write(tmp_path / "good.png", "RGB", (32, 32))
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])  # a truncated PNG
    missing = tmp_path / "missing.png"
    with pytest.raises(SystemExit) as stop:
        predict.main(["--model", str(model_path), "--out", str(tmp_path / "out"), str(broken), str(missing),
                      str(good)])
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "broken.png" in err[0] and "missing.png" in err[1]
    assert (tmp_path / "out" / "good.prob.png").exists()
    assert not (tmp_path / "out" / "broken.prob.png").exists()


def test_a_model_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(SystemExit, match="model.pt: not a model saved by the train stage"):
        predict.main(["--model", str(bad), "--out", str(tmp_path / "out"), str(bad)])
