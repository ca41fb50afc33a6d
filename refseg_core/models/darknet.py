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

Pretrained weights. LTS is widely reported to start from a DarkNet-53 trained for COCO detection with the
RefCOCO val/test images removed (the MAttNet/YOLOv3 practice; *unverified* for LTS); those weights are
published nowhere this project can download from. What can be had is timm's ImageNet-1k DarkNet-53,
``darknet53.c2ns_in1k`` (:data:`TIMM_TAGS`): ``pretrained="darknet53.c2ns_in1k"`` fetches it through
``timm.create_model(..., pretrained=True)`` (Hugging Face ``timm/darknet53.c2ns_in1k``, safetensors), and a
local file in the same format (timm's state dict, ``.safetensors`` or a dict saved with ``torch.save``) works
offline. timm builds the same network (stem 32, five stages of a stride-2 conv and 1x1-halve / 3x3 residual
blocks, 1, 2, 8, 8, 4 blocks, features at strides 8/16/32 from ``features_only=True, out_indices=(3, 4,
5)``) with one difference: its LeakyReLU slope is 0.01, YOLOv3's 0.1. The weights are mapped onto
:class:`DarkNet53` (:func:`timm_to_darknet`) built with timm's slope (:data:`TIMM_SLOPE`), which gives
timm's outputs exactly (``tests/test_darknet.py``). :class:`DarkNet53` is kept rather than timm's module
because it also builds the reduced widths of ``lts_tiny`` and keeps one set of state-dict keys for random
and pretrained starts. ImageNet weights expect ImageNet normalisation (timm's ``pretrained_cfg``: mean
(0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)); :mod:`refseg_core.models.lts` declares it with them.
A state dict of :class:`DarkNet53` itself (its own keys) loads as well.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

# Channels and residual blocks of the five stages at width 1, depth 1 (YOLOv3, Table 1).
STAGE_CHANNELS = (64, 128, 256, 512, 1024)
STAGE_BLOCKS = (1, 2, 8, 8, 4)
STEM_CHANNELS = 32


YOLO_SLOPE = 0.1  # LeakyReLU slope of YOLOv3's DarkNet-53
TIMM_SLOPE = 0.01  # timm's darknet53 (act_layer "leaky_relu": torch's default slope)
# pretrained tags fetched through timm: tag -> timm model name
TIMM_TAGS = {"darknet53.c2ns_in1k": "darknet53.c2ns_in1k"}


def conv_bn_leaky(c_in: int, c_out: int, k: int, stride: int = 1, slope: float = YOLO_SLOPE) -> nn.Sequential:
    """DarkNet's basic unit: ``Conv(k, stride, no bias) -> BN -> LeakyReLU(slope)``."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(slope, inplace=True),
    )


class DarkResidual(nn.Module):
    """Residual block ``x + conv3x3(conv1x1(x))``; the 1x1 halves the channels (a bottleneck)."""

    def __init__(self, channels: int, slope: float = YOLO_SLOPE):
        super().__init__()
        hidden = max(1, channels // 2)
        self.body = nn.Sequential(
            conv_bn_leaky(channels, hidden, 1, slope=slope), conv_bn_leaky(hidden, channels, 3, slope=slope)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DarkNet53(nn.Module):
    """DarkNet-53 returning the stride-8, 16 and 32 feature maps.

    ``forward(x (B, 3, H, W)) -> (c3 (B, C3, H/8, W/8), c4 (B, C4, H/16, W/16), c5 (B, C5, H/32, W/32))``
    with ``(C3, C4, C5) = self.out_channels`` = (256, 512, 1024) x ``width``. ``slope``: the LeakyReLU
    slope (YOLOv3's 0.1; timm's ImageNet weights were trained with 0.01).
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0, slope: float = YOLO_SLOPE):
        super().__init__()
        if width <= 0 or depth <= 0:
            raise ValueError(f"DarkNet53: width and depth must be > 0, got width={width}, depth={depth}")
        if not 0 <= slope < 1:
            raise ValueError(f"DarkNet53: the LeakyReLU slope must be in [0, 1), got {slope}")
        self.width, self.depth, self.slope = float(width), float(depth), float(slope)
        stem = max(1, round(STEM_CHANNELS * width))
        self.stem = conv_bn_leaky(3, stem, 3, slope=slope)
        stages, widths = [], []
        c_in = stem
        for c, n in zip(STAGE_CHANNELS, STAGE_BLOCKS):
            c_out = max(2, round(c * width))
            widths.append(c_out)
            blocks = max(1, round(n * depth))
            stages.append(
                nn.Sequential(
                    conv_bn_leaky(c_in, c_out, 3, stride=2, slope=slope),
                    *[DarkResidual(c_out, slope) for _ in range(blocks)],
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


def timm_to_darknet(state: dict) -> dict:
    """timm's ``darknet53`` state-dict keys -> :class:`DarkNet53`'s; the classifier (``head.*``) is dropped.

    ``stem.conv1.{conv,bn}`` -> ``stem.{0,1}``; ``stages.i.conv_down.{conv,bn}`` -> ``stages.i.0.{0,1}``;
    ``stages.i.blocks.j.conv{1,2}.{conv,bn}`` -> ``stages.i.{j+1}.body.{0,1}.{0,1}``. A key that fits none
    of these raises ``ValueError`` naming it."""
    part = {"conv": "0", "bn": "1"}
    out = {}
    for key, value in state.items():
        if key.startswith("head."):
            continue
        m = re.fullmatch(r"stem\.conv1\.(conv|bn)\.(\w+)", key)
        if m:
            out[f"stem.{part[m[1]]}.{m[2]}"] = value
            continue
        m = re.fullmatch(r"stages\.(\d+)\.conv_down\.(conv|bn)\.(\w+)", key)
        if m:
            out[f"stages.{m[1]}.0.{part[m[2]]}.{m[3]}"] = value
            continue
        m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.conv([12])\.(conv|bn)\.(\w+)", key)
        if m:
            out[f"stages.{m[1]}.{int(m[2]) + 1}.body.{int(m[3]) - 1}.{part[m[4]]}.{m[5]}"] = value
            continue
        raise ValueError(f"key {key!r} is not one of timm's darknet53 keys")
    return out


def is_timm_format(state: dict) -> bool:
    """True for a state dict with timm's ``darknet53`` keys (``stem.conv1.conv.weight``, ...)."""
    return "stem.conv1.conv.weight" in state


def read_darknet_state(source: str | os.PathLike) -> tuple[dict, str]:
    """The DarkNet-53 state dict that ``source`` names, and its format (``"timm"`` or ``"darknet"``).

    ``source``: a tag of :data:`TIMM_TAGS` (downloaded through timm, which reads Hugging Face's
    safetensors file; ``HF_ENDPOINT`` is honoured) or a local file: ``.safetensors``, or a
    dict saved with ``torch.save``, read with ``weights_only=True`` (nested under ``state_dict`` / ``model`` and a
    ``backbone.`` prefix are accepted). Errors are one sentence naming ``source``."""
    if isinstance(source, str) and source in TIMM_TAGS:
        import timm

        try:
            state = timm.create_model(TIMM_TAGS[source], pretrained=True).state_dict()
        except Exception as exc:  # no network, no such file on the hub, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"pretrained={source!r}: timm could not fetch the ImageNet DarkNet-53 weights ({first[:200]}); "
                "offline, pass the path of a local copy (timm's state dict, e.g. its model.safetensors)"
            ) from None
        return state, "timm"
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"DarkNet-53 weights not found: {path!r} is neither a local file nor a tag "
            f"({', '.join(TIMM_TAGS)}: timm's ImageNet weights)"
        )
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(
                f"DarkNet-53 weights {path!r} are not a readable safetensors file ({exc})"
            ) from None
    else:
        from refseg_core.safe_load import torch_load

        state = torch_load(path, what="DarkNet-53 weights")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"DarkNet-53 weights {path!r} do not hold a state dict of tensors")
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    return state, "timm" if is_timm_format(state) else "darknet"


def load_darknet_weights(model: DarkNet53, source, fmt: str | None = None) -> DarkNet53:
    """Load DarkNet-53 weights into ``model``: ``source`` is a tag or a file (:func:`read_darknet_state`)
    or an already read state dict (then ``fmt`` says whose keys it has; None: detected).

    timm's keys are mapped (:func:`timm_to_darknet`). Weights that do not fit raise ``ValueError``
    naming the source and the first mismatching keys."""
    if isinstance(source, dict):
        state, fmt, name = (
            source,
            fmt or ("timm" if is_timm_format(source) else "darknet"),
            "DarkNet-53 weights",
        )
    else:
        state, fmt = read_darknet_state(source)
        name = f"DarkNet-53 weights {os.fspath(source)!r}"
    if fmt == "timm":
        try:
            state = timm_to_darknet(state)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(
            f"{name} do not fit DarkNet53(width={model.width}, depth={model.depth}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    model.load_state_dict(state)
    return model
