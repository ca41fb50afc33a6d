"""DarkNet-53, the visual encoder of LTS (Jing et al., CVPR 2021, Sec. 3.1).

DarkNet-53 is the backbone of YOLOv3 (Redmon & Farhadi, 2018): a stem convolution, then five stages,
each a stride-2 3x3 convolution followed by residual blocks (1x1 squeeze to half width, 3x3 back to
full width, identity shortcut). Every convolution is Conv (no bias) + BatchNorm + LeakyReLU(0.1).

| stage | stride | channels | residual blocks | returned |
|---|---|---|---|---|
| stem | 1 | 32 | - | |
| 1 | 2 | 64 | 1 | |
| 2 | 4 | 128 | 2 | |
| 3 | 8 | 256 | 8 | ``c3`` (B, 256, H/8, W/8) |
| 4 | 16 | 512 | 8 | ``c4`` (B, 512, H/16, W/16) |
| 5 | 32 | 1024 | 4 | ``c5`` (B, 1024, H/32, W/32) |

``width`` multiplies every channel count and ``depth`` the number of residual blocks (at least one
per stage), so ``lts_tiny`` (width 1/8, depth 1/4) keeps the same strides and topology at a size a CPU
trains in seconds.

Pretrained weights: LTS starts from a DarkNet-53 trained for COCO detection with the RefCOCO val/test
images removed (the MAttNet/YOLOv3 practice; *unverified* for LTS). Those weights are not published
anywhere this project can download from, so ``pretrained`` only accepts a **local** state-dict file
whose keys match :class:`DarkNet53` (width 1, depth 1). The pretrained option that works out of the
box is the CLIP backbone (``backbone="clip_rn50"``), whose weights open_clip provides.
"""

from __future__ import annotations

import os

import torch
from torch import nn

# Channels and residual blocks of the five stages at width 1, depth 1 (YOLOv3, Table 1).
STAGE_CHANNELS = (64, 128, 256, 512, 1024)
STAGE_BLOCKS = (1, 2, 8, 8, 4)
STEM_CHANNELS = 32


def conv_bn_leaky(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    """DarkNet's basic unit: ``Conv(k, stride, no bias) -> BN -> LeakyReLU(0.1)``."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DarkResidual(nn.Module):
    """Residual block ``x + conv3x3(conv1x1(x))``; the 1x1 halves the channels (a bottleneck)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(1, channels // 2)
        self.body = nn.Sequential(conv_bn_leaky(channels, hidden, 1), conv_bn_leaky(hidden, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DarkNet53(nn.Module):
    """DarkNet-53 returning the stride-8, 16 and 32 feature maps.

    ``forward(x (B, 3, H, W)) -> (c3 (B, C3, H/8, W/8), c4 (B, C4, H/16, W/16), c5 (B, C5, H/32, W/32))``
    with ``(C3, C4, C5) = self.out_channels`` = (256, 512, 1024) x ``width``.
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        if width <= 0 or depth <= 0:
            raise ValueError(f"DarkNet53: width and depth must be > 0, got width={width}, depth={depth}")
        self.width, self.depth = float(width), float(depth)
        stem = max(1, round(STEM_CHANNELS * width))
        self.stem = conv_bn_leaky(3, stem, 3)
        stages, widths = [], []
        c_in = stem
        for c, n in zip(STAGE_CHANNELS, STAGE_BLOCKS):
            c_out = max(2, round(c * width))
            widths.append(c_out)
            blocks = max(1, round(n * depth))
            stages.append(
                nn.Sequential(
                    conv_bn_leaky(c_in, c_out, 3, stride=2), *[DarkResidual(c_out) for _ in range(blocks)]
                )
            )
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.out_channels: tuple[int, int, int] = tuple(widths[2:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[2], feats[3], feats[4]


def load_darknet_weights(model: DarkNet53, path: str | os.PathLike) -> DarkNet53:
    """Load a local DarkNet-53 state dict (``torch.save(model.state_dict())`` of :class:`DarkNet53`).

    Accepts a plain state dict or one nested under ``"state_dict"`` / ``"model"``, with or without a
    ``"backbone."`` key prefix. Raises ``FileNotFoundError`` naming the path, and ``ValueError`` naming
    the path and the first mismatching keys when the file does not fit this architecture.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"DarkNet-53 weights not found: {path!r}. COCO-trained DarkNet-53 weights cannot be downloaded "
            "here; pass a local state-dict file, or use backbone='clip_rn50' for a pretrained encoder."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code, truncated files, non-torch files
        raise ValueError(f"could not read DarkNet-53 weights from {path!r}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise TypeError(f"{path!r} does not hold a state dict (got {type(state).__name__})")
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(
            f"DarkNet-53 weights in {path!r} do not fit DarkNet53(width={model.width}, depth={model.depth}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    model.load_state_dict(state)
    return model
