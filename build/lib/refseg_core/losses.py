"""Auxiliary mask losses that the engine can add to a model's own loss.

Neither paper uses a Dice term: CRIS trains with BCE alone (Sec. 3.4) and LTS with two BCE terms
(Sec. 3.3). The engine adds :func:`dice_loss` only when ``dice_weight > 0`` (default 0), which the CPU
smoke runs use: with a target covering ~5 % of the pixels, plain BCE lets a model from random
initialisation sit on "predict background" for epochs, and the Dice term, which scores the overlap
itself, pushes it out of that corner early (Milletari et al., V-Net, 2016).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss, averaged over the batch.

    ``logits``: ``(B, 1, h, w)`` raw scores; ``masks``: ``(B, 1, H, W)`` or ``(B, H, W)`` in [0, 1] at any
    resolution (area-averaged to ``h x w`` when it differs). Per sample
    ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` with ``p = sigmoid(logits)``; a scalar tensor.
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    if logits.dim() != 4 or logits.shape[1] != 1 or masks.shape[0] != logits.shape[0]:
        raise ValueError(
            f"dice_loss: logits must be (B, 1, h, w) and masks (B, 1, H, W) with the same B, "
            f"got {tuple(logits.shape)} and {tuple(masks.shape)}"
        )
    target = masks.to(torch.float32)
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.adaptive_avg_pool2d(target, logits.shape[-2:])
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return (1 - dice).mean()
