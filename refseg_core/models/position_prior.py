"""LTS, step 2 (paper abstract and Fig. 2): *locate* — the position prior. The paper: a cross-modal
interaction module ("e.g. filtering and transformer", its Fig. 2 caption) turns the cross-modal features
into an object position prior. The two modules below are this book's designs of those two interactions;
each turns the fused map into one channel of logits, the prior ``P (B, 1, h, w)`` (stride 8 by default),
supervised by a target made from the mask (:func:`prior_target_mask`, :func:`prior_target_gaussian`: how
the paper supervises the prior is not known; both are offered).

* :class:`TransformerLocate`: pre-norm layers of pixel self-attention and pixel-to-word cross-attention;
* :class:`FilterLocate`: the sentence generates K dynamic 1x1 kernels that filter the fused map.

The paper also claims the prior makes the model interpretable (shown by visualisation). :func:`peak_cells`
and :func:`peak_in_target` turn that into a number: how often the prior's highest cell lies inside the
referred object; :func:`chance_in_target` is what a cell drawn at random scores
(:func:`refseg_core.prior_peaks.prior_peak_rates` measures both on a split, with the image centre and
the other object's sentence as further references).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from refseg_core.models.layers import (
    INIT_PROB,
    MultiHeadAttention,
    add_coords,
    conv_bn_relu,
    init_prob_bias,
)


class InteractionLayer(nn.Module):
    """Pre-norm transformer layer, pixels as queries: self-attention over pixels, cross-attention
    from pixels to words (padding masked), feed-forward. ``x (B, N, D), words (B, L, D), valid (B, L)``
    bool (True = a real word, may be attended) -> ``(x (B, N, D), weights (B, N, L) or None)``; the
    cross-attention weights are averaged over heads and returned only if ``need_weights``."""

    def __init__(self, dim: int, heads: int, ffn_dim: int):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn, self.cross_attn = MultiHeadAttention(dim, heads), MultiHeadAttention(dim, heads)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, dim))

    def forward(self, x, words, valid, need_weights: bool = False):
        h = self.n1(x)
        x = x + self.self_attn(h, h)[0]
        a, weights = self.cross_attn(self.n2(x), words, attend=valid, need_weights=need_weights)
        x = x + a
        return x + self.ffn(self.n3(x)), None if weights is None else weights.mean(1)


class TransformerLocate(nn.Module):
    """Transformer interaction: ``fused (B, D, h, w), words (B, L, T) -> prior logits (B, 1, h, w)``
    (and, on request, word attention ``(B, L, h, w)`` of the last layer). ``coords``: append xy channels
    before the pixels become tokens (attention itself has no notion of position); ``init_prob``: the
    prior's starting probability (:func:`~refseg_core.models.layers.init_prob_bias`)."""

    def __init__(
        self,
        dim: int,
        text_dim: int,
        heads: int,
        layers: int,
        ffn_dim: int,
        coords: bool = True,
        init_prob: float = INIT_PROB,
    ):
        super().__init__()
        self.coords = bool(coords)
        self.inp = nn.Conv2d(dim + (2 if self.coords else 0), dim, 1)
        self.txt = nn.Linear(text_dim, dim)
        self.layers = nn.ModuleList(InteractionLayer(dim, heads, ffn_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = init_prob_bias(nn.Linear(dim, 1), init_prob)

    def forward(self, fused, words, valid, sentence, need_weights: bool = False):
        b, _, h, w = fused.shape
        x = add_coords(fused) if self.coords else fused
        x = self.inp(x).flatten(2).transpose(1, 2)  # (B, hw, D)
        t = self.txt(words)
        weights = None
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, t, valid, need_weights and i == len(self.layers) - 1)
        prior = self.out(self.norm(x)).transpose(1, 2).reshape(b, 1, h, w)
        if weights is not None:
            weights = weights.transpose(1, 2).reshape(b, -1, h, w)
        return prior, weights


class FilterLocate(nn.Module):
    """Filtering interaction: the sentence generates ``K`` 1x1 kernels (+ bias) that filter a projected
    fused map; a 3x3 conv mixes the K responses into the prior.
    ``fused (B, D, h, w), sentence (B, T) -> prior logits (B, 1, h, w)``; ``coords`` and ``init_prob`` as
    in :class:`TransformerLocate`."""

    def __init__(
        self,
        dim: int,
        text_dim: int,
        filters: int,
        filter_dim: int,
        coords: bool = True,
        init_prob: float = INIT_PROB,
    ):
        super().__init__()
        self.filters, self.filter_dim, self.coords = filters, filter_dim, bool(coords)
        self.inp = conv_bn_relu(dim + (2 if self.coords else 0), filter_dim, 1)
        self.gen = nn.Linear(text_dim, filters * (filter_dim + 1))
        self.post = nn.Sequential(
            nn.BatchNorm2d(filters),
            nn.ReLU(inplace=True),
            conv_bn_relu(filters, filters, 3),
            init_prob_bias(nn.Conv2d(filters, 1, 1), init_prob),
        )

    def forward(self, fused, words, valid, sentence, need_weights: bool = False):
        v = self.inp(add_coords(fused) if self.coords else fused)  # (B, C, h, w)
        kernels = self.gen(sentence).view(-1, self.filters, self.filter_dim + 1)
        # Per-sample 1x1 convolution; 1/sqrt(C) keeps responses O(1) whatever the width.
        r = torch.einsum("bkc,bchw->bkhw", kernels[..., :-1], v) / math.sqrt(self.filter_dim)
        r = r + kernels[..., -1, None, None]
        return self.post(r), None


def prior_target_mask(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``"mask"`` prior target: ``masks (B, 1, H, W)`` area-averaged to ``size`` -> ``(B, 1, h, w)`` in
    [0, 1] (the fraction of each prior cell covered by the object)."""
    return F.adaptive_avg_pool2d(masks.float(), size)


def prior_target_gaussian(
    masks: torch.Tensor, size: tuple[int, int], sigma_scale: float = 1.0, min_sigma: float = 0.5
) -> torch.Tensor:
    """``"gaussian"`` prior target: ``masks (B, 1, H, W) -> (B, 1, h, w)``, peak 1.

    Centre = the mask's centre of mass; ``sigma_x, sigma_y`` = the standard deviation of the mask's
    pixel coordinates (its second moments: ``w / sqrt(12)`` for a box of width ``w``) times
    ``sigma_scale``, at least ``min_sigma`` prior cells. An all-zero mask (a G-REFER no-target sample)
    gives an all-zero target, never NaN.
    """
    m = masks.float()[:, 0]  # (B, H, W)
    big_h, big_w = m.shape[-2:]
    h, w = size
    total = m.sum((1, 2))
    safe = total.clamp_min(1e-6)
    ys = torch.arange(big_h, device=m.device, dtype=m.dtype) + 0.5  # pixel centres
    xs = torch.arange(big_w, device=m.device, dtype=m.dtype) + 0.5
    px, py = m.sum(1), m.sum(2)  # marginals (B, W), (B, H)
    cx, cy = (px * xs).sum(1) / safe, (py * ys).sum(1) / safe
    sx = ((px * (xs - cx[:, None]) ** 2).sum(1) / safe).sqrt()
    sy = ((py * (ys - cy[:, None]) ** 2).sum(1) / safe).sqrt()
    # To prior-grid units (cell i spans [i, i + 1), its centre is i + 0.5).
    fx, fy = w / big_w, h / big_h
    cx, cy = cx * fx, cy * fy
    sx = (sx * fx * sigma_scale).clamp_min(min_sigma)
    sy = (sy * fy * sigma_scale).clamp_min(min_sigma)
    gx = torch.arange(w, device=m.device, dtype=m.dtype) + 0.5
    gy = torch.arange(h, device=m.device, dtype=m.dtype) + 0.5
    dx = ((gx[None] - cx[:, None]) / sx[:, None]) ** 2  # (B, w)
    dy = ((gy[None] - cy[:, None]) / sy[:, None]) ** 2  # (B, h)
    g = torch.exp(-0.5 * (dy[:, :, None] + dx[:, None, :]))
    g = torch.where(total[:, None, None] > 0, g, torch.zeros_like(g))
    return g[:, None]


# ---------------------------------------------------------------------------------------------------
# Is the prior interpretable? Where its peak falls.
# ---------------------------------------------------------------------------------------------------
def peak_cells(prior: torch.Tensor) -> torch.Tensor:
    """``prior (B, 1, h, w)`` (logits or probabilities) -> ``(B, 2)`` long: the ``(row, col)`` of each
    map's highest cell (the first one in row-major order on a tie)."""
    if prior.dim() != 4 or prior.shape[1] != 1:
        raise ValueError(f"prior must be (B, 1, h, w), got shape {tuple(prior.shape)}")
    w = prior.shape[-1]
    flat = prior.flatten(1).argmax(1)
    return torch.stack([flat // w, flat % w], dim=1)


def _cell_centre_pixels(rows, cols, size, big):
    """Pixel (row, col) of the centre of prior cells ``(rows, cols)`` on a ``size`` grid over ``big``."""
    (h, w), (big_h, big_w) = size, big
    py = ((rows.double() + 0.5) * big_h / h).floor().long().clamp(0, big_h - 1)
    px = ((cols.double() + 0.5) * big_w / w).floor().long().clamp(0, big_w - 1)
    return py, px


def peak_in_target(prior: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Whether the prior's peak falls inside the target: ``prior (B, 1, h, w)``, ``masks (B, 1, H, W)``
    in [0, 1] at input resolution -> ``(B,)`` bool, True where the input pixel at the centre of the
    prior's highest cell belongs to the mask (value > 0.5). The interpretability check of the paper's
    claim: a prior that locates the referent puts its peak on it."""
    if masks.dim() != 4 or masks.shape[0] != prior.shape[0]:
        raise ValueError(
            f"masks must be (B, 1, H, W) with B = {prior.shape[0]}, got shape {tuple(masks.shape)}"
        )
    cells = peak_cells(prior)
    py, px = _cell_centre_pixels(cells[:, 0], cells[:, 1], prior.shape[-2:], masks.shape[-2:])
    return masks[torch.arange(len(masks)), 0, py, px] > 0.5


def chance_in_target(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What a peak drawn uniformly at random among the ``size`` grid's cells scores: ``masks (B, 1, H, W)``
    -> ``(B,)`` float, the fraction of cell centres inside each mask (the expected :func:`peak_in_target`
    of a prior that knows nothing)."""
    h, w = size
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    py, px = _cell_centre_pixels(rows.flatten(), cols.flatten(), size, masks.shape[-2:])
    return (masks[:, 0][:, py, px] > 0.5).float().mean(1)
