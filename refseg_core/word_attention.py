"""How much of a decoder's pixel->word attention falls on a region: does a sentence's attention sit on the
object it names, or on another object of the same image?

CRIS's decoder (Sec. 3.3) and LTS's transformer interaction return, for every pixel of their grid, weights
over the sentence's tokens (``word_attention`` of ``forward_features``: ``(L, h, w)`` for one sample, each
pixel's weights summing to 1 over the real tokens). The functions here reduce such maps to one number per
token and region, so that a chapter can say in numbers whether two sentences of one image attend
differently.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def region_on_grid(region, grid: tuple[int, int]) -> np.ndarray:
    """``region (H, W)`` (bool or [0, 1], in the network input's coordinates) -> ``(h, w)``: the fraction
    of each grid cell that the region covers (area average)."""
    r = torch.as_tensor(np.asarray(region, dtype=np.float32))
    if r.ndim != 2:
        raise ValueError(f"region must be a 2-D mask (H, W), got shape {tuple(r.shape)}")
    return F.adaptive_avg_pool2d(r[None, None], grid)[0, 0].numpy()


def mean_on_region(attn, region) -> np.ndarray:
    """``attn (L, h, w)``, ``region (H, W)`` -> ``(L,)``: each token's attention averaged over the region,
    every grid cell weighted by the fraction of it the region covers. A region that covers no cell gives
    NaN (there is nothing to average)."""
    a = np.asarray(attn, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"attn must be (L, h, w), got shape {a.shape}")
    w = region_on_grid(region, a.shape[1:]).astype(np.float64)
    total = w.sum()
    if total == 0:
        return np.full(a.shape[0], np.nan)
    return (a * w).sum(axis=(1, 2)) / total


def words_on_region(attn, region, skip=(0, -1)) -> float:
    """The attention a pixel of ``region`` pays, on average, to the sentence's words proper: the sum over
    tokens of :func:`mean_on_region`, leaving out the tokens at the positions ``skip`` (CLIP's start and
    end tokens by default). ``attn`` holds only the real tokens (no padding)."""
    per_token = mean_on_region(attn, region)
    n = len(per_token)
    drop = {i % n for i in skip}
    return float(sum(v for i, v in enumerate(per_token) if i not in drop))
