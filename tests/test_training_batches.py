"""The global batch: what every rank builds, and the slices the ranks train on."""

from __future__ import annotations

import torch

from localize.batches import ArrayPool
from localize.config import parse_section
from localize.layout import REAL
from localize.prepared import Prepared
from localize.torchrun import Ranks
from localize.training import TrainParams, batch_slice, epoch_batches

CPU = torch.device("cpu")


def batches(prepared_dir, synthetic: float, steps: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    prepared = Prepared(prepared_dir)
    tp = parse_section(TrainParams, {"batch_size": 8, "synthetic": synthetic, "seed": 3}, "train")
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
