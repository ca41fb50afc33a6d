"""LTS, step 1 (paper Fig. 2): cross-modal fusion. The paper says only that the ConvNet's visual features
and the bi-GRU's sentence are fused into cross-modal features; the design here is this book's choice
(``refseg_core.models.lts`` lists every choice): visual features of several levels meet the sentence
(an element-wise product per channel by default, the operator widely reported for LTS), gain xy
coordinates (CoordConv), and are aggregated top-down to the finest level: the map the position prior is
located on and the mask is segmented from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from refseg_core.models.layers import add_coords, conv_bn_relu

FUSION_OPS = ("product", "sum", "concat")


class Fusion(nn.Module):
    """Multi-level fusion: ``(V_i for each level), sentence (B, T) -> fused (B, D, h, w)`` at the first
    (finest) level's grid (stride 8 with the default levels 3, 4, 5).

    At each level ``f_i = conv3x3([BN(conv1x1(V_i)) op Linear_i(s); x, y])``, where ``op`` is the
    element-wise product (``"product"``: the sentence gates every visual channel), a sum (``"sum"``) or a
    concatenation of the sentence vector tiled over the map (``"concat"``), and ``x, y`` are two
    coordinate channels (left out with ``coords=False``). A top-down pass (upsample to the finer grid,
    concatenate, conv3x3) aggregates the coarsest level into the finest.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        text_dim: int,
        dim: int,
        op: str = "product",
        coords: bool = True,
    ):
        super().__init__()
        if op not in FUSION_OPS:
            raise ValueError(f"fusion op {op!r} is not one of {FUSION_OPS}")
        self.op, self.coords = op, bool(coords)
        self.vis = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1, bias=False), nn.BatchNorm2d(dim)) for c in in_channels
        )
        self.txt = nn.ModuleList(nn.Linear(text_dim, dim) for _ in in_channels)
        c_mix = (2 * dim if op == "concat" else dim) + (2 if self.coords else 0)
        self.mix = nn.ModuleList(conv_bn_relu(c_mix, dim, 3) for _ in in_channels)
        self.top_down = nn.ModuleList(conv_bn_relu(2 * dim, dim, 3) for _ in in_channels[1:])

    def combine(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``v (B, D, h, w)`` (a projected visual level) ``op`` ``s (B, D)`` (the projected sentence)."""
        s = s[:, :, None, None]
        if self.op == "product":
            return v * s
        if self.op == "sum":
            return v + s
        return torch.cat([v, s.expand(-1, -1, *v.shape[-2:])], dim=1)

    def forward(self, feats: Sequence[torch.Tensor], sentence: torch.Tensor) -> torch.Tensor:
        fused = []
        for v, vis, txt, mix in zip(feats, self.vis, self.txt, self.mix):
            x = self.combine(vis(v), txt(sentence))
            fused.append(mix(add_coords(x) if self.coords else x))
        x = fused[-1]
        for f, conv in zip(reversed(fused[:-1]), reversed(self.top_down)):
            x = F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
            x = conv(torch.cat([f, x], dim=1))
        return x
