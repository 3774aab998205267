"""localize.pixel_sample: the uniform pixel draw shared by the texture trees and the head refit."""

from __future__ import annotations

import numpy as np

from localize.pixel_sample import sampled_batches


def _pairs():
    """Two arrays of 2x2 images whose pixel values are their global flat index, masks its parity."""
    first = np.arange(5 * 4).reshape(5, 2, 2)
    second = np.arange(20, 20 + 3 * 4).reshape(3, 2, 2)
    return [(np.repeat(a[..., None], 3, -1).astype(np.uint8), (a % 2).astype(np.uint8)) for a in (first, second)]


def _drawn(pairs, n, seed=0, batch=2):
    ids, labels = [], []
    for images, batch_labels, local in sampled_batches(pairs, n, np.random.default_rng(seed), batch):
        ids += images[..., 0].reshape(-1)[local].tolist()
        labels += batch_labels.tolist()
    return ids, labels


def test_each_pixel_at_most_once_with_its_own_label():
    ids, labels = _drawn(_pairs(), 17)
    assert len(ids) == 17 and len(set(ids)) == 17
    assert labels == [i % 2 for i in ids]  # each label is the sampled pixel's own


def test_asking_for_more_than_there_is_takes_every_pixel():
    assert sorted(_drawn(_pairs(), 1000)[0]) == list(range(32))


def test_batch_size_does_not_change_the_draw():
    assert _drawn(_pairs(), 11, batch=1) == _drawn(_pairs(), 11, batch=4)


def test_nothing_drawn_for_no_pixels_or_none_asked():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert list(sampled_batches(_pairs(), 0, rng, 2)) == []
    assert list(sampled_batches([], 5, rng, 2)) == []
    assert rng.bit_generator.state == state  # the next draw is unaffected
