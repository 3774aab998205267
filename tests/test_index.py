"""The index stage on tiny trees in Dolos' exact layout: names, rows, checks, and every bad case."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PYTHON, png_declaring, run_measured
from PIL import Image

from localize.config import ParamsError, parse_section
from localize.imageio import (
    MAX_PIXELS,
    ImageReadError,
    ImageTooLargeError,
    check_image,
    load_mask_channel0,
    load_rgb,
    load_upright_rgb,
)
from localize.index_csv import printable
from localize.indexing import IndexDataError
from localize.layout import REAL
from localize.params import DataParams, IndexParams
from stages import index as index_stage
from stages import preprocess as preprocess_stage

DOLOS_FOLDERS = ("repaint-p2-9k", "lama", "ldm", "pluralistic")
SHORT = {"repaint-p2-9k": "repaint", "lama": "lama", "ldm": "ldm", "pluralistic": "pluralistic"}
SIZE = 24
COUNTS = {"train": 3, "valid": 2, "test": 2}


def write_image(path: Path, rng: np.random.Generator, size: int = SIZE, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).convert(mode).save(path)


def write_mask(path: Path, box: tuple[int, int, int, int], size: int = SIZE, mode: str = "RGB") -> float:
    """A Dolos mask: 0 = fake inside `box` (y, x, h, w), 255 elsewhere. Returns the fake fraction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x, h, w = box
    grey = np.full((size, size), 255, np.uint8)
    grey[y : y + h, x : x + w] = 0
    Image.fromarray(grey).convert(mode).save(path)
    return h * w / size**2


def make_tree(root: Path, folders=DOLOS_FOLDERS, counts=COUNTS, real=True, p2=True, seed=0) -> dict:
    """A Dolos-layout tree; returns {(generator, split, id): fake fraction} for every pair written.

    Ids are zero-padded numbers, as in Dolos, so the index must keep them as strings.
    Masks alternate between RGB and L, the two formats Dolos ships.
    """
    rng = np.random.default_rng(seed)
    expected = {}
    n = 0
    for split, count in counts.items():
        for _ in range(count):
            n += 1
            ident = f"{n:05d}"
            if real:
                write_image(root / "real" / split / f"{ident}.png", rng)
                expected[REAL, split, ident] = 0.0
            for g, folder in enumerate(folders):
                base = root / "fake" / folder
                write_image(base / "images" / split / f"{ident}.png", rng)
                box = (g + n % 5, 2 * g + 1, 4 + n % 7, 3 + g)
                mode = "RGB" if n % 2 else "L"
                expected[SHORT.get(folder, folder), split, ident] = write_mask(
                    base / "masks" / split / f"{ident}.png", box, mode=mode)
            if p2:  # fully generated faces, no masks: Dolos' p2 layout
                write_image(root / "fake" / "p2" / split / f"{ident}.png", rng)
    return expected


def run_index(root: Path, out: Path, on_error: str = "fail", workers: int = 2) -> pd.DataFrame:
    return index_stage.run(root, out / "index.csv", out / "problems.csv", out / "data.json",
                           IndexParams(on_error=on_error, workers=workers))


def problems(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "problems.csv", dtype=str, keep_default_na=False)


def test_reads_dolos_tree_with_short_names(tmp_path):
    root = tmp_path / "celebahq"
    expected = make_tree(root)
    out = tmp_path / "out"
    run_index(root, out)

    index = pd.read_csv(out / "index.csv", dtype={"id": str}, keep_default_na=False)
    assert list(index.columns) == ["generator", "split", "id", "image", "mask", "width", "height",
                                   "fake_fraction"]
    assert sorted(set(index["generator"])) == ["lama", "ldm", "p2", "pluralistic", REAL, "repaint"]
    assert len(index) == len(expected) + 7 == 6 * 7  # p2: 7 fully generated faces, not in `expected`
    keys = list(zip(index["generator"], index["split"], index["id"]))
    assert keys == sorted(keys)  # deterministic order
    for row in index[index["generator"] != "p2"].itertuples():
        assert row.fake_fraction == pytest.approx(expected[row.generator, row.split, row.id], abs=1e-6)
        assert (row.width, row.height) == (SIZE, SIZE)
    lama = index[(index["generator"] == "lama") & (index["id"] == "00001")].iloc[0]
    assert lama["image"] == str(root / "fake/lama/images/train/00001.png")
    assert lama["mask"] == str(root / "fake/lama/masks/train/00001.png")
    real = index[index["generator"] == REAL]
    assert (real["mask"] == "").all() and (real["fake_fraction"] == 0).all()
    assert real["image"].iloc[0].startswith(str(root / "real"))

    report = problems(out)
    assert list(report.columns) == ["severity", "kind", "generator", "split", "path", "problem"]
    assert (report["severity"] != "error").all()
    p2 = report[report["path"] == str(root / "fake" / "p2")]
    assert len(p2) == 1 and p2["kind"].iloc[0] == "fully-generated" and p2["severity"].iloc[0] == "note"
    generated = index[index["generator"] == "p2"]  # no mask file: every pixel generated
    assert (generated["mask"] == "").all() and (generated["fake_fraction"] == 1).all()

    metrics = json.loads((out / "data.json").read_text())
    assert metrics["pairs"]["lama"] == {"train": 3, "valid": 2, "test": 2}
    assert metrics["pairs"][REAL]["test"] == 2
    assert metrics["dropped"] == 0 and metrics["errors"] == 0 and metrics["images"] == 42


