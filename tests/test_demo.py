"""The demo dataset: Dolos layout, mask polarity and bounds, identity splits, determinism, generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from localize.config import ParamsError, parse_section
from localize.demo import faces, generators, masks
from localize.layout import REAL, SPLITS
from stages import demo
from stages.demo import DemoParams, run

# Every fill, plain and re-encoded, so each kind of generator is checked; tiny crops, few faces.
CFG = DemoParams(size=48, max_faces=8, seed=3,
                 generators=["telea", "navier-stokes", "biharmonic", "poisson", "biharmonic-jpeg"])
PASTE_BACK = ["telea", "navier-stokes", "biharmonic", "poisson"]
REENCODED = ["biharmonic-jpeg"]


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> tuple[Path, Path, demo.Summary]:
    """The same params built twice: in this process, and with a two-worker pool."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    summary = run(a / "demo", a / "sheet.png", CFG, jobs=1)
    run(b / "demo", b / "sheet.png", CFG, jobs=2)
    return a, b, summary


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def _ids(folder: Path) -> set[str]:
    return {p.stem for p in folder.iterdir()}


def test_layout_and_png_formats(builds):
    root = builds[0] / "demo"
    assert sorted(p.name for p in root.iterdir()) == ["fake", REAL]
    assert sorted(p.name for p in (root / "fake").iterdir()) == sorted(CFG.generators)
    assert sorted(p.name for p in (root / REAL).iterdir()) == sorted(SPLITS)
    total = 0
    for split in SPLITS:
        ids = _ids(root / REAL / split)
        assert ids, f"empty split {split}"
        total += len(ids)
        for name in CFG.generators:
            assert _ids(root / "fake" / name / "images" / split) == ids
            assert _ids(root / "fake" / name / "masks" / split) == ids
        for photo_id in ids:
            for path, mode, shape in [
                (root / REAL / split / f"{photo_id}.png", "RGB", (48, 48, 3)),
                *[(root / "fake" / g / "images" / split / f"{photo_id}.png", "RGB", (48, 48, 3))
                  for g in CFG.generators],
                *[(root / "fake" / g / "masks" / split / f"{photo_id}.png", "L", (48, 48))
                  for g in CFG.generators],
            ]:
                assert path.suffix == ".png"
                with Image.open(path) as im:
                    assert (im.format, im.mode) == ("PNG", mode), path
                assert _png(path).shape == shape
    assert total == CFG.max_faces
    with Image.open(builds[0] / "sheet.png") as sheet:
        assert sheet.format == "PNG"
        assert sheet.mode == "RGB"


def _triples(root: Path, name: str):
    for split in SPLITS:
        for real_path in sorted((root / REAL / split).iterdir()):
            fake = _png(root / "fake" / name / "images" / split / real_path.name)
            mask = _png(root / "fake" / name / "masks" / split / real_path.name)
            yield _png(real_path), fake, mask


def test_mask_polarity_zero_is_fake(builds):
    # Where a paste-back generator changed pixels, the mask must read 0 (fake); 255 elsewhere.
    root = builds[0] / "demo"
    for name in PASTE_BACK:
        changed_inside = 0
        for real, fake, mask in _triples(root, name):
            assert set(np.unique(mask)) <= {0, 255}
            changed = (real != fake).any(axis=2)
            assert not changed[mask == 255].any(), name
            changed_inside += int(changed[mask == 0].sum())
        assert changed_inside > 0, f"{name} changed nothing inside its masks"


def test_fake_fractions_within_bounds(builds):
    root, summary = builds[0] / "demo", builds[2]
    for name in CFG.generators:
        fractions = [float((mask == 0).mean()) for _, _, mask in _triples(root, name)]
        assert len(fractions) == CFG.max_faces
        assert all(CFG.min_fake <= f <= CFG.max_fake for f in fractions), (name, fractions)
        assert sorted(fractions) == sorted(summary.fake_fractions[name].values())


def test_each_generator_draws_its_own_masks(builds):
    root = builds[0] / "demo"
    split = "train"
    photo = sorted((root / REAL / split).iterdir())[0].name
    drawn = {_png(root / "fake" / g / "masks" / split / photo).tobytes() for g in CFG.generators}
    assert len(drawn) == len(CFG.generators)


def test_no_identity_in_two_splits(builds):
    root, summary = builds[0] / "demo", builds[2]
    seen: dict[str, str] = {}
    contents: dict[bytes, str] = {}
    for split in SPLITS:
        for path in (root / REAL / split).iterdir():
            assert path.stem not in seen, f"{path.stem} in {seen.get(path.stem)} and {split}"
            seen[path.stem] = split
            # Distinct ids must also be distinct photos: duplicates were dropped by content.
            pixels = _png(path).tobytes()
            assert pixels not in contents
            contents[pixels] = split
        assert sorted(_ids(root / REAL / split)) == summary.splits[split]
        for name in CFG.generators:
            for kind in ("images", "masks"):
                for photo_id in _ids(root / "fake" / name / kind / split):
                    assert seen[photo_id] == split


