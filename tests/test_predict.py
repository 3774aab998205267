"""Predict on any image: odd modes and sizes, broken and huge files among good ones, bad models,
unusable options, EXIF orientation; every error one line, never a traceback."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PYTHON, png_declaring, recipe, run_measured
from PIL import Image, ImageOps

from localize.imageio import MAX_PIXELS, check_image, load_rgb, load_upright_rgb
from localize.models import ModelParams
from localize.saved_model import load_model
from stages import train
from tools import predict

# The messages below name the model's arch and width: the reference U-Net's, at width 4.
SEED_UNET = recipe("model", arch="unet-seed", width=4)

@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from conftest import make_prepared

    root = tmp_path_factory.mktemp("predict")
    prepared = make_prepared(root / "prepared", generators=("alpha",))
    tp = recipe("train", source="alpha", init="scratch",
                epochs=1, steps_per_epoch=2, batch_size=4, precision="fp32", threads=1)
    train.run(prepared, root / "models", root / "live", root / "curves.png", root / "ckpt", SEED_UNET, tp)
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


def test_a_huge_image_is_refused_from_its_header_and_the_next_one_is_predicted(model_path, tmp_path):
    """A 20000² PNG of a few KB: named in one line, never decoded (peak RSS), and the good image after it runs."""
    huge = png_declaring(tmp_path / "huge.png", 20000, 20000)
    good = write(tmp_path / "good.png", "RGB", (32, 24))
    status, out, err, peak = run_measured([PYTHON, "-m", "tools.predict", "--model", str(model_path), "--out",
                                           str(tmp_path / "out"), str(huge), str(good)], tmp_path)
    assert status == 1
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {huge}: image too large to decode safely (20000x20000 = "
                                        f"400,000,000 pixels; the limit is {MAX_PIXELS:,})"]
    assert peak < 500, f"peak RSS {peak:.0f} MB"
    assert out.startswith(f"{good}: ") and (tmp_path / "out" / "good.prob.png").exists()
    assert not (tmp_path / "out" / "huge.prob.png").exists()
    # The limit is an option: lower it and the good image is refused the same way.
    with pytest.raises(SystemExit):
        predict.main(["--model", str(model_path), "--out", str(tmp_path / "o2"), "--max-pixels", "100", str(good)])


def test_an_image_with_a_2gb_tail_is_refused_unread(model_path, tmp_path):
    from test_index import add_sparse_tail

    bad = add_sparse_tail(write(tmp_path / "tail.png", "RGB", (32, 24)))
    good = write(tmp_path / "good.png", "RGB", (32, 24))
    status, out, err, peak = run_measured([PYTHON, "-m", "tools.predict", "--model", str(model_path), "--out",
                                           str(tmp_path / "out"), str(bad), str(good)], tmp_path)
    assert status == 1 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {bad}: file is ") and "far more than its 32x24 pixels need" in line
    assert peak < 500, f"peak RSS {peak:.0f} MB"
    assert (tmp_path / "out" / "good.prob.png").exists() and not (tmp_path / "out" / "tail.prob.png").exists()


def test_two_images_of_one_name_never_share_a_result(model_path, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write(tmp_path / "a" / "face.png", "RGB", (32, 24))
    second = write(tmp_path / "b" / "face.png", "RGB", (20, 20))
    third = write(tmp_path / "face.jpg", "RGB", (16, 16))
    errors = predict.run(model_path, tmp_path / "out", [first, second, third, first])
    assert len(errors) == 2, errors
    assert all("not predicted, its maps would overwrite those of" in e and str(first) in e for e in errors)
    assert str(second) in errors[0] and str(third) in errors[1]
    assert Image.open(tmp_path / "out" / "face.prob.png").size == (32, 24), "the first image's maps"
    with pytest.raises(SystemExit) as stop:
        predict.main(["--model", str(model_path), "--out", str(tmp_path / "o2"), str(first), str(second)])
    assert stop.value.code == 1


class RunsCode:
    def __reduce__(self):
        return os.system, (f"touch {MARKER}",)


MARKER = Path(tempfile.gettempdir()) / "predict-test-pickle-ran"


def _bad_models(saved: dict, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words of the reason) for every way a .pt can be wrong."""
    def variant(name: str, change, words: str) -> None:
        data = copy.deepcopy(saved)
        data = change(data) or data
        torch.save(data, folder / f"{name}.pt")
        cases[name] = (folder / f"{name}.pt", words)

    cases: dict[str, tuple[Path, str]] = {}
    other = train_module_model(recipe("model", arch="unet-seed", width=8))
    variant("empty_state", lambda d: d.update(state_dict={}), "'state_dict' holds no weights")
    variant("other_width", lambda d: d.update(state_dict=other.state_dict()), "do not fit a unet-seed of width 4")
    variant("unknown_key", lambda d: d["model"].update(depth=3), "bad model settings: 'model': unknown key(s) depth")
    variant("no_size", lambda d: d.pop("size") and None, "no 'size' entry")
    variant("size_zero", lambda d: d.update(size=0), "'size' is 0")
    variant("size_text", lambda d: d.update(size="16"), "'size' is '16'")
    variant("size_bool", lambda d: d.update(size=True), "'size' is True")
    variant("size_unusable", lambda d: d.update(size=6), "cannot run at its size 6")
    variant("not_tensors", lambda d: d.update(state_dict={"w": 1}), "not named tensors")
    variant("model_text", lambda d: d.update(model="unet"), "'model' is a str")
    variant("a_list", lambda d: [1, 2], "holds a list")
    variant("runs_code", lambda d: {"model": RunsCode()}, "(posix.system), which loading could run as code; refused")
    good = (folder / "empty_state.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(good[: len(good) // 2])
    cases["truncated"] = (folder / "truncated.pt", "truncated, or not a file torch saved: ")
    (folder / "zero.pt").write_bytes(b"")
    cases["zero"] = (folder / "zero.pt", "empty file (0 bytes)")
    (folder / "folder.pt").mkdir()
    cases["folder"] = (folder / "folder.pt", "it is a folder")
    return cases


def train_module_model(mp: ModelParams):
    from localize.models import build_model

    return build_model(mp)


def test_every_bad_model_file_is_not_a_model_saved_by_the_train_stage(model_path, tmp_path, capsys):
    MARKER.unlink(missing_ok=True)
    saved = torch.load(model_path, weights_only=False)
    good = write(tmp_path / "good.png", "RGB", (16, 16))
    for name, (bad, words) in _bad_models(saved, tmp_path).items():
        with pytest.raises(ValueError) as info:
            load_model(bad)
        message = str(info.value)
        assert message.startswith(f"{bad}: not a model saved by the train stage ("), name
        assert words in message and "\n" not in message, (name, message)
        with pytest.raises(SystemExit) as stop:
            predict.main(["--model", str(bad), "--out", str(tmp_path / "out"), str(good)])
        assert str(stop.value) == f"error: {message}"
        assert not (tmp_path / "out").exists(), name  # nothing made before the model was known good
    assert not MARKER.exists(), "loading ran the pickle's code"
    assert capsys.readouterr().err == ""


def test_an_unusable_out_is_named_before_any_work(model_path, tmp_path):
    good = write(tmp_path / "good.png", "RGB", (16, 16))
    not_a_model = tmp_path / "bad.pt"
    not_a_model.write_bytes(b"x")
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):  # root writes anywhere: use a folder even root cannot write in
        read_only = Path("/sys")
    cases = {a_file: "exists and is not a folder", a_file / "sub": "is a file, so no folder can be made there",
             read_only / "out": f"cannot write in {read_only}"}
    for out, words in cases.items():
        for model in (model_path, not_a_model):  # the folder is checked first, before the model is read
            with pytest.raises(SystemExit) as stop:
                predict.main(["--model", str(model), "--out", str(out), str(good)])
            assert str(stop.value).startswith(f"error: --out {out}: ") and words in str(stop.value)
    assert not (read_only / "out").exists()


