"""The decoder resolution ceiling used in chapter 5."""

import numpy as np
import pytest

from refseg_core.stride_ceiling import stride_ceiling


def _disc(size, r, cx=None, cy=None):
    yy, xx = np.mgrid[0:size, 0:size]
    cx = size / 2 if cx is None else cx
    cy = size / 2 if cy is None else cy
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def test_a_fine_grid_keeps_the_mask_and_a_coarse_one_loses_small_objects():
    masks = [_disc(96, 8, 30, 40), _disc(96, 14, 60, 50)]
    fine = stride_ceiling(masks, 96, 1)
    s4, s16 = stride_ceiling(masks, 96, 4), stride_ceiling(masks, 96, 16)
    assert fine > 0.97
    assert fine >= s4 > s16
    assert s16 < 0.6  # a disc of radius 8 on a 6 x 6 grid barely survives
    # a bigger input at the same stride sees more cells
    assert stride_ceiling(masks, 192, 16) > s16


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="no masks"):
        stride_ceiling([], 96, 16)
    with pytest.raises(ValueError, match="no grid cell"):
        stride_ceiling([_disc(8, 2)], 8, 16)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        stride_ceiling([np.zeros((2, 3, 4), bool)], 96, 16)
