"""The protocol every model in this book follows, so notebooks, the CLI, tests and benchmarks meet
LTS and CRIS the same way."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class RefSegModel(nn.Module):
    """Base class: ``forward(images (B,3,H,W), tokens (B,L)) -> logits (B,1,H/4,W/4)``.

    Subclasses set ``self.tokenizer`` (a callable ``list[str] -> LongTensor (B, L)``) and
    ``self.config`` (the keyword arguments, including ``name``, that rebuild the model with
    :func:`refseg_core.models.build_model`), and implement :meth:`forward`, :meth:`loss` and
    :meth:`param_groups`.
    """

    tokenizer: Any
    config: dict

    def loss(self, images: torch.Tensor, tokens: torch.Tensor, masks: torch.Tensor) -> dict:
        """Training objective. ``masks`` is ``(B, 1, H, W)`` float in [0, 1] at input resolution.

        Returns a dict with ``loss`` (scalar tensor), ``logits`` ``(B, 1, H/4, W/4)`` and any named
        loss terms (floats or scalar tensors) worth logging.
        """
        raise NotImplementedError

    def param_groups(self, lr: float, backbone_lr_mult: float = 1.0) -> list[dict]:
        """Optimiser parameter groups; the pretrained backbone gets ``lr * backbone_lr_mult``."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr, "name": "all"}]