@pytest.mark.parametrize("value", ["5", "nan", "-1", "0", "1", "inf"])
def test_threshold_is_checked_like_evaluates(model_path, tmp_path, value):
    good = write(tmp_path / "good.png", "RGB", (16, 16))
    with pytest.raises(SystemExit) as stop:
        predict.main(["--model", str(model_path), "--out", str(tmp_path / "out"), "--threshold", value, str(good)])
    assert str(stop.value).startswith(f"error: --threshold {float(value)}: threshold must be in (0, 1)")
    assert not (tmp_path / "out").exists()


def test_exif_orientation_is_applied_and_said(model_path, tmp_path, capsys):
    rng = np.random.default_rng(0)
    stored = Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8))  # 40 wide, 20 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise: 20 wide, 40 high
    photo = tmp_path / "phone.jpg"
    stored.save(photo, exif=exif, quality=95)
    assert predict.run(model_path, tmp_path / "out", [photo]) == []
    assert Image.open(tmp_path / "out" / "phone.prob.png").size == (20, 40)
    assert Image.open(tmp_path / "out" / "phone.overlay.png").size == (20, 40)
    assert "EXIF orientation applied: turned 90° clockwise" in capsys.readouterr().out
    upright, turn = load_upright_rgb(photo)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(photo)).convert("RGB"))
    assert turn == "turned 90° clockwise" and np.array_equal(upright, expected)
    # The data stages keep the stored orientation: the one masks are drawn on.
    assert load_rgb(photo).shape == (20, 40, 3)
    assert (check_image(photo).width, check_image(photo).height) == (40, 20)


