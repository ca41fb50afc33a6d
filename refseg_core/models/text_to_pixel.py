"""CRIS, Sec. 3.4: the text-to-pixel head. The paper scores each pixel embedding ``z_v`` against the
sentence vector ``z_t`` and trains ``sigmoid(z_t . z_v)`` with binary cross-entropy ("text-to-pixel
contrastive learning"); the official code (``model/layers.py``, ``Projector``) generates a per-sample 3x3
kernel plus a bias from the sentence and applies it as a grouped convolution: the logit at a pixel is the
kernel's product with the 3x3 neighbourhood of embeddings, not a 1x1 dot product. ``kernel_size=1`` gives
the paper's per-pixel product (plus the bias); the official model, and every ``cris_*`` model, uses 3.
The loss on these logits is the paper's, a per-pixel sigmoid BCE (:meth:`refseg_core.models.cris.CRIS.loss`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from refseg_core.models.layers import conv_bn_relu


class TextToPixelProjector(nn.Module):
    """Text-to-pixel head (Sec. 3.4): ``fq (B, D, H/16, W/16)``, ``state (B, E)`` -> logits
    ``(B, 1, H/4, W/4)``.

    Pixels: up2 -> convBNReLU3x3(D -> D) -> up2 -> convBNReLU3x3(D -> D/2) -> conv1x1 = ``z_v``
    ``(B, D/2, H/4, W/4)``. Sentence: ``Linear(E -> D/2*3*3 + 1)`` = a 3x3 kernel and a bias per sample,
    applied to its own sample with a grouped convolution (groups = B).
    """

    def __init__(self, state_dim=1024, dim=512, kernel_size=3):
        super().__init__()
        c = dim // 2
        self.kernel_size = kernel_size
        self.vis = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv_bn_relu(dim, dim, 3),
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv_bn_relu(dim, c, 3),
            nn.Conv2d(c, c, 1),
        )
        self.dynamic_kernel = nn.Linear(state_dim, c * kernel_size * kernel_size + 1)

    def kernels(self, state):
        """``state (B, E)`` -> ``weight (B, D/2, k, k)``, ``bias (B,)``."""
        params = self.dynamic_kernel(state)
        b = state.shape[0]
        return params[:, :-1].reshape(b, -1, self.kernel_size, self.kernel_size), params[:, -1]

    def forward(self, fq, state, return_parts: bool = False):
        z = self.vis(fq)  # (B, C, h, w)
        b, c, h, w = z.shape
        weight, bias = self.kernels(state)
        # One group per sample: sample i's channels meet only sample i's kernel.
        logits = F.conv2d(z.reshape(1, b * c, h, w), weight, bias, padding=self.kernel_size // 2, groups=b)
        logits = logits.reshape(b, 1, h, w)
        return (logits, z, weight, bias) if return_parts else logits
