"""The demo dataset: Dolos layout and mask format, polarity and bounds, identity splits, determinism,
a visible change under every mask, generators."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from localize.config import ParamsError, parse_section
from localize.demo import faces, generators, masks
from localize.layout import REAL, SPLITS
from localize.params import DemoParams
from stages import demo
from stages.demo import run

# Every fill, plain and re-encoded, so each kind of generator is checked; tiny crops, few faces,
# and several fakes per face where a split has them.

def photo_of(fake: str) -> str:
    """The photo id a fake id was made from (photo ids are hex digests: they hold no '-')."""
    return fake.rsplit("-", 1)[0]


def generate(name, image, mask, donor=None, jpeg_quality=75, radius=3, seed=0):
    """The fake generator `name` makes, as stages/demo.py writes it: the fill, then the `-jpeg` round trip."""
    return generators.finish(name, generators.fill(name, image, mask, donor, radius, seed), jpeg_quality)

CFG = DemoParams(size=48, max_faces=8, seed=3, fakes_per_face={"train": 1, "valid": 2, "test": 3},
                 generators=["telea", "navier-stokes", "biharmonic", "poisson", "biharmonic-jpeg", "patchmatch"])
PASTE_BACK = ["telea", "navier-stokes", "biharmonic", "poisson", "patchmatch"]
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


def _fake_ids(photos: set[str], split: str) -> set[str]:
    return {demo.fake_id(p, k) for p in photos for k in range(CFG.fakes_per_face[split])}


def _dolos_fake(path: Path) -> np.ndarray:
    """Dolos' own rule (dolos/data.py, load_mask_keep): PIL, np.asarray, fake where channel 0 != 255."""
    return np.asarray(Image.open(path))[:, :, 0] != 255


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
        fakes = _fake_ids(ids, split)  # <photo>-<k>: unique per generator and split
        assert len(fakes) == len(ids) * CFG.fakes_per_face[split]
        paths = [root / REAL / split / f"{photo_id}.png" for photo_id in ids]
        for name in CFG.generators:
            for kind in ("images", "masks"):
                assert _ids(root / "fake" / name / kind / split) == fakes
                paths += [root / "fake" / name / kind / split / f"{i}.png" for i in fakes]
        for path in paths:
            # Masks are RGB too, as Dolos ships them.
            with Image.open(path) as im:
                assert (im.format, im.mode) == ("PNG", "RGB"), path
            assert _png(path).shape == (48, 48, 3)
    assert total == CFG.max_faces
    with Image.open(builds[0] / "sheet.png") as sheet:
        assert sheet.format == "PNG"
        assert sheet.mode == "RGB"


def _triples(root: Path, name: str):
    """(real, fake, mask channel 0, mask path) for every fake of generator `name`."""
    for split in SPLITS:
        for mask_path in sorted((root / "fake" / name / "masks" / split).iterdir()):
            real = _png(root / REAL / split / f"{photo_of(mask_path.stem)}.png")
            fake = _png(root / "fake" / name / "images" / split / mask_path.name)
            yield real, fake, _png(mask_path)[..., 0], mask_path


def test_masks_read_by_dolos_rule_are_the_intended_masks(tmp_path, monkeypatch):
    # The masks the build drew, recorded on their way to the PNG writer, against what Dolos' code reads back.
    intended: dict[bytes, np.ndarray] = {}
    real_mask_png = demo.mask_png

    def recording(mask):
        out = real_mask_png(mask)
        intended[out.tobytes()] = mask
        return out

    root = tmp_path / "demo"
    monkeypatch.setattr(demo, "mask_png", recording)
    summary = run(root, tmp_path / "sheet.png", CFG, jobs=1)
    n = 0
    for name in CFG.generators:
        for *_, path in _triples(root, name):
            rgb = _png(path)
            assert rgb.ndim == 3 and rgb.shape[2] == 3
            assert (rgb == rgb[..., :1]).all(), "mask channels differ"
            assert set(np.unique(rgb)) <= {0, 255}
            np.testing.assert_array_equal(_dolos_fake(path), intended[rgb.tobytes()], err_msg=str(path))
            n += 1
    assert n == len(CFG.generators) * sum(len(ids) * CFG.fakes_per_face[s] for s, ids in summary.splits.items())


def test_mask_polarity_zero_is_fake(builds):
    # Where a paste-back generator changed pixels, the mask must read 0 (fake); 255 elsewhere.
    root = builds[0] / "demo"
    for name in PASTE_BACK:
        changed_inside = 0
        for real, fake, mask, _ in _triples(root, name):
            changed = (real != fake).any(axis=2)
            assert not changed[mask == 255].any(), name
            changed_inside += int(changed[mask == 0].sum())
        assert changed_inside > 0, f"{name} changed nothing inside its masks"


