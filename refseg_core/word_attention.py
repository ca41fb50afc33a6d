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

from refseg_core.verdicts import MARGIN


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


def own_versus_other(gaps, margin: float = MARGIN) -> str:
    """One sentence on ``gaps`` (per sentence: :func:`words_on_region` on its own target minus on the
    other sentence's target): how many put more word attention on their own target by more than
    ``margin`` of attention weight (the margin of :mod:`refseg_core.verdicts`), how many on the other
    target, and how many differ by less, which the measurement cannot tell apart."""
    gaps = [float(g) for g in gaps]
    if not gaps:
        raise ValueError("own_versus_other: no sentences given")
    own = sum(g > margin for g in gaps)
    other = sum(g < -margin for g in gaps)
    close = len(gaps) - own - other
    text = (
        f"Of the {len(gaps)} sentences, {own} put more word attention on their own target than on the "
        f"other one by more than {margin:g} of attention weight, {other} on the other target, and {close} "
        f"differ by less (largest gap {max(map(abs, gaps)):.3f})"
    )
    if close == len(gaps):
        return text + ": at this margin the last layer's attention does not tell the two objects apart."
    return text + "."
