"""LTS, step 3 (paper abstract and Fig. 2): *segment* — the prior is concatenated with the cross-modal
features and a light-weight convolutional network produces the mask. The network below (dilated branches,
one upsampling, mask logits at stride 4) is this book's choice; the paper says only "light-weight".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from refseg_core.models.layers import INIT_PROB, conv_bn_relu, init_prob_bias


class SegmentHead(nn.Module):
    """Light-weight segmentation network: ``x (B, C_in, h, w) -> logits (B, 1, 2h, 2w)``.

    conv3x3 -> parallel dilated conv3x3 (context at several ranges, ASPP-like) -> concat -> conv1x1
    -> upsample x2 (stride 8 -> 4) -> conv3x3 -> conv1x1 to one logit, whose bias starts at
    ``logit(init_prob)``.
    """

    def __init__(self, c_in: int, dim: int, dilations: Sequence[int], init_prob: float = INIT_PROB):
        super().__init__()
        half = max(1, dim // 2)
        self.reduce = conv_bn_relu(c_in, dim, 3)
        self.branches = nn.ModuleList(conv_bn_relu(dim, half, 3, dilation=int(d)) for d in dilations)
        self.merge = conv_bn_relu(half * len(dilations), dim, 1)
        self.refine = conv_bn_relu(dim, half, 3)
        self.out = init_prob_bias(nn.Conv2d(half, 1, 1), init_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        x = self.merge(torch.cat([b(x) for b in self.branches], dim=1))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(self.refine(x))
