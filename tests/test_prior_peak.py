"""Where the position prior's peak falls: peak_cells, peak_in_target, chance_in_target."""

import pytest
import torch

from refseg_core.models.position_prior import chance_in_target, peak_cells, peak_in_target


def test_peak_cells_are_row_and_column_of_the_maximum():
    prior = torch.zeros(2, 1, 4, 6)
    prior[0, 0, 1, 5] = 3.0
    prior[1, 0, 3, 0] = 0.5
    assert peak_cells(prior).tolist() == [[1, 5], [3, 0]]
    assert peak_cells(torch.zeros(1, 1, 3, 3)).tolist() == [[0, 0]]  # a tie: the first cell


def test_peak_in_target_reads_the_mask_at_the_peak_cells_centre():
    masks = torch.zeros(3, 1, 32, 32)
    masks[:, 0, 8:16, 24:32] = 1  # the object fills prior cell (1, 3) of a 4x4 grid (8-px cells)
    prior = torch.zeros(3, 1, 4, 4)
    prior[0, 0, 1, 3] = 1  # on the object
    prior[1, 0, 2, 3] = 1  # one cell below it
    prior[2, 0, 1, 3] = 1
    masks[2, 0, 12, 28] = 0  # the centre pixel of cell (1, 3): (8 + 4, 24 + 4)
    assert peak_in_target(prior, masks).tolist() == [True, False, False]
    # The same on a coarser grid (16-px cells): the centre of cell (0, 1) is pixel (8, 24), inside.
    coarse = torch.zeros(1, 1, 2, 2)
    coarse[0, 0, 0, 1] = 1
    assert peak_in_target(coarse, masks[:1]).tolist() == [True]


def test_peak_in_target_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="masks"):
        peak_in_target(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 32, 32))
    with pytest.raises(ValueError, match="prior"):
        peak_cells(torch.zeros(2, 4, 4))


def test_chance_is_the_share_of_cell_centres_inside_the_mask():
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, 0, :16] = 1  # the top half: 8 of the 16 cells of a 4x4 grid
    masks[1, 0, 8:16, 24:32] = 1  # one cell
    torch.testing.assert_close(chance_in_target(masks, (4, 4)), torch.tensor([0.5, 1 / 16]))
    # A random prior's hit rate approaches the chance rate.
    torch.manual_seed(0)
    priors = torch.rand(4000, 1, 4, 4)
    hits = peak_in_target(priors, masks[:1].expand(4000, -1, -1, -1)).float().mean()
    assert abs(float(hits) - 0.5) < 0.03
