"""The small-region post-process (localize/regions.py) on maps small enough to check by hand."""

import numpy as np
import pytest

from localize.config import ParamsError, parse_section
from localize.params import EvaluateParams, RobustnessParams, TextureParams
from localize.regions import (
    choose_on_valid,
    drop_small_regions,
    largest_allowed,
    min_pixels,
    smallest_mask_share,
)


def maps(*rows: str) -> np.ndarray:
    """One boolean map from rows of '.' (0) and '#' (1)."""
    return np.array([[c == "#" for c in row] for row in rows])[None]


def test_regions_smaller_than_k_go_and_diagonal_neighbours_are_apart():
    pred = maps("##..#",
                "##...",
                "...#.",
                "....#")
    # Regions (4-connected): the 2x2 block (4 px) and three single pixels; the two diagonal ones stay apart.
    assert (drop_small_regions(pred, 2) == maps("##...", "##...", ".....", ".....")).all()
    assert not drop_small_regions(pred, 5).any()
    assert (drop_small_regions(pred, 1) == pred).all()
    assert (drop_small_regions(pred, 0) == pred).all()


def test_a_share_of_the_image_rounds_up_to_whole_pixels():
    assert min_pixels(0.008, 64, 64) == 33  # 32.8 pixels
    assert min_pixels(0.0, 64, 64) == 0
    assert min_pixels(0.25, 4, 4) == 4


def test_the_smallest_training_mask_bounds_the_candidates():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :2, :5] = True  # 10% of the image
    masks[1, :4, :5] = True  # 20%; masks[2] is empty (a real face) and does not count
    assert smallest_mask_share([masks]) == pytest.approx(0.1)
    assert smallest_mask_share([np.zeros((2, 4, 4))]) == 1.0
    # Below half of 10%: 0.049 stays, 0.05 goes; 0 always stays.
    assert largest_allowed([0.01, 0.049, 0.05, 0.2], 0.1) == [0.0, 0.01, 0.049]
    assert largest_allowed([0.01], 0.01) == [0.0]


def test_valid_picks_the_share_that_clears_a_stray_blob_without_losing_the_fake():
    fake_pred = maps("###.",
                     "###.",
                     "....",
                     "...#")  # the 6-px fake found, and one stray pixel
    fake_true = maps("###.",
                     "###.",
                     "....",
                     "....")
    real_pred = maps("....",
                     ".#..",
                     "....",
                     "....")  # a real face with one stray pixel
    train = np.concatenate([fake_true, fake_true])  # smallest training region: 6/16 of the image
    share, scores = choose_on_valid([0, 1 / 16, 0.15], [train], [(fake_pred, fake_true)], real_pred)
    # Share 0: IoU 6/7, real face flagged: 6/7 x (1 + 0) / 2. Share 1/16 (1 px) keeps regions of >= 1 px:
    # the same. Share 0.15 (3 px): IoU 1 and the real face clean: 1 x (1 + 1) / 2 = 1.
    assert scores == pytest.approx({0.0: 3 / 7, 1 / 16: 3 / 7, 0.15: 1.0})
    assert share == 0.15
    # Training regions of 4/16 (0.25) allow only candidates below 0.125: 0.15 is ruled out, and of the
    # equal scores the smaller share wins.
    small = np.zeros((1, 4, 4), bool)
    small[0, :2, :2] = True
    share, scores = choose_on_valid([0, 1 / 16, 0.15], [small], [(fake_pred, fake_true)], real_pred)
    assert share == 0.0 and set(scores) == {0.0, 1 / 16}


def test_without_valid_fakes_or_candidates_there_is_no_post_process():
    train = np.ones((1, 4, 4), bool)
    assert choose_on_valid([0, 0.1], [train], [], None) == (0.0, {})
    assert choose_on_valid([0], [train], [(maps("#"), maps("#"))], None) == (0.0, {})


@pytest.mark.parametrize("cls, section", [(EvaluateParams, "evaluate"), (RobustnessParams, "robustness"),
                                          (TextureParams, "texture")])
def test_min_region_params_are_shares_of_the_image(cls, section):
    assert parse_section(cls, {"min_region": [0, 0.008]}, section).min_region == [0, 0.008]
    with pytest.raises(ParamsError, match=r"min_region holds 0\.5; each must be a share of the image in \[0, 0\.05\]"):
        parse_section(cls, {"min_region": [0, 0.5]}, section)
    with pytest.raises(ParamsError, match="min_region is empty"):
        parse_section(cls, {"min_region": []}, section)
