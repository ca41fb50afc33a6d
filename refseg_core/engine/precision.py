"""Precision and wrappers, shared by training and evaluation: :func:`amp_dtype` / :func:`autocast` (the
16-bit type of a ``precision`` setting and its autocast context) and :func:`unwrap` (the model inside
``torch.compile``, DDP and the loss wrapper).

The official CRIS.pytorch trains and validates under fp16 ``torch.cuda.amp.autocast``; ``precision`` picks
fp16, bf16 or fp32 (``auto`` = bf16 on CUDA, fp32 elsewhere).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a ``precision`` setting: None (fp32), bf16 or fp16; ``auto`` = bf16 on CUDA."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(dtype: torch.dtype | None, device: torch.device):
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context when ``dtype`` is None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def unwrap(model: nn.Module) -> nn.Module:
    """The RefSegModel inside torch.compile / DDP / :class:`LossModule` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif getattr(model, "wraps_model", False):  # step.LossModule (the loss as forward)
            model = model.model
        else:
            return model
