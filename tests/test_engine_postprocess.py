"""postprocess.logits_to_masks: the official CRIS path (sigmoid, bicubic, inverse letterbox, > t)."""

import numpy as np
import pytest
import torch

from refseg_core.data.transforms import letterbox_mask, letterbox_params
from refseg_core.engine.postprocess import logits_to_masks, logits_to_probs


def test_masks_come_back_at_original_size_and_respect_the_threshold():
    p_wide, p_tall = letterbox_params(30, 60, 32), letterbox_params(50, 20, 32)
    logits = torch.stack([torch.full((1, 8, 8), 3.0), torch.full((1, 8, 8), -3.0)])
    a, b = logits_to_masks(logits, [p_wide, p_tall.to_dict()], threshold=0.35)
    assert a.shape == (30, 60) and b.shape == (50, 20) and a.dtype == bool
    assert a.all() and not b.any()
    # sigmoid(0) = 0.5: above 0.35, below 0.6
    zero = torch.zeros(1, 1, 8, 8)
    assert logits_to_masks(zero, [p_wide], 0.35)[0].all()
    assert not logits_to_masks(zero, [p_wide], 0.6)[0].any()


def test_round_trip_of_a_letterboxed_mask():
    """A target letterboxed to the input, turned into logits at stride 4 and post-processed, comes back
    as (almost) the original mask: the inverse letterbox undoes the forward one."""
    h, w, size = 48, 80, 64
    m = np.zeros((h, w), np.uint8)
    m[10:30, 20:60] = 1
    p = letterbox_params(h, w, size)
    lb = letterbox_mask(m, p)[None, None]  # (1, 1, S, S)
    small = torch.nn.functional.avg_pool2d(lb, 4)  # stride-4 map in [0, 1]
    logits = torch.logit(small.clamp(1e-4, 1 - 1e-4))
    pred = logits_to_masks(logits, [p], 0.5)[0]
    inter, union = np.logical_and(pred, m).sum(), np.logical_or(pred, m).sum()
    assert inter / union > 0.9


def test_probs_are_clamped_and_errors_are_clear():
    p = letterbox_params(10, 10, 16)
    pr = logits_to_probs(torch.randn(1, 1, 4, 4) * 20, [p])[0]
    assert pr.shape == (10, 10) and float(pr.min()) >= 0 and float(pr.max()) <= 1
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        logits_to_masks(torch.zeros(1, 2, 4, 4), [p])
    with pytest.raises(ValueError, match="letterbox params"):
        logits_to_masks(torch.zeros(2, 1, 4, 4), [p])
    with pytest.raises(ValueError, match="threshold"):
        logits_to_masks(torch.zeros(1, 1, 4, 4), [p], threshold=1.0)


def test_upsampling_aligns_corners_as_the_official_engine():
    """Official ``engine/engine.py``: bicubic with ``align_corners=True``. Output pixel ``i`` of an ``S``
    grid then samples the ``h`` grid at ``i * (h - 1) / (S - 1)``; with ``h = 4, S = 13`` rows and columns
    0, 4, 8, 12 fall exactly on input pixels, where the cubic kernel has weight 1 and the probability
    passes through unchanged. Pixel-area alignment (``align_corners=False``) breaks this."""
    h, size = 4, 13
    logits = torch.randn(1, 1, h, h, generator=torch.Generator().manual_seed(0)) * 3
    p = letterbox_params(size, size, size)  # square image of the input size: the inverse is the identity
    prob = logits_to_probs(logits, [p])[0]
    on_grid = prob[:: (size - 1) // (h - 1), :: (size - 1) // (h - 1)]
    torch.testing.assert_close(on_grid, torch.sigmoid(logits[0, 0]), rtol=0, atol=1e-6)
    other = logits_to_probs(logits, [p], align_corners=False)[0]
    assert not torch.allclose(other[::4, ::4], torch.sigmoid(logits[0, 0]), atol=1e-3)
    mask = logits_to_masks(logits, [p], 0.35)[0]
    assert np.array_equal(mask[::4, ::4], (torch.sigmoid(logits[0, 0]) > 0.35).numpy())
