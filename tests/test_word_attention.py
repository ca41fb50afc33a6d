"""refseg_core.word_attention: attention on a region, per token and for the words proper."""

import numpy as np
import pytest

from refseg_core.word_attention import mean_on_region, region_on_grid, words_on_region


def test_region_on_grid_is_the_covered_fraction_of_each_cell():
    region = np.zeros((8, 8), bool)
    region[:4, :2] = True  # the left half of the top-left 4x4 cell
    grid = region_on_grid(region, (2, 2))
    np.testing.assert_allclose(grid, [[0.5, 0.0], [0.0, 0.0]])


def test_mean_on_region_weights_cells_by_coverage():
    attn = np.zeros((3, 2, 2))
    attn[0] = [[1.0, 0.0], [0.0, 0.0]]  # token 0 attended only in the top-left cell
    attn[1] = [[0.0, 1.0], [1.0, 1.0]]
    attn[2] = 0.25
    region = np.zeros((4, 4))
    region[:2, :2] = 1.0  # the whole top-left cell
    region[2:, 2:3] = 1.0  # half of the bottom-right cell
    # cell weights 1 (top-left) and 0.5 (bottom-right): token 1 = (0 * 1 + 1 * 0.5) / 1.5
    np.testing.assert_allclose(mean_on_region(attn, region), [1 / 1.5, 0.5 / 1.5, 0.25])


def test_words_on_region_leaves_out_start_and_end_tokens():
    attn = np.stack([np.full((2, 2), v) for v in (0.5, 0.1, 0.3, 0.1)])  # <sot>, w1, w2, <eot>
    region = np.ones((4, 4))
    assert words_on_region(attn, region) == pytest.approx(0.4)
    assert words_on_region(attn, region, skip=()) == pytest.approx(1.0)


def test_empty_region_and_bad_shapes():
    assert np.isnan(mean_on_region(np.ones((2, 2, 2)), np.zeros((4, 4)))).all()
    with pytest.raises(ValueError, match="attn must be"):
        mean_on_region(np.ones((2, 2)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="region must be"):
        region_on_grid(np.ones((1, 4, 4)), (2, 2))


def test_own_versus_other_counts_only_gaps_beyond_the_margin():
    from refseg_core.word_attention import own_versus_other

    tiny = own_versus_other([-0.009, -0.007])
    assert "0 put more" in tiny and "2 differ by less (largest gap 0.009)" in tiny
    assert "does not tell the two objects apart" in tiny
    mixed = own_versus_other([0.05, -0.03, 0.01])
    assert "1 put more" in mixed and "1 on the other target" in mixed and "1 differ by less" in mixed
    assert "does not tell" not in mixed