def test_donors_come_from_the_same_split():
    rng = np.random.default_rng(0)
    box = faces.Box(12, 12, 24, 24)
    pool = [faces.Face(f"id{i}", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), box, True)
            for i in range(4)]
    for face in pool[:3]:
        donor = demo.pick_donor(face, pool[:3], "poisson", seed=1)
        assert any(donor is other.image for other in pool[:3] if other is not face)
    alone = demo.pick_donor(pool[3], [pool[3]], "poisson", seed=1)
    assert np.array_equal(alone, pool[3].image[:, ::-1])


def test_byte_identical_reruns_whatever_the_worker_count(builds):
    a, b = builds[0], builds[1]
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert len(files_a) == CFG.max_faces * (1 + 2 * len(CFG.generators)) + 1
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_paste_back_keeps_unmasked_pixels_and_reencoding_changes_them(builds):
    root = builds[0] / "demo"
    for name in PASTE_BACK:
        for real, fake, mask in _triples(root, name):
            np.testing.assert_array_equal(fake[mask == 255], real[mask == 255], err_msg=name)
    for name in REENCODED:
        shares = []
        for real, fake, mask in _triples(root, name):
            outside = mask == 255
            shares.append((fake[outside] != real[outside]).any(axis=1).mean())
        # JPEG rewrites every pixel, but flat white studio background decodes back to 255 exactly.
        assert min(shares) > 0.2, (name, shares)
        assert np.mean(shares) > 0.5, (name, shares)


def test_generate_direct():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    donor = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[0:12, 20:32] = True  # touches the border: seamlessClone's awkward case
    for name in generators.NAMES:
        fake = generators.generate(name, image, mask, donor, jpeg_quality=50)
        assert fake.shape == image.shape
        assert fake.dtype == np.uint8
        if not name.endswith(generators.JPEG_SUFFIX):
            np.testing.assert_array_equal(fake[~mask], image[~mask])
            assert (fake[mask] != image[mask]).any(), name
    with pytest.raises(ValueError, match="choose from"):
        generators.generate("lama", image, mask)


def test_masks_are_seeded_and_bounded():
    box = faces.Box(16, 16, 32, 32)
    one = masks.draw_mask(masks.rng_for(7, "telea", "abc"), 64, box, 0.05, 0.2)
    two = masks.draw_mask(masks.rng_for(7, "telea", "abc"), 64, box, 0.05, 0.2)
    other = masks.draw_mask(masks.rng_for(7, "poisson", "abc"), 64, box, 0.05, 0.2)
    assert one.dtype == bool
    assert np.array_equal(one, two)
    assert not np.array_equal(one, other)
    assert 0.05 <= one.mean() <= 0.2
    with pytest.raises(ValueError, match="widen"):
        masks.draw_mask(masks.rng_for(0, "x"), 64, box, 0.97, 0.98)


def test_faces_dedup_placeholders_and_transparency(tmp_path):
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    Image.fromarray(photo).save(tmp_path / "b.png")  # same bytes under another name
    grey = np.full((40, 30, 3), 255, np.uint8)
    grey[10:40, 5:25] = 140  # a grey silhouette on white
    Image.fromarray(grey).save(tmp_path / "c.png")
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[20:, :, 3] = 255  # top half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "d.png")
    photos, n_files = faces.scan(tmp_path)
    assert n_files == 4
    assert len(photos) == 3
    assert [p.id for p in photos] == sorted(p.id for p in photos)
    assert [len(p.paths) for p in photos if len(p.paths) > 1] == [2]
    assert faces.is_placeholder(faces.load_rgb(tmp_path / "c.png"))
    assert not faces.is_placeholder(faces.load_rgb(tmp_path / "a.png"))
    composited = faces.load_rgb(tmp_path / "d.png")
    assert composited.shape == (40, 30, 3)
    assert (composited[:20] == 255).all()
    assert (composited[20:] == [200, 0, 0]).all()
    noise = next(p for p in photos if len(p.paths) == 2)
    face = faces.load_face(noise, 24)
    assert face is not None
    assert face.id == noise.id
    assert face.image.shape == (24, 24, 3)
    assert faces.load_face(next(p for p in photos if p.paths[0].name == "c.png"), 24) is None


def test_package_placeholder_is_detected():
    # The most repeated file in the package is its grey 'no photo' silhouette.
    photos, _ = faces.scan(faces.package_photo_dir())
    most_repeated = max(photos, key=lambda p: len(p.paths))
    assert len(most_repeated.paths) > 10
    assert faces.is_placeholder(faces.load_rgb(most_repeated.paths[0]))


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(generators, "generate", broken)
    with pytest.raises(ValueError, match="boom"):
        run(tmp_path / "demo", tmp_path / "sheet.png", DemoParams(size=32, max_faces=3), jobs=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("values", "message"), [
    ({"generators": ["lama"]}, "biharmonic-jpeg"),
    ({"generators": []}, "distinct names"),
    ({"min_fake": 0.5, "max_fake": 0.4}, "min_fake"),
    ({"valid_fraction": 0.5, "test_fraction": 0.5}, "train"),
    ({"sizes": 64}, "allowed keys"),
])
def test_bad_params_fail_clearly(values, message):
    with pytest.raises(ParamsError, match=message):
        parse_section(DemoParams, values, "demo")


def test_main_turns_errors_into_exit(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("demo:\n  jpeg_quality: 0\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: .*jpeg_quality"):
        demo.main(["--out", "data/demo", "--sheet", "sheet.png"])
    assert not (tmp_path / "data").exists()