def constant_model(model_path: Path, out: Path, prob: float) -> Path:
    """The trained model with its last layer's weights zeroed and its bias at logit(prob): every
    pixel of every map is `prob`, so the image score (max or mean) and the verdict are known."""
    saved = torch.load(model_path, weights_only=False)
    state = saved["state_dict"]
    last = [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 4][-1]
    assert state[last].shape[0] == 1, last  # the one-channel output conv
    state[last] = torch.zeros_like(state[last])
    state[last.replace(".weight", ".bias")] = torch.full((1,), float(np.log(prob / (1 - prob))))
    torch.save(saved, out)
    return out


@pytest.mark.parametrize("how", ["max", "mean"])
def test_scores_csv_one_row_per_input_with_score_and_verdict(model_path, tmp_path, how):
    import csv

    low = constant_model(model_path, tmp_path / "low.pt", 0.2)
    high = constant_model(model_path, tmp_path / "hi.pt", 0.8)
    good = [write(tmp_path / "a.png", "RGB", (40, 30)), write(tmp_path / "b.png", "L", (17, 50))]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    for model, score, verdict in ((low, 0.2, "real"), (high, 0.8, "fake")):
        scores = tmp_path / f"{model.stem}.csv"
        errors = predict.run(model, tmp_path / "out", [good[0], broken, good[1]], scores=scores, detection=how)
        assert len(errors) == 1 and "broken.png" in errors[0]
        rows = list(csv.DictReader(scores.open()))
        assert [r["path"] for r in rows] == [str(good[0]), str(broken), str(good[1])]
        assert [r["verdict"] for r in rows] == [verdict, "error", verdict]
        assert rows[1]["score"] == ""
        assert [float(rows[i]["score"]) for i in (0, 2)] == pytest.approx([score, score], abs=1e-5)
    # At a threshold above the score, the same image is real.
    predict.run(high, tmp_path / "out", good[:1], threshold=0.9, scores=tmp_path / "t.csv", detection=how)
    assert next(csv.DictReader((tmp_path / "t.csv").open()))["verdict"] == "real"


def test_scores_csv_score_is_evaluates_detection_score(model_path, tmp_path):
    """The trained (non-constant) model: the CSV's score is localize.evaluation.image_scores of the
    map at the model's size, the score behind evaluate's detection AUC."""
    from localize.evaluation import image_scores
    from localize.imageio import resize_image
    from localize.inference import predict_probs

    src = write(tmp_path / "a.png", "RGB", (40, 30))
    predict.run(model_path, tmp_path / "out", [src], scores=tmp_path / "s.csv")
    model, saved = load_model(model_path)
    small = resize_image(load_rgb(src), saved.size, saved.size)
    expected = image_scores(predict_probs(model, small[None]), "max")[0]
    assert float((tmp_path / "s.csv").read_text().splitlines()[1].split(",")[1]) == pytest.approx(expected, abs=1e-6)


def test_scores_csv_path_is_checked_before_any_work(model_path, tmp_path):
    with pytest.raises(ValueError, match="--scores .*: is a folder"):
        predict.run(model_path, tmp_path / "out", [tmp_path / "x.png"], scores=tmp_path)
    with pytest.raises(ValueError, match="--scores .*is not a folder"):
        predict.run(model_path, tmp_path / "out", [tmp_path / "x.png"], scores=tmp_path / "no" / "s.csv")
    assert not (tmp_path / "out").exists()


def test_flagged_map_keeps_only_pixels_of_large_enough_regions_at_the_models_size():
    small = np.zeros((4, 4), np.float32)
    small[:2, :2] = 0.9  # a 4-px region
    small[3, 3] = 0.9  # a 1-px region
    prob = np.kron(small, np.ones((2, 2), np.float32))  # the image at twice the model's size
    assert (predict.flagged_map(prob, small, 0.5, 0) == (prob > 0.5)).all()
    kept = predict.flagged_map(prob, small, 0.5, 2)
    assert kept[:4, :4].all() and kept.sum() == 16  # the 1-px region (4 px at the image's size) is gone
    assert not predict.flagged_map(prob, small, 0.5, 5).any()


def test_min_region_drops_regions_from_the_overlay_and_the_verdict(model_path, tmp_path):
    import csv

    high = constant_model(model_path, tmp_path / "hi.pt", 0.8)  # every pixel flagged: one 16x16 region
    src = write(tmp_path / "a.png", "RGB", (40, 30))
    rows = {}
    for k in (0, 256, 257):
        predict.run(high, tmp_path / f"out{k}", [src], scores=tmp_path / f"{k}.csv", min_region=k)
        rows[k] = next(csv.DictReader((tmp_path / f"{k}.csv").open()))["verdict"]
    assert rows == {0: "fake", 256: "fake", 257: "real"}
    tinted, plain = (np.asarray(Image.open(tmp_path / f"out{k}" / "a.overlay.png")) for k in (256, 257))
    assert (plain == load_rgb(src)).all() and not (tinted == plain).all()
    with pytest.raises(ValueError, match="--min-region -1: must be a number of pixels >= 0"):
        predict.run(high, tmp_path / "out", [src], min_region=-1)