def test_every_mask_covers_a_visible_change(builds):
    # No sample whose fill left no trace: the mean change under every mask reaches min_change.
    root = builds[0] / "demo"
    for name in PASTE_BACK:
        for real, fake, mask, path in _triples(root, name):
            assert generators.mean_change(real, fake, mask == 0) >= CFG.min_change, path


def _flat_face(size: int = 48) -> faces.Face:
    """Flat white studio background with a small textured patch: most masks land on nothing to change."""
    image = np.full((size, size, 3), 255, np.uint8)
    image[30:40, 30:40] = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    return faces.Face("flat", image, faces.Box(12, 12, 24, 24), True)


def test_masks_without_a_visible_change_are_redrawn():
    face, cfg = _flat_face(), DemoParams(size=48)
    redrawn = 0
    for k in range(20):
        fake, mask, n = demo.make_fake("telea", face, None, masks.rng_for(0, "telea", "flat", str(k)), cfg)
        assert generators.mean_change(face.image, fake, mask) >= cfg.min_change
        redrawn += n
    assert redrawn > 0  # a Telea fill of flat white leaves no trace: those masks were drawn again
    # The same draw with the rule off keeps the first mask, whatever it covers.
    off = DemoParams(size=48, min_change=0.0)
    assert demo.make_fake("telea", face, None, masks.rng_for(0, "telea", "flat", "0"), off)[2] == 0


def test_a_photo_with_nothing_to_change_fails_clearly():
    blank = faces.Face("blank", np.full((48, 48, 3), 255, np.uint8), faces.Box(12, 12, 24, 24), True)
    with pytest.raises(ValueError, match="blank.*telea.*lower demo.min_change"):
        demo.make_fake("telea", blank, None, masks.rng_for(0, "x"), DemoParams(size=48))


def test_redraws_are_counted(builds):
    summary = builds[2]
    assert sorted(summary.redraws) == sorted(CFG.generators)
    assert all(n >= 0 for n in summary.redraws.values())
    assert "masks redrawn" in demo.report(summary, CFG)


def test_fake_fractions_within_bounds(builds):
    root, summary = builds[0] / "demo", builds[2]
    for name in CFG.generators:
        fractions = {path.stem: float((mask == 0).mean()) for *_, mask, path in _triples(root, name)}
        assert all(CFG.min_fake <= f <= CFG.max_fake for f in fractions.values()), (name, fractions)
        assert fractions == pytest.approx(summary.fake_fractions[name])


def test_each_generator_and_fake_draws_its_own_mask(builds):
    root = builds[0] / "demo"
    split = "test"
    photo = sorted(_ids(root / REAL / split))[0]
    drawn = {_png(root / "fake" / g / "masks" / split / f"{demo.fake_id(photo, k)}.png").tobytes()
             for g in CFG.generators for k in range(CFG.fakes_per_face[split])}
    assert len(drawn) == len(CFG.generators) * CFG.fakes_per_face[split]


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
    # Every fake, of every generator, names a photo of its own split, and only real/'s photos.
    for name in CFG.generators:
        for split in SPLITS:
            for kind in ("images", "masks"):
                for image_id in _ids(root / "fake" / name / kind / split):
                    assert seen[photo_of(image_id)] == split, (name, kind, image_id)


def test_donors_come_from_the_same_split():
    rng = np.random.default_rng(0)
    box = faces.Box(12, 12, 24, 24)
    pool = [faces.Face(f"id{i}", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), box, True)
            for i in range(4)]
    for face in pool[:3]:
        for k in range(3):
            donor = demo.pick_donor(face, pool[:3], "poisson", seed=1, k=k)
            assert any(donor is other.image for other in pool[:3] if other is not face)
    alone = demo.pick_donor(pool[3], [pool[3]], "poisson", seed=1)
    assert np.array_equal(alone, pool[3].image[:, ::-1])


def test_fake_ids_name_their_photo():
    assert demo.fake_id("0a1b2c3d4e5f", 2) == "0a1b2c3d4e5f-2"
    assert photo_of(demo.fake_id("0a1b2c3d4e5f", 12)) == "0a1b2c3d4e5f"