def test_relative_root_gives_root_joined_paths(tmp_path, monkeypatch):
    make_tree(tmp_path / "data" / "demo", folders=("lama",), counts={"train": 2}, p2=False)
    monkeypatch.chdir(tmp_path)
    index = run_index(Path("data/demo"), Path("out"), workers=1)
    assert index["image"].iloc[0] == "data/demo/fake/lama/images/train/00001.png"


def test_single_process_gives_the_same_files(tmp_path):
    root = tmp_path / "celebahq"
    make_tree(root, counts={"train": 4, "test": 2})
    run_index(root, tmp_path / "a", workers=1)
    run_index(root, tmp_path / "b", workers=2)
    for name in ("index.csv", "problems.csv", "data.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_missing_subsets_are_fine_and_noted(tmp_path):
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama", "ldm"), counts={"train": 2, "test": 1}, real=False, p2=False)
    out = tmp_path / "out"
    index = run_index(root, out)
    assert sorted(set(index["generator"])) == ["lama", "ldm"]
    assert set(index["split"]) == {"train", "test"}
    report = problems(out)
    missing = report[report["kind"] == "missing"]
    assert str(root / "real") in set(missing["path"])
    assert str(root / "fake/lama/images/valid") in set(missing["path"])
    assert "valid" not in json.loads((out / "data.json").read_text())["pairs"]["lama"]


def test_repaint_9k_preferred_over_repaint_p2(tmp_path):
    root = tmp_path / "celebahq"
    make_tree(root, folders=("repaint-p2", "repaint-p2-9k"), counts={"train": 2}, p2=False)
    out = tmp_path / "out"
    index = run_index(root, out)
    repaint = index[index["generator"] == "repaint"]
    assert len(repaint) == 2 and all("repaint-p2-9k" in p for p in repaint["image"])
    report = problems(out)
    assert str(root / "fake/repaint-p2") in set(report.loc[report["kind"] == "ignored", "path"])


def test_ffhq_part_has_repaint_p2_only(tmp_path):
    root = tmp_path / "ffhq"
    make_tree(root, folders=("repaint-p2",), counts={"train": 2, "valid": 1, "test": 1}, p2=False)
    index = run_index(root, tmp_path / "out")
    assert sorted(set(index["generator"])) == [REAL, "repaint"]
    assert len(index) == 8


def test_root_errors_are_clear(tmp_path):
    with pytest.raises(IndexDataError, match="not found"):
        run_index(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexDataError, match="no fake/ folder"):
        run_index(tmp_path / "empty", tmp_path / "out")
    # The unzipped folder itself (celebahq/ and ffhq/ inside) instead of celebahq/: say so.
    make_tree(tmp_path / "wacv_data" / "celebahq", folders=("lama",), counts={"train": 1})
    with pytest.raises(IndexDataError, match="celebahq"):
        run_index(tmp_path / "wacv_data", tmp_path / "out")
    # Only fully generated faces (p2): nothing to localize.
    make_tree(tmp_path / "only_p2", folders=(), counts={"train": 1})
    with pytest.raises(IndexDataError, match="no generator folder"):
        run_index(tmp_path / "only_p2", tmp_path / "out")
    assert not (tmp_path / "out" / "index.csv").exists()


# ---- each bad case: fail names the file and writes no index; skip drops and counts ----


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def break_truncated_image(root: Path) -> tuple[Path, int]:
    path = root / "fake/lama/images/train/00002.png"
    _truncate(path)
    return path, 1


def break_garbage_mask(root: Path) -> tuple[Path, int]:
    path = root / "fake/ldm/masks/valid/00004.png"
    path.write_bytes(b"not a png at all")
    return path, 1


def break_truncated_real(root: Path) -> tuple[Path, int]:
    path = root / "real/test/00006.png"
    _truncate(path)
    return path, 1


def break_image_without_mask(root: Path) -> tuple[Path, int]:
    (root / "fake/pluralistic/masks/test/00007.png").unlink()
    return root / "fake/pluralistic/images/test/00007.png", 1


def break_mask_without_image(root: Path) -> tuple[Path, int]:
    (root / "fake/lama/images/train/00001.png").unlink()
    return root / "fake/lama/masks/train/00001.png", 1


def break_size_mismatch(root: Path) -> tuple[Path, int]:
    path = root / "fake/repaint-p2-9k/masks/train/00003.png"
    write_mask(path, (0, 0, 4, 4), size=SIZE * 2)
    return path, 1


def break_empty_split(root: Path) -> tuple[Path, int]:
    folder = root / "fake/ldm/images/test"
    for f in folder.iterdir():
        f.unlink()
    for f in (root / "fake/ldm/masks/test").iterdir():
        f.unlink()
    return folder, 0


def break_duplicate_id(root: Path) -> tuple[Path, int]:
    path = root / "fake/lama/images/valid/00005.jpg"
    Image.open(root / "fake/lama/images/valid/00005.png").save(path)
    return path, 1


def break_broken_symlink_image(root: Path) -> tuple[Path, int]:
    path = root / "fake/lama/images/test/00006.png"  # its mask stays: one problem, not an orphan too
    path.unlink()
    path.symlink_to(root / "elsewhere" / "00006.png")
    return path, 1


def break_broken_symlink_real(root: Path) -> tuple[Path, int]:
    path = root / "real/valid/00004.png"
    path.unlink()
    path.symlink_to("gone.png")
    return path, 1


def break_symlink_loop(root: Path) -> tuple[Path, int]:
    path = root / "fake/ldm/images/train/00003.png"
    path.unlink()
    path.symlink_to("00003.png")  # itself
    return path, 1


def break_newline_in_name(root: Path) -> tuple[Path, int]:
    for kind in ("images", "masks"):
        path = root / f"fake/pluralistic/{kind}/valid/00005.png"
        path.rename(path.with_name("000\n05.png"))
    return Path(printable(str(root / "fake/pluralistic/images/valid/000\n05.png"))), 1  # as the report shows it


BAD_CASES = [break_truncated_image, break_garbage_mask, break_truncated_real, break_image_without_mask,
             break_mask_without_image, break_size_mismatch, break_empty_split, break_duplicate_id,
             break_broken_symlink_image, break_broken_symlink_real, break_symlink_loop, break_newline_in_name]


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "celebahq"
    make_tree(root, p2=False)
    return root


@pytest.mark.parametrize("breaker", BAD_CASES, ids=lambda f: f.__name__.removeprefix("break_"))
def test_bad_input_fails_naming_the_file(tree, tmp_path, breaker):
    bad, _ = breaker(tree)
    out = tmp_path / "out"
    with pytest.raises(IndexDataError) as info:
        run_index(tree, out)
    message = str(info.value)
    assert str(bad) in message
    assert str(out / "problems.csv") in message and "on_error: skip" in message
    assert not (out / "index.csv").exists() and not (out / "data.json").exists()
    assert [p.name for p in out.iterdir()] == ["problems.csv"]  # no temporaries left behind
    report = problems(out)
    assert str(bad) in set(report.loc[report["severity"] == "error", "path"])


@pytest.mark.parametrize("breaker", BAD_CASES, ids=lambda f: f.__name__.removeprefix("break_"))
def test_skip_drops_bad_pairs_and_counts_them(tree, tmp_path, breaker):
    bad, dropped = breaker(tree)
    out = tmp_path / "out"
    index = run_index(tree, out, on_error="skip")
    assert str(bad) not in set(index["image"]) | set(index["mask"])
    metrics = json.loads((out / "data.json").read_text())
    assert metrics["dropped"] == dropped and metrics["errors"] >= 1
    assert metrics["images"] == len(index) == 35 - dropped - (2 if breaker is break_empty_split else 0)
    stored = pd.read_csv(out / "index.csv", dtype={"id": str}, keep_default_na=False)
    assert len(stored) == len(index)


def test_duplicate_id_drops_every_claimant(tree, tmp_path):
    break_duplicate_id(tree)
    index = run_index(tree, tmp_path / "out", on_error="skip")
    assert not ((index["generator"] == "lama") & (index["id"] == "00005")).any()


def test_main_reports_error_as_system_exit(tree, tmp_path, monkeypatch):
    bad, _ = break_truncated_image(tree)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("index:\n  on_error: fail\n  workers: 1\n")
    args = ["--root", str(tree), "--out", "d/index.csv", "--problems", "d/problems.csv",
            "--metrics", "m.json"]
    with pytest.raises(SystemExit) as info:
        index_stage.main(args)
    assert str(info.value).startswith("error: ") and str(bad) in str(info.value)
    assert not (tmp_path / "d" / "index.csv").exists()
    (tmp_path / "params.yaml").write_text("index:\n  on_error: skip\n")
    index_stage.main(args)
    assert json.loads((tmp_path / "m.json").read_text())["dropped"] == 1


# ---- notes: reported, never fatal ----


def test_non_rgb_image_is_noted_not_fatal(tree, tmp_path):
    path = tree / "fake/lama/images/test/00006.png"
    rgba = Image.open(path).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(path)
    Image.open(tree / "real/train/00001.png").convert("P").save(tree / "real/train/00001.png")
    out = tmp_path / "out"
    index = run_index(tree, out)  # on_error: fail, yet it passes
    assert len(index) == 35
    notes = problems(out).query("kind == 'not-rgb'")
    assert set(notes["path"]) == {str(path), str(tree / "real/train/00001.png")}
    assert (notes["severity"] == "note").all()
    assert "RGBA" in notes.loc[notes["path"] == str(path), "problem"].iloc[0]
    assert json.loads((out / "data.json").read_text())["not_rgb"] == 2


def test_grey_mask_values_are_counted_and_count_as_fake(tree, tmp_path):
    path = tree / "fake/ldm/masks/train/00002.png"
    grey = np.full((SIZE, SIZE), 255, np.uint8)
    grey[:2, :] = 0
    grey[2, :5] = 254  # JPEG-like noise just below 255: Dolos' rule (!= 255) calls it fake
    grey[3, :3] = 128
    Image.fromarray(grey).save(path)
    out = tmp_path / "out"
    index = run_index(tree, out)
    row = index[(index["generator"] == "ldm") & (index["id"] == "00002")].iloc[0]
    assert row["fake_fraction"] == pytest.approx((2 * SIZE + 5 + 3) / SIZE**2, abs=1e-6)
    note = problems(out).query("kind == 'grey-mask'")
    assert list(note["path"]) == [str(path)] and note["problem"].iloc[0].startswith("8 pixel(s)")
    assert json.loads((out / "data.json").read_text())["grey_masks"] == 1


def test_stray_files_and_split_leaks_are_noted(tree, tmp_path):
    (tree / "real/train/.DS_Store").write_bytes(b"x")
    (tree / "real/train/readme.txt").write_text("hi")
    os.link(tree / "fake/lama/images/train/00001.png", tree / "fake/lama/images/test/00001.png")
    os.link(tree / "fake/lama/masks/train/00001.png", tree / "fake/lama/masks/test/00001.png")
    out = tmp_path / "out"
    index = run_index(tree, out)
    assert len(index) == 36
    report = problems(out)
    ignored = set(report.loc[report["kind"] == "ignored", "path"])
    assert {str(tree / "real/train/.DS_Store"), str(tree / "real/train/readme.txt")} <= ignored
    leak = report[report["kind"] == "id-in-several-splits"]
    assert set(leak["split"]) == {"train", "test"} and (leak["severity"] == "note").all()


def test_params_are_validated():
    assert parse_section(IndexParams, None, "index") == IndexParams(on_error="fail", workers=0)
    with pytest.raises(ParamsError, match="fail, skip"):
        parse_section(IndexParams, {"on_error": "ignore"}, "index")
    with pytest.raises(ParamsError, match="workers"):
        parse_section(IndexParams, {"workers": -1}, "index")
    with pytest.raises(ParamsError, match="unknown"):
        parse_section(IndexParams, {"root": "x"}, "index")


def test_png_check_reads_modes_like_pillow_and_catches_damage(tmp_path):
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8))
    variants = {
        "rgb": (rgb, {}), "l": (rgb.convert("L"), {}), "one": (rgb.convert("1"), {}),
        "p": (rgb.quantize(8), {}), "p_trns": (rgb.quantize(8), {"transparency": 0}),
        "rgba": (rgb.convert("RGBA"), {}), "la": (rgb.convert("LA"), {}),
        "rgb_trns": (rgb, {"transparency": (0, 0, 0)}),
        "grey16": (Image.fromarray(rng.integers(0, 65535, (9, 13), dtype=np.uint16)), {}),
    }
    for name, (img, options) in variants.items():
        path = tmp_path / f"{name}.png"
        img.save(path, **options)
        info = check_image(path)
        with Image.open(path) as pil:
            assert (info.width, info.height, info.mode) == (13, 9, pil.mode), name
            assert info.transparency == ("transparency" in pil.info), name
        assert info.is_rgb == (name == "rgb"), name

    good = (tmp_path / "rgb.png").read_bytes()
    damaged = {
        "cut.png": (good[: len(good) - 30], "truncated"),
        "no_iend.png": (good[:-12], "no IEND"),
        "crc.png": (good[:50] + bytes([good[50] ^ 0xFF]) + good[51:], "IDAT fails its CRC"),
        "empty.png": (b"", "empty file"),
        "text.png": (b"hello", "not an image"),
    }
    for name, (data, words) in damaged.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError, match=words) as info:
            check_image(tmp_path / name)
        assert info.value.path == str(tmp_path / name)


