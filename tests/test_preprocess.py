"""The preprocess stage: arrays, polarity, resizing, streaming, and clean failure."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_index import SIZE, make_tree, write_mask

from localize import preprocessing
from localize.config import ParamsError, parse_section
from localize.imageio import (
    ImageReadError,
    load_fake_mask,
    load_rgb,
    resize_image,
    resize_mask,
    to_rgb,
)
from localize.index_csv import read_index
from localize.layout import REAL
from localize.params import IndexParams, PreprocessParams
from localize.prepared import Prepared, PreparedError
from localize.process_pool import ordered_map
from stages import index as index_stage
from stages import preprocess


def build(tmp_path: Path, size: int = 16, workers: int = 2, **tree) -> tuple[Path, Path, dict]:
    """Tree -> index -> prepared; returns (index csv, prepared dir, manifest)."""
    root = tmp_path / "celebahq"
    make_tree(root, **tree)
    csv = tmp_path / "index.csv"
    index_stage.run(root, csv, tmp_path / "problems.csv", tmp_path / "data.json",
                    IndexParams(workers=workers))
    out = tmp_path / "prepared"
    manifest = preprocess.run(csv, out, PreprocessParams(size=size, workers=workers))
    return csv, out, manifest


def test_arrays_shapes_polarity_and_ids(tmp_path):
    csv, out, manifest = build(tmp_path, size=16)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["size"] == 16
    assert manifest["generators"] == ["lama", "ldm", "pluralistic", "repaint"]
    assert manifest["splits"][REAL] == {"train": 3, "valid": 2, "test": 2}
    assert manifest["splits"]["repaint"] == {"train": 3, "valid": 2, "test": 2}
    assert manifest["splits"]["p2"] == {"train": 3, "valid": 2, "test": 2}  # trains (weakly); never a test set

    index = read_index(csv)
    for (gen, split), rows in index.groupby(["generator", "split"]):
        folder = out / gen / split
        images = np.load(folder / "images.npy", mmap_mode="r")
        masks = np.load(folder / "masks.npy", mmap_mode="r")
        assert isinstance(images, np.memmap) and isinstance(masks, np.memmap)
        assert images.shape == (len(rows), 16, 16, 3) and images.dtype == np.uint8
        assert masks.shape == (len(rows), 16, 16) and masks.dtype == np.uint8
        assert (folder / "ids.txt").read_text().splitlines() == list(rows["id"])
        for k, row in enumerate(rows.itertuples()):
            # Images: area-averaged from the decoded file, bit for bit.
            assert np.array_equal(images[k], resize_image(load_rgb(row.image), 16, 16))
            if gen == REAL:
                assert not masks[k].any()
                continue
            if gen == "p2":  # fully generated, no mask file: every pixel fake
                assert masks[k].all()
                continue
            # Masks: 1 = fake where the file is 0; binarized, then nearest.
            fake = (np.asarray(Image.open(row.mask).convert("RGB"))[:, :, 0] != 255).astype(np.uint8)
            assert set(np.unique(masks[k])) <= {0, 1}
            assert np.array_equal(masks[k], resize_mask(fake, 16, 16))
            assert masks[k].mean() == pytest.approx(row.fake_fraction, abs=0.08)


def test_prepared_reader(tmp_path):
    _, out, _ = build(tmp_path, folders=("lama", "ldm"), counts={"train": 2, "test": 1}, p2=False)
    prepared = Prepared(out)
    assert prepared.size == 16 and prepared.generators == ["lama", "ldm"]
    assert prepared.has("lama", "train") and not prepared.has("lama", "valid")
    assert prepared.splits[REAL]["test"] == 1
    images, masks = prepared.arrays("ldm", "train")
    assert images.shape == (2, 16, 16, 3) and masks.shape == (2, 16, 16)
    assert prepared.ids("ldm", "train") == ["00001", "00002"]
    with pytest.raises(PreparedError, match=r"no lama/valid arrays; available: .*lama/train"):
        prepared.arrays("lama", "valid")
    with pytest.raises(KeyError):  # also a KeyError, for code that looks names up
        prepared.ids("nope", "train")
    with pytest.raises(FileNotFoundError, match="run the preprocess stage"):
        Prepared(tmp_path / "nowhere")


def test_no_valid_split_works(tmp_path):
    _, out, manifest = build(tmp_path, counts={"train": 2, "test": 2}, real=False, p2=False)
    assert all(set(c) == {"train", "test"} for c in manifest["splits"].values())
    assert REAL not in manifest["splits"]
    assert not (out / "lama" / "valid").exists()


def test_l_and_rgb_masks_have_the_same_polarity(tmp_path):
    folder = tmp_path / "m"
    box = (2, 3, 8, 6)
    write_mask(folder / "rgb.png", box, mode="RGB")
    write_mask(folder / "l.png", box, mode="L")
    for name in ("rgb", "l"):
        image = tmp_path / f"{name}.png"
        Image.new("RGB", (SIZE, SIZE)).save(image)
        _, mask = preprocessing.prepare_pair((str(image), str(folder / f"{name}.png"), SIZE, SIZE, SIZE))
        assert mask.sum() == 8 * 6 and mask[2:10, 3:9].all() and mask.dtype == np.uint8


def test_upscaling_is_bilinear_and_downscaling_is_area():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    bilinear = cv2.resize(img, (32, 32), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_image(img, 32, 32), bilinear)
    assert np.array_equal(resize_image(img, 8, 8), cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA))
    # 24 -> 8 area averaging is the exact mean of each 3x3 block.
    blocks = img.reshape(8, 3, 8, 3, 3).mean(axis=(1, 3))
    assert np.abs(resize_image(img, 8, 8).astype(float) - blocks).max() <= 0.5 + 1e-9
    mask = np.zeros((24, 24), bool)
    mask[6:18, 0:12] = True
    small = resize_mask(mask, 8, 8)
    assert small.dtype == bool and small[2:6, 0:4].all() and small.sum() == 16


def test_palette_and_alpha_are_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (SIZE, SIZE), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 0, 255, 255), (0, 0, 12, SIZE))  # opaque blue left half
    assert np.array_equal(np.asarray(to_rgb(rgba))[0, 20], [255, 255, 255])
    rgba.save(tmp_path / "rgba.png")
    image, mask = preprocessing.prepare_pair((str(tmp_path / "rgba.png"), "", SIZE, SIZE, SIZE))
    assert mask is None
    assert np.array_equal(image[0, 0], [0, 0, 255]) and np.array_equal(image[0, 20], [255, 255, 255])
    grey = Image.fromarray(np.full((SIZE, SIZE), 7, np.uint8))
    assert np.array_equal(np.asarray(to_rgb(grey))[0, 0], [7, 7, 7])


def test_same_index_gives_identical_bytes(tmp_path):
    csv, out, _ = build(tmp_path, folders=("lama",), counts={"train": 3}, p2=False)
    again = tmp_path / "again"
    preprocess.run(csv, again, PreprocessParams(size=16, workers=1))
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (out / f).read_bytes() == (again / f).read_bytes()


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".prepared"))


@pytest.mark.parametrize("workers", [1, 2])
def test_decode_failure_names_the_file_and_leaves_nothing(tmp_path, workers):
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama", "ldm"), counts={"train": 4, "test": 2}, p2=False)
    csv = tmp_path / "index.csv"
    index_stage.run(root, csv, tmp_path / "p.csv", tmp_path / "d.json", IndexParams(workers=1))
    # Damaged after indexing: the chunk CRCs can pass while the compressed data is garbage.
    bad = root / "fake/ldm/images/train/00003.png"
    data = bytearray(bad.read_bytes())
    data[60:80] = bytes(20)
    bad.write_bytes(bytes(data))
    out = tmp_path / "prepared"
    with pytest.raises(ImageReadError) as info:
        preprocess.run(csv, out, PreprocessParams(size=8, workers=workers))
    assert str(bad) in str(info.value)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_changed_file_size_is_caught(tmp_path):
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama",), counts={"train": 2}, real=False, p2=False)
    csv = tmp_path / "index.csv"
    index_stage.run(root, csv, tmp_path / "p.csv", tmp_path / "d.json", IndexParams(workers=1))
    bad = root / "fake/lama/masks/train/00002.png"
    write_mask(bad, (0, 0, 2, 2), size=SIZE + 4)
    with pytest.raises(ImageReadError, match="00002.png: mask is 28x28"):
        preprocess.run(csv, tmp_path / "prepared", PreprocessParams(size=8, workers=1))
    assert not (tmp_path / "prepared").exists()


def test_bad_index_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the index stage"):
        preprocess.run(tmp_path / "none.csv", tmp_path / "out", PreprocessParams())
    csv = tmp_path / "index.csv"
    pd.DataFrame({"generator": ["lama"], "split": ["train"]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="missing column"):
        preprocess.run(csv, tmp_path / "out", PreprocessParams())
    row = dict(generator=REAL, split="train", id="1", image="x.png", mask="", width=4, height=4,
               fake_fraction=0)
    pd.DataFrame([row]).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="no fake generator"):
        preprocess.run(csv, tmp_path / "out", PreprocessParams())
    assert not (tmp_path / "out").exists()


def test_main_runs_from_params(tmp_path, monkeypatch):
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama",), counts={"train": 2}, p2=False)
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("index:\n  workers: 1\npreprocess:\n  size: 12\n  workers: 1\n")
    index_stage.main(["--root", "celebahq", "--out", "data/index.csv", "--problems", "data/p.csv",
                      "--metrics", "metrics/data.json"])
    preprocess.main(["--index", "data/index.csv", "--out", "data/prepared"])
    assert Prepared("data/prepared").arrays("lama", "train")[0].shape == (2, 12, 12, 3)
    Path("params.yaml").write_text("preprocess:\n  size: 0\n")
    with pytest.raises(SystemExit, match="error: params 'preprocess'"):
        preprocess.main(["--index", "data/index.csv", "--out", "data/prepared"])


def _square(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * x


def test_ordered_map_keeps_order_and_propagates_errors():
    assert list(ordered_map(_square, list(range(300)), workers=2, max_chunk=16)) == [x * x for x in range(300)]
    assert list(ordered_map(_square, [3, 4], workers=1, max_chunk=16)) == [9, 16]
    with pytest.raises(ValueError, match="negative"):
        list(ordered_map(_square, [*range(50), -1, *range(50)], workers=2, max_chunk=16))
    # A consumer that stops early must not hang the pool.
    results = ordered_map(_square, list(range(1000)), workers=2, max_chunk=16)
    assert next(results) == 0
    results.close()


def test_workers_write_the_same_bytes_as_one_process(tmp_path):
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama", "ldm"), counts={"train": 9, "test": 3}, p2=False)
    csv = tmp_path / "index.csv"
    index_stage.run(root, csv, tmp_path / "p.csv", tmp_path / "d.json", IndexParams(workers=1))
    for workers in (1, 2):
        preprocess.run(csv, tmp_path / f"w{workers}", PreprocessParams(size=20, workers=workers))
    one, two = tmp_path / "w1", tmp_path / "w2"
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 1 + 3 * 2 * 3  # manifest + (real, lama, ldm) x (train, test) x 3 files
    for f in files:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f
    assert np.load(two / "real/train/masks.npy").sum() == 0


def test_params_are_validated():
    assert parse_section(PreprocessParams, None, "preprocess") == PreprocessParams(size=64, workers=0)
    with pytest.raises(ParamsError, match="size"):
        parse_section(PreprocessParams, {"size": 0}, "preprocess")
    with pytest.raises(ParamsError, match="expected int"):
        parse_section(PreprocessParams, {"size": "64"}, "preprocess")


def test_opencv_fast_path_matches_pillow(tmp_path):
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    red = np.full((20, 30, 3), 255, np.uint8)
    red[5:9, :, 0] = 0  # only channel 0 says fake here: an RGB mask must be read by its red channel
    red[:, :3, 1:] = 0
    Image.fromarray(red).save(tmp_path / "mask_rgb.png")
    Image.fromarray(red[:, :, 0]).save(tmp_path / "mask_l.png")
    Image.fromarray(red).convert("RGBA").save(tmp_path / "mask_rgba.png")
    Image.fromarray(red).convert("P").save(tmp_path / "mask_p.png")
    Image.fromarray(red[:, :, 0]).convert("LA").save(tmp_path / "mask_la.png")
    Image.fromarray(red[:, :, 0]).convert("1").save(tmp_path / "mask_1bit.png")
    for name in ("mask_rgb.png", "mask_l.png", "mask_rgba.png", "mask_p.png", "mask_la.png", "mask_1bit.png"):
        fast, slow = load_fake_mask(tmp_path / name), load_fake_mask(tmp_path / name, fast=False)
        assert np.array_equal(fast, slow) and fast.sum() == 4 * 30, name

    palette = Image.open(tmp_path / "rgb.png").quantize(16)
    palette.save(tmp_path / "p.png")
    palette.save(tmp_path / "p_trns.png", transparency=0)  # colour 0 transparent -> white
    palette.convert("L").save(tmp_path / "l.png")
    palette.convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(tmp_path / "grey16.png")
    for name in ("rgb.png", "p.png", "p_trns.png", "l.png", "rgba.png", "grey16.png"):
        fast, slow = load_rgb(tmp_path / name), load_rgb(tmp_path / name, fast=False)
        assert fast.shape == (20, 30, 3) and fast.dtype == np.uint8 and np.array_equal(fast, slow), name
    transparent = np.asarray(palette) == 0
    assert transparent.any() and (load_rgb(tmp_path / "p_trns.png")[transparent] == 255).all()
    assert (load_rgb(tmp_path / "grey16.png") == 40000 >> 8).all()


def test_an_id_with_a_line_break_is_refused(tmp_path):
    """ids.txt holds one id per line: an index edited by hand with such an id is refused, nothing written."""
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama",), counts={"train": 2}, real=False, p2=False)
    csv = tmp_path / "index.csv"
    index_stage.run(root, csv, tmp_path / "p.csv", tmp_path / "d.json", IndexParams(workers=1))
    frame = read_index(csv)
    frame.loc[0, "id"] = "000\n01"
    frame.to_csv(csv, index=False)
    with pytest.raises(preprocessing.IndexFileError, match=r"id '000\\n01' holds a line break"):
        preprocess.run(csv, tmp_path / "out", PreprocessParams())
    assert not (tmp_path / "out").exists()


def test_a_file_grown_since_indexing_is_refused_from_its_header(tmp_path):
    """The indexed size bounds every decode in preprocess: a file now declaring 30000² is never decoded."""
    from conftest import png_declaring

    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama",), counts={"train": 2}, real=False, p2=False)
    csv = tmp_path / "index.csv"
    index_stage.run(root, csv, tmp_path / "p.csv", tmp_path / "d.json", IndexParams(workers=1))
    png_declaring(root / "fake/lama/masks/train/00002.png", 30000, 30000, colour=0)
    with pytest.raises(ImageReadError, match=r"00002.png: mask is 30000x30000 but its image is 24x24"):
        preprocess.run(csv, tmp_path / "out", PreprocessParams(workers=1))


def test_a_file_with_a_2gb_tail_since_indexing_is_refused_unread(tmp_path):
    """A valid image that has grown a 2 GB tail since indexing: named in one line, never read (peak RSS)."""
    from conftest import PYTHON, run_measured
    from test_index import add_sparse_tail

    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama",), counts={"train": 2}, real=False, p2=False)
    csv = tmp_path / "index.csv"
    index_stage.run(root, csv, tmp_path / "p.csv", tmp_path / "d.json", IndexParams(workers=1))
    bad = add_sparse_tail(root / "fake/lama/images/train/00002.png")
    (tmp_path / "params.yaml").write_text("preprocess:\n  size: 16\n  workers: 1\n")
    status, _, err, peak = run_measured([PYTHON, "-m", "stages.preprocess", "--index", str(csv), "--out",
                                         str(tmp_path / "out")], tmp_path)
    assert status == 1 and "Traceback" not in err
    assert f"{bad}: file is " in err and "far more than its 24x24 pixels need" in err
    assert peak < 500, f"peak RSS {peak:.0f} MB"
    assert not (tmp_path / "out").exists()
