"""One training step, as :func:`refseg_core.engine.loop.train`, chapter 5 and the benchmarks run it.

* :class:`LossModule` — ``model.loss`` (+ an optional dice term) as ``forward``, so DDP and
  ``torch.compile`` wrap the loss too.
* :func:`train_step` — batch to the device, forward and loss under autocast.
* :func:`backward_step` — backward through the (fp16) GradScaler, optional clipping, one optimiser step.

The official CRIS.pytorch ``engine/engine.py`` (``train``) does the same with fp16 autocast and a
GradScaler; bf16 is the default on CUDA here (no loss scaling needed) and the scaler is only enabled for
fp16, so the step is one path.
"""

from __future__ import annotations

import torch
from torch import nn

from refseg_core.engine.precision import autocast
from refseg_core.losses import dice_loss


class LossModule(nn.Module):
    """``forward(images (B, 3, H, W), tokens (B, L), masks (B, 1, H, W))`` = ``model.loss`` (+
    ``dice_weight`` x :func:`refseg_core.losses.dice_loss` when > 0): a dict with ``loss`` (scalar),
    ``logits`` ``(B, 1, H/4, W/4)`` and the model's detached terms.

    DDP and torch.compile wrap ``forward``, so the loss must be it."""

    wraps_model = True  # precision.unwrap looks through it

    def __init__(self, model: nn.Module, dice_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.dice_weight = dice_weight

    def forward(self, images, tokens, masks):
        out = self.model.loss(images, tokens, masks)
        if self.dice_weight > 0:
            dice = dice_loss(out["logits"], masks)
            out = dict(out, loss=out["loss"] + self.dice_weight * dice, dice=dice.detach())
        return out


def set_train_mode(model: nn.Module, bn_eval: bool) -> None:
    """``model.train()``; with ``bn_eval`` every BatchNorm stays in eval mode (frozen running statistics)."""
    model.train()
    if bn_eval:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_step(
    loss_module: nn.Module,
    batch: dict,
    device: torch.device,
    amp: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict:
    """Forward + loss of one collated ``batch`` under autocast to ``amp`` (None: fp32).

    ``batch["image"]`` ``(B, 3, H, W)`` (converted to ``channels_last`` memory if asked),
    ``batch["tokens"]`` ``(B, L)``, ``batch["mask"]`` ``(B, 1, H, W)`` go to ``device``. Returns the
    :class:`LossModule` dict, ``loss`` still attached to the graph (see :func:`backward_step`)."""
    images = batch["image"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    tokens = batch["tokens"].to(device, non_blocking=True)
    masks = batch["mask"].to(device, non_blocking=True)
    with autocast(amp, device):
        return loss_module(images, tokens, masks)


def backward_step(out: dict, model: nn.Module, optimizer, scaler, cfg) -> None:
    """Backward of ``out["loss"]`` through the (fp16) scaler, clipping to ``cfg.grad_clip`` (if not None),
    one optimiser step. ``model`` is what ``out`` came from (its parameters are clipped)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(out["loss"]).backward()
    if cfg.grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()


__all__ = ["backward_step", "LossModule", "set_train_mode", "train_step"]