def test_byte_identical_reruns_whatever_the_worker_count(builds):
    a, b = builds[0], builds[1]
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    fakes = sum(len(ids) * CFG.fakes_per_face[split] for split, ids in builds[2].splits.items())
    assert len(files_a) == CFG.max_faces + 2 * fakes * len(CFG.generators) + 1
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_paste_back_keeps_unmasked_pixels_and_reencoding_changes_them(builds):
    root = builds[0] / "demo"
    for name in PASTE_BACK:
        for real, fake, mask, _ in _triples(root, name):
            np.testing.assert_array_equal(fake[mask == 255], real[mask == 255], err_msg=name)
    for name in REENCODED:
        shares = []
        for real, fake, mask, _ in _triples(root, name):
            outside = mask == 255
            shares.append((fake[outside] != real[outside]).any(axis=1).mean())
        # JPEG rewrites every pixel, but flat white studio background decodes back to 255 exactly.
        assert min(shares) > 0.2, (name, shares)
        assert np.mean(shares) > 0.5, (name, shares)


def _patchmatch_digest(seed: int) -> str:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 16:44] = True
    return hashlib.sha256(generate("patchmatch", image, mask, seed=seed).tobytes()).hexdigest()


def test_patchmatch_is_deterministic_with_a_seed():
    # Same input and seed: the same bytes, in this process and in a fresh one (new interpreter, new
    # library state); another seed gives another fill, so the seed does reach the solver.
    first = _patchmatch_digest(11)
    assert _patchmatch_digest(11) == first
    assert _patchmatch_digest(12) != first
    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "from test_demo import _patchmatch_digest; print(_patchmatch_digest(11))")
    fresh = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True,
                           text=True, check=True)
    assert fresh.stdout.strip() == first


def test_stages_run_opencv_without_ipp_whose_kernels_follow_the_cpu():
    # IPP's seamlessClone (the poisson generator) rounded differently on AVX2 and AVX-512 CPUs.
    # `python -m stages.demo` imports cv2 itself: the package has to switch IPP off before that.
    code = "import stages.demo, cv2, sys; sys.stdout.write(str(cv2.ipp.useIPP()))"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_IPP", "OPENCV_LOG_LEVEL")}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True,
                         text=True, check=True, env=env)
    assert out.stdout == "False"
    assert "IPP" not in out.stderr  # OpenCV's start-up warning about it is silenced


def test_generate_direct():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    donor = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[0:12, 20:32] = True  # touches the border: seamlessClone's awkward case
    for name in generators.NAMES:
        fake = generate(name, image, mask, donor, jpeg_quality=50)
        assert fake.shape == image.shape
        assert fake.dtype == np.uint8
        if not name.endswith(generators.JPEG_SUFFIX):
            np.testing.assert_array_equal(fake[~mask], image[~mask])
            assert (fake[mask] != image[mask]).any(), name
    with pytest.raises(ValueError, match="choose from"):
        generate("lama", image, mask)


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

    monkeypatch.setattr(generators, "fill", broken)
    with pytest.raises(ValueError, match="boom"):
        run(tmp_path / "demo", tmp_path / "sheet.png", DemoParams(size=32, max_faces=3), jobs=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("values", "message"), [
    ({"generators": ["lama"]}, "biharmonic-jpeg"),
    ({"generators": []}, "distinct names"),
    ({"min_fake": 0.5, "max_fake": 0.4}, "min_fake"),
    ({"valid_fraction": 0.5, "test_fraction": 0.5}, "train"),
    ({"sizes": 64}, "allowed keys"),
    ({"fakes_per_face": {"train": 1, "test": 3}}, "give each of train, valid, test"),
    ({"fakes_per_face": {"train": 1, "valid": 1, "test": 0}}, r"a count in 1\.\.20"),
    ({"min_change": -1.0}, "min_change"),
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


def test_the_manifest_lists_the_files_a_build_changed_and_gives_dvcs_folder_hash(tmp_path):
    from dvc_data.hashfile.tree import Tree

    from localize import manifest

    root = tmp_path / "demo"
    (root / "real" / "test").mkdir(parents=True)
    for i in range(3):
        (root / "real" / "test" / f"{i:05d}.png").write_bytes(bytes([i]) * (10 + i))
    listing = tmp_path / "demo.manifest.tsv"
    manifest.write(root, listing)
    assert manifest.differences(root, listing) == []
    tree = Tree.from_list([{"md5": md5, "relpath": rel} for rel, (md5, _) in manifest.read(listing).items()])
    assert manifest.dvc_md5(manifest.read(listing)) == hashlib.md5(tree.as_bytes()).hexdigest() + ".dir"

    (root / "real" / "test" / "00001.png").write_bytes(b"\x01" * 12)
    (root / "real" / "test" / "00002.png").unlink()
    (root / "real" / "test" / "extra.png").write_bytes(b"x")
    assert manifest.differences(root, listing) == ["missing\treal/test/00002.png", "extra\treal/test/extra.png",
                                                   "differs\treal/test/00001.png\t11 -> 12 bytes"]
    with pytest.raises(SystemExit) as stop:
        manifest.main([str(root), str(listing)])
    assert stop.value.code == 1
