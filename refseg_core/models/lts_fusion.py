"""LTS, Sec. 3.1: cross-modal fusion. Visual features of three levels meet the sentence (an element-wise
product per channel), gain xy coordinates, and are aggregated top-down to stride 8: the map the position
prior is located on and the mask is segmented from. The operator (product) is widely reported for LTS;
the coordinates, the levels and the top-down aggregation are this book's choices (``refseg_core.models.lts``
lists every choice).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from refseg_core.models.layers import add_coords, conv_bn_relu


class Fusion(nn.Module):
    """Multi-level fusion (Sec. 3.1): ``(c3, c4, c5), sentence (B, T) -> fused (B, D, H/8, W/8)``.

    At each level ``f_i = conv3x3(add_coords(BN(conv1x1(V_i)) * Linear_i(s)))``: the sentence gates
    every visual channel (element-wise product) and xy coordinates are appended. A top-down pass
    (upsample x2, concatenate, conv3x3) aggregates stride 32 -> 16 -> 8.
    """

    def __init__(self, in_channels: Sequence[int], text_dim: int, dim: int):
        super().__init__()
        self.vis = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1, bias=False), nn.BatchNorm2d(dim)) for c in in_channels
        )
        self.txt = nn.ModuleList(nn.Linear(text_dim, dim) for _ in in_channels)
        self.mix = nn.ModuleList(conv_bn_relu(dim + 2, dim, 3) for _ in in_channels)
        self.top_down = nn.ModuleList(conv_bn_relu(2 * dim, dim, 3) for _ in in_channels[1:])

    def forward(self, feats: Sequence[torch.Tensor], sentence: torch.Tensor) -> torch.Tensor:
        fused = [
            mix(add_coords(vis(v) * txt(sentence)[:, :, None, None]))
            for v, vis, txt, mix in zip(feats, self.vis, self.txt, self.mix)
        ]
        x = fused[-1]
        for f, conv in zip(reversed(fused[:-1]), reversed(self.top_down)):
            x = F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
            x = conv(torch.cat([f, x], dim=1))
        return x