# ---- symlinks, file names, bounded decoding ----


def test_a_broken_symlink_is_its_own_problem_and_nothing_else(tree, tmp_path):
    bad, _ = break_broken_symlink_image(tree)
    real, _ = break_broken_symlink_real(tree)
    (tree / "real/train/notes.txt").symlink_to("nowhere.txt")  # not an image name: a note
    out = tmp_path / "out"
    with pytest.raises(IndexDataError):
        run_index(tree, out)
    report = problems(out)
    errors = report[report["severity"] == "error"]
    assert set(errors["kind"]) == {"broken-symlink"}  # no "mask without an image", no "not an image file"
    rows = errors.set_index("path")
    assert rows.loc[str(bad), "problem"] == f"broken symlink → {tree / 'elsewhere' / '00006.png'} (no such file)"
    assert rows.loc[str(real), "problem"].startswith("broken symlink → gone.png")
    note = report[report["path"] == str(tree / "real/train/notes.txt")]
    assert list(note["severity"]) == ["note"] and "broken symlink → nowhere.txt" in note["problem"].iloc[0]


def test_a_symlink_loop_is_a_row_and_skip_carries_on(tree, tmp_path):
    loop, _ = break_symlink_loop(tree)
    split = tree / "real/test"
    for f in split.iterdir():
        f.unlink()
    split.rmdir()
    split.symlink_to("test")  # a folder that is a loop
    out = tmp_path / "out"
    index = run_index(tree, out, on_error="skip")
    report = problems(out)
    loops = report[report["kind"] == "symlink-loop"]
    assert set(loops["path"]) == {str(loop), str(split)} and (loops["severity"] == "error").all()
    assert "never reaches a file" in loops["problem"].iloc[0]
    assert len(index) == 35 - 1 - 2  # the looped image, and real/test's two faces
    with pytest.raises(IndexDataError, match="symlink-loop"):
        run_index(tree, tmp_path / "fail")
    assert (tmp_path / "fail" / "problems.csv").exists()


