"""The global batch: what every rank builds, and the slices the ranks train on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from localize.batches import ArrayPool, to_input
from localize.config import ParamsError, parse_section
from localize.distributed import Ranks
from localize.layout import REAL
from localize.prepared import Prepared
from localize.training import TrainParams, batch_slice, check_data, epoch_batches, learning_rate

CPU = torch.device("cpu")


def batches(prepared_dir, synthetic: float, steps: int = 3, real: float = 0.0, augment: str = "flip",
            crop: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    prepared = Prepared(prepared_dir)
    tp = parse_section(TrainParams, {"batch_size": 8, "synthetic": synthetic, "real": real, "seed": 3,
                                     "augment": augment, "crop": crop}, "train")
    fakes = ArrayPool([prepared.arrays("alpha", "train"), prepared.arrays("beta", "train")])
    reals = ArrayPool([prepared.arrays(REAL, "train")])
    return list(epoch_batches(fakes, reals, tp, "no-gamma", epoch=2, steps=steps, device=CPU))


def test_ranks_slices_put_together_are_the_single_process_batch(prepared):
    single = batches(prepared, synthetic=0.25)
    for world in (2, 4):
        # Each rank builds its own copy of the epoch's batches, then keeps its slice.
        per_rank = [batches(prepared, synthetic=0.25) for _ in range(world)]
        for step, (x, y) in enumerate(single):
            slices = [batch_slice(8, Ranks(rank=r, world=world)) for r in range(world)]
            assert torch.equal(torch.cat([per_rank[r][step][0][lo:hi] for r, (lo, hi) in enumerate(slices)]), x)
            assert torch.equal(torch.cat([per_rank[r][step][1][lo:hi] for r, (lo, hi) in enumerate(slices)]), y)


def test_a_batch_is_fakes_then_self_blended_fakes(prepared):
    plain = batches(prepared, synthetic=0.0)
    mixed = batches(prepared, synthetic=0.25)
    for (x, y), (xm, ym) in zip(plain, mixed, strict=True):
        assert x.shape == xm.shape == (8, 3, 16, 16) and y.shape == ym.shape == (8, 1, 16, 16)
        assert xm.is_contiguous(memory_format=torch.channels_last)
        assert set(ym.unique().tolist()) <= {0.0, 1.0}
    # 2 of 8 are made from real faces: their masks are the blends', not the fixture's square patches.
    squares = [(m.sum() == 64).item() for _, ym in mixed for m in ym[6:]]
    assert not all(squares)


def test_an_epoch_is_the_same_batches_every_time_and_differs_between_epochs(prepared):
    a, b = batches(prepared, synthetic=0.25), batches(prepared, synthetic=0.25)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], a[1][0])


def test_plain_real_faces_come_last_with_empty_masks(prepared):
    mixed = batches(prepared, synthetic=0.25, real=0.25, augment="none")
    reals = {tuple(to_input(np.array(img[None])).flatten().tolist())
             for img in Prepared(prepared).arrays(REAL, "train")[0]}
    for x, y in mixed:
        assert x.shape == (8, 3, 16, 16)
        assert y[6:].sum() == 0  # 2 of 8: real faces, nothing fake
        assert all(tuple(face.flatten().tolist()) in reals for face in x[6:])
        assert y[:4].sum(dim=(1, 2, 3)).min() > 0  # the generators' fakes still lead the batch


def test_real_and_synthetic_shares_must_leave_room_for_fakes():
    with pytest.raises(ParamsError, match="synthetic \\+ real must be < 1"):
        parse_section(TrainParams, {"synthetic": 0.5, "real": 0.5}, "train")
    with pytest.raises(ParamsError, match="real must be in"):
        parse_section(TrainParams, {"real": -0.1}, "train")


def test_real_share_without_real_faces_is_refused(prepared):
    tp = parse_section(TrainParams, {"real": 0.25}, "train")
    fakes = ArrayPool([Prepared(prepared).arrays("alpha", "train")])
    with pytest.raises(ValueError, match="train.real = 0.25 needs real training faces"):
        check_data("alpha", fakes, ArrayPool([]), tp)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    tp = parse_section(TrainParams, {"lr": 0.01, "schedule": "cosine"}, "train")
    rates = [learning_rate(tp, step, 100) for step in range(100)]
    assert rates[0] == pytest.approx(0.01 / 5)  # warm-up: 5% of 100 steps
    assert rates[4] == pytest.approx(0.01)  # full rate at the end of the warm-up
    assert rates[4 + 48] == pytest.approx(0.005, rel=0.05)  # half way down the cosine
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))
    assert rates[-1] < 1e-5
    constant = parse_section(TrainParams, {"lr": 0.01, "schedule": "constant"}, "train")
    assert {learning_rate(constant, step, 100) for step in range(100)} == {0.01}


def test_crops_cut_each_image_and_its_mask_at_one_offset(prepared):
    """train.crop: every batch image is a crop of the whole-image batch, and its target the same crop
    of the whole target (found by searching every offset); at least two offsets differ."""
    whole = batches(prepared, synthetic=0.25, real=0.25)
    cropped = batches(prepared, synthetic=0.25, real=0.25, crop=8)
    offsets = set()
    for (x, y), (xc, yc) in zip(whole, cropped, strict=True):
        assert xc.shape == (8, 3, 8, 8) and yc.shape == (8, 1, 8, 8)
        for a, b, ca, cb in zip(x, y, xc, yc):
            found = [(t, v) for t in range(9) for v in range(9)
                     if torch.equal(a[:, t : t + 8, v : v + 8], ca) and torch.equal(b[:, t : t + 8, v : v + 8], cb)]
            assert found, "a crop must be a window of the whole image, with the same window of its mask"
            offsets.add(found[0])
    assert len(offsets) > 1


def test_crop_null_leaves_the_batches_as_they_were_and_too_large_a_crop_is_refused(prepared):
    a, b = batches(prepared, synthetic=0.25), batches(prepared, synthetic=0.25, crop=None)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="train.crop = 32 is larger than the 16x16 training images"):
        batches(prepared, synthetic=0.0, crop=32)
    with pytest.raises(ParamsError, match="crop must be null"):
        parse_section(TrainParams, {"crop": 4}, "train")
