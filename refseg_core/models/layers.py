"""Small pieces shared by LTS and CRIS: coordinate features (CoordConv) and positional encodings."""

from __future__ import annotations

import math

import torch
from torch import nn


def coord_features(batch: int, height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """Normalised pixel coordinates, ``(B, 2, H, W)``: channel 0 is x, channel 1 is y, both in [-1, 1].

    This is the "spatial coordinate feature" of CoordConv (Liu et al., 2018), which LTS (Sec. 3.1)
    and CRIS (FPN neck, Sec. 3.2) concatenate to their feature maps so convolutions know *where* they are.
    """
    y = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    x = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy]).unsqueeze(0).expand(batch, -1, -1, -1)


def add_coords(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C + 2, H, W)``: append x and y coordinate channels."""
    b, _, h, w = x.shape
    return torch.cat([x, coord_features(b, h, w, device=x.device, dtype=x.dtype)], dim=1)


def sine_position_1d(length: int, dim: int) -> torch.Tensor:
    """Sine/cosine positions of a sequence, ``(L, D)`` (Vaswani et al., 2017, Sec. 3.5).

    ``pe[p, 2i] = sin(p / 10000^(2i/D))`` and ``pe[p, 2i+1] = cos(p / 10000^(2i/D))``. CRIS adds it to
    the word features used as keys in the decoder's cross-attention (Sec. 3.3).
    """
    if dim % 2:
        raise ValueError(f"sine_position_1d needs an even dim, got {dim}")
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def sine_position_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """Sine/cosine positions of a feature map, ``(D, H, W)``, as in the CRIS decoder (Sec. 3.3).

    The first ``D/2`` channels encode the column x (interleaved sin, cos), the last ``D/2`` the row y,
    each with the 1-D frequencies of a ``D/2``-dimensional encoding.
    """
    if dim % 4:
        raise ValueError(f"sine_position_2d needs dim divisible by 4, got {dim}")
    half = dim // 2
    x = sine_position_1d(width, half).t()  # (D/2, W)
    y = sine_position_1d(height, half).t()  # (D/2, H)
    return torch.cat([x[:, None, :].expand(half, height, width), y[:, :, None].expand(half, height, width)])