def test_names_that_cannot_be_stored_one_per_line_are_refused(tree, tmp_path):
    names = {"000\n05": "pluralistic", "a\u2028b": "lama", "tab\there": "ldm"}
    for stem, folder in names.items():
        for kind in ("images", "masks"):
            Image.open(tree / f"fake/{folder}/{kind}/valid/00005.png").save(
                tree / f"fake/{folder}/{kind}/valid/{stem}.png")
    raw = os.fsencode(tree / "real/valid") + b"/bad\xff.png"  # bytes that are not UTF-8
    Path(os.fsdecode(raw)).write_bytes((tree / "real/valid/00004.png").read_bytes())
    out = tmp_path / "out"
    with pytest.raises(IndexDataError) as info:
        run_index(tree, out)
    message = str(info.value).splitlines()
    assert len(message) == 3 and message[1].startswith("  bad-name: 7 (")  # paths shown escaped, on one line
    report = problems(out)
    bad = report[report["kind"] == "bad-name"]
    assert len(bad) == 7 and "rename the file" in bad["problem"].iloc[0]
    assert {str(tree / "real/valid/bad\\xff.png"), str(tree / "fake/pluralistic/images/valid/000\\n05.png"),
            str(tree / "fake/lama/masks/valid/a\\u2028b.png")} <= set(bad["path"])
    assert not (report["kind"].isin(["missing-mask", "missing-image"])).any()
    assert all("\n" not in line for line in (out / "problems.csv").read_text().splitlines(keepends=False)[1:]
               if line)  # one row per line
    # Skip: dropped, and what preprocess writes has one id per line, one line per row.
    run_index(tree, out, on_error="skip")
    preprocess_stage.run(out / "index.csv", tmp_path / "prepared", preprocess_stage.PreprocessParams(size=8))
    for ids in (tmp_path / "prepared").rglob("ids.txt"):
        n = int(np.load(ids.parent / "masks.npy", mmap_mode="r").shape[0])
        assert len(ids.read_text().splitlines()) == n and ids.read_text().count("\n") == n


