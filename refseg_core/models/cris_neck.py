"""CRIS, Sec. 3.2: the cross-modal neck. An FPN over CLIP's three visual scales in which the sentence
gates the coarsest map channel by channel; CoordConv at the end. Output ``(B, 512, H/16, W/16)``.
Follows the official CRIS.pytorch ``model/layers.py`` (``FPN``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from refseg_core.models.layers import add_coords, conv_bn_relu


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class CRISNeck(nn.Module):
    """Cross-modal FPN (Sec. 3.2): fuses ``v3, v4, v5`` with the sentence state into ``(B, C4, h, w)``
    at stride 16, where ``channels = (C3, C4, C5)`` are the output widths (256, 512, 1024).

    * ``f5 = BNReLU(convBNReLU1x1(v5) * sentence_proj(state))`` at stride 32 (the only place the
      sentence enters the neck: a channel-wise gate);
    * ``f4 = convBNReLU1x1(cat(convBNReLU3x3(v4), up2(f5)))`` at stride 16;
    * ``f3 = convBNReLU1x1(cat(avgpool2(convBNReLU3x3(v3)), f4))`` at stride 16;
    * each projected by a 3x3 conv to C4 (``f5`` then upsampled), concatenated, fused by 1x1, then a
      CoordConv 3x3 (x, y channels appended) and a 3x3 conv.
    """

    def __init__(
        self, in_channels=(512, 1024, 1024), channels=(256, 512, 1024), state_dim: int | None = None
    ):
        super().__init__()
        c3, c4, c5 = channels
        state_dim = in_channels[2] if state_dim is None else state_dim
        self.sentence_proj = nn.Sequential(
            nn.Linear(state_dim, c5, bias=False), nn.BatchNorm1d(c5), nn.ReLU(inplace=True)
        )
        self.v5_proj = conv_bn_relu(in_channels[2], c5, 1)
        self.f5_norm = nn.Sequential(nn.BatchNorm2d(c5), nn.ReLU(inplace=True))
        self.v4_proj = conv_bn_relu(in_channels[1], c4, 3)
        self.f4_fuse = conv_bn_relu(c5 + c4, c4, 1)
        self.v3_proj = conv_bn_relu(in_channels[0], c3, 3)
        self.f3_fuse = conv_bn_relu(c3 + c4, c4, 1)
        self.out5 = conv_bn_relu(c5, c4, 3)
        self.out4 = conv_bn_relu(c4, c4, 3)
        self.out3 = conv_bn_relu(c4, c4, 3)
        self.aggregate = conv_bn_relu(3 * c4, c4, 1)
        self.coord_conv = conv_bn_relu(c4 + 2, c4, 3)  # CoordConv: input has 2 coordinate channels more
        self.out_conv = conv_bn_relu(c4, c4, 3)

    def forward(self, v3, v4, v5, state) -> torch.Tensor:
        """``v3 (B,C3',8s), v4 (B,C4',16s), v5 (B,C5',32s), state (B,E) -> (B, C4, H/16, W/16)``."""
        gate = self.sentence_proj(state)[:, :, None, None]  # (B, C5, 1, 1)
        f5 = self.f5_norm(self.v5_proj(v5) * gate)
        f4 = self.f4_fuse(torch.cat([self.v4_proj(v4), _up2(f5)], dim=1))
        f3 = self.f3_fuse(torch.cat([F.avg_pool2d(self.v3_proj(v3), 2, 2), f4], dim=1))
        fq = torch.cat([self.out3(f3), self.out4(f4), _up2(self.out5(f5))], dim=1)
        fq = self.aggregate(fq)
        return self.out_conv(self.coord_conv(add_coords(fq)))