def test_the_problems_report_is_written_when_the_root_is_unusable(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(IndexDataError, match="not found"):
        run_index(tmp_path / "nowhere", out)
    report = problems(out)
    assert list(report["kind"]) == ["layout"] and "not found" in report["problem"].iloc[0]
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(IndexDataError, match="broken symlink"):
        run_index(tmp_path / "link", out)


def test_pixel_limit_param(tree, tmp_path):
    assert IndexParams().pixel_limit == MAX_PIXELS
    for bad in (0, -5, 10**12, True, 1.5):
        with pytest.raises(ParamsError, match="max_pixels"):
            parse_section(IndexParams, {"max_pixels": bad}, "index")
    out = tmp_path / "out"
    with pytest.raises(IndexDataError, match="too-large: 63"):  # 35 images, 28 masks of 24 x 24 = 576 pixels
        index_stage.run(tree, out / "index.csv", out / "problems.csv", out / "data.json",
                        IndexParams(max_pixels=575, workers=1))
    assert "the limit is 575" in problems(out)["problem"].iloc[0]
    index = index_stage.run(tree, out / "index.csv", out / "problems.csv", out / "data.json",
                            IndexParams(max_pixels=576, workers=1))
    assert len(index) == 35


def test_every_reader_checks_the_header_before_decoding(tree, monkeypatch):
    import cv2
    from PIL import ImageFile

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded before the header check")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    image, mask = tree / "fake/lama/images/train/00001.png", tree / "fake/lama/masks/train/00001.png"
    for read, path in ((check_image, image), (load_rgb, image), (load_upright_rgb, image),
                       (load_mask_channel0, mask)):
        with pytest.raises(ImageTooLargeError, match=r"24x24 = 576 pixels; the limit is 100"):
            read(path, max_pixels=100)
    huge = png_declaring(tree.parent / "huge.png", 30000, 30000)
    assert huge.stat().st_size < 10_000
    for read in (check_image, load_rgb, load_upright_rgb, load_mask_channel0):
        with pytest.raises(ImageTooLargeError, match="too large"):
            read(huge)


def test_huge_declared_files_are_refused_cheaply_and_without_tracebacks(tmp_path):
    """A 30000² mask of a small image, and a 20000² image with its 20000² mask, among good pairs."""
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama",), counts={"train": 2, "test": 1}, p2=False)
    png_declaring(root / "fake/lama/masks/train/00001.png", 30000, 30000, colour=0)
    png_declaring(root / "fake/lama/images/train/00002.png", 20000, 20000)
    png_declaring(root / "fake/lama/masks/train/00002.png", 20000, 20000)
    png_declaring(root / "real/test/00003.png", 30000, 30000)
    args = [PYTHON, "-m", "stages.index", "--root", str(root), "--out", "index.csv", "--problems", "problems.csv",
            "--metrics", "data.json"]
    for on_error in ("skip", "fail"):
        (tmp_path / "params.yaml").write_text(f"index:\n  on_error: {on_error}\n  workers: 2\n")
        status, _, err, peak = run_measured(args, tmp_path)
        assert "Traceback" not in err
        assert peak < 500, f"peak RSS {peak:.0f} MB"
        report = pd.read_csv(tmp_path / "problems.csv", dtype=str, keep_default_na=False).set_index("path")
        mask = report.loc[str(root / "fake/lama/masks/train/00001.png")]
        assert (mask["kind"], mask["problem"]) == ("size-mismatch", "mask is 30000x30000 but its image is 24x24")
        for path in ("fake/lama/images/train/00002.png", "fake/lama/masks/train/00002.png", "real/test/00003.png"):
            assert report.loc[str(root / path), "kind"] == "too-large"
        if on_error == "skip":
            assert status == 0
            index = pd.read_csv(tmp_path / "index.csv", dtype=str, keep_default_na=False)
            assert list(zip(index["generator"], index["id"])) == [("lama", "00003"), (REAL, "00001"),
                                                                  (REAL, "00002")]
        else:
            assert status == 1 and "\nerror: index: 4 problem(s)" in err


def test_data_root_param_is_checked():
    assert parse_section(DataParams, {"root": "/data/my dolos/celebahq"}, "data").root == "/data/my dolos/celebahq"
    for bad in ("", 'a"b', "$HOME/x", "a\nb"):
        with pytest.raises(ParamsError, match="root"):
            parse_section(DataParams, {"root": bad}, "data")


def add_sparse_tail(path: Path, tail: int = 2 << 30) -> Path:
    """Grow a file by `tail` bytes of zeros after its end (IEND for a PNG), sparse: no disk is used."""
    os.truncate(path, path.stat().st_size + tail)
    return path


def test_a_png_with_a_2gb_tail_is_refused_unread(tmp_path):
    """A valid 24x24 PNG followed by 2 GB: refused from its header and its size, never read (peak RSS)."""
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama",), counts={"train": 2, "test": 1}, p2=False)
    bad = add_sparse_tail(root / "fake/lama/images/train/00002.png")
    (tmp_path / "params.yaml").write_text("index:\n  on_error: skip\n  workers: 1\n")
    status, _, err, peak = run_measured([PYTHON, "-m", "stages.index", "--root", str(root), "--out", "index.csv",
                                         "--problems", "problems.csv", "--metrics", "data.json"], tmp_path)
    assert status == 0, err
    assert peak < 500, f"peak RSS {peak:.0f} MB"
    report = pd.read_csv(tmp_path / "problems.csv", dtype=str, keep_default_na=False).set_index("path")
    assert report.loc[str(bad), "kind"] == "too-large"
    assert "far more than its 24x24 pixels need" in report.loc[str(bad), "problem"]
    assert "max_file_bytes_per_pixel 16" in report.loc[str(bad), "problem"]


def test_trailing_bytes_within_the_limit_are_read_and_the_limit_is_a_param(tree):
    from localize.imageio import FILE_SLACK, load_rgb

    # fast=False: Pillow decodes. OpenCV's colour conversion would start its thread pool in this
    # process, and worker processes forked from it later (other tests) hang in cv2.setNumThreads.
    image = tree / "fake/lama/images/train/00001.png"
    before = load_rgb(image, fast=False)
    add_sparse_tail(image, FILE_SLACK)  # metadata-sized: still far inside 16 bytes per pixel + 1 MiB
    assert np.array_equal(load_rgb(image, fast=False), before)
    with pytest.raises(ImageTooLargeError, match="far more than its 24x24 pixels need"):
        load_rgb(image, fast=False, max_file_bytes_per_pixel=1)
    for bad in (0, -1, 10**6, 1.5, True, "16"):
        with pytest.raises(ParamsError, match="max_file_bytes_per_pixel"):
            parse_section(IndexParams, {"max_file_bytes_per_pixel": bad}, "index")


def test_generator_folders_named_like_table_columns_or_splits_are_refused(tmp_path):
    root = tmp_path / "celebahq"
    make_tree(root, folders=("lama", "mean", "no-lama", "baselines"), counts={"train": 1, "test": 1}, p2=False)
    with pytest.raises(IndexDataError, match="reserved-name"):
        run_index(root, tmp_path)
    report = problems(tmp_path).set_index("path")
    for name in ("mean", "no-lama", "baselines"):
        assert report.loc[str(root / "fake" / name), "kind"] == "reserved-name"
        assert f"a generator may not be called '{name}'" in report.loc[str(root / "fake" / name), "problem"]
    index = run_index(root, tmp_path, on_error="skip")
    assert sorted(set(index["generator"])) == ["lama", REAL]
