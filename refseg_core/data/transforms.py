"""Letterbox to a square input and its inverse (the CRIS input geometry, without OpenCV).

CRIS (Wang et al., CVPR 2022, Sec. 4, implementation details; official ``utils/dataset.py``) keeps
the aspect ratio: the image is scaled by ``min(S/H, S/W)``, centred on an ``S x S`` canvas filled with
the CLIP mean colour (bicubic), and the mask is warped the same way (bilinear, soft edges, border 0).
Predictions are mapped back by cropping the letterboxed region and resizing it to ``(H, W)``.

Differences from the official code that stay on purpose, all below one pixel: the official
affine warp places the image at a sub-pixel offset ``(S - H*scale) / 2`` and maps pixel *indices*
(``x_src = (x_dst - offset) / scale``), while here the resized size is rounded half-up to whole pixels
(at least 1), the offset is ``(S - new) // 2`` (an odd remainder leaves the extra pixel at the bottom /
right) and resizing maps pixel *centres* (``torch.nn.functional.interpolate``, ``align_corners=False``,
no antialiasing, the same cubic kernel a = -0.75 and linear kernel as OpenCV). The whole-pixel placement
makes the inverse a plain crop and resize and needs no OpenCV. Measured against OpenCV's ``warpAffine``
on COCO-sized images into 416: mean absolute image difference about 2/255, and inverse-warped
predictions thresholded at 0.35 agree with IoU above 0.995 (with the official ``align_corners=True``
up-sampling of :mod:`refseg_core.engine.postprocess`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class LetterboxParams:
    """Where an ``orig_h x orig_w`` image lies on the ``size x size`` canvas.

    The image occupies rows ``top : top + new_h`` and columns ``left : left + new_w``; ``scale`` is
    ``min(size / orig_h, size / orig_w)`` (the exact factor; ``new_*`` are its rounded results).
    """

    orig_h: int
    orig_w: int
    size: int
    scale: float
    new_h: int
    new_w: int
    top: int
    left: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LetterboxParams:
        try:
            return cls(**{k: (float(d[k]) if k == "scale" else int(d[k])) for k in cls.__dataclass_fields__})
        except KeyError as exc:
            raise ValueError(f"letterbox params lack {exc.args[0]!r}: {d!r}") from None


def letterbox_params(h: int, w: int, size: int) -> LetterboxParams:
    """Geometry of letterboxing an ``h x w`` image into ``size x size``.

    ``new = floor(side * scale + 0.5)`` clamped to ``[1, size]``; ``top = (size - new_h) // 2``,
    ``left = (size - new_w) // 2``.
    """
    for name, v in (("h", h), ("w", w), ("size", size)):
        if int(v) != v or v < 1:
            raise ValueError(f"letterbox_params: {name} must be a positive integer, got {v!r}")
    h, w, size = int(h), int(w), int(size)
    scale = min(size / h, size / w)
    new_h = min(size, max(1, math.floor(h * scale + 0.5)))
    new_w = min(size, max(1, math.floor(w * scale + 0.5)))
    return LetterboxParams(h, w, size, scale, new_h, new_w, (size - new_h) // 2, (size - new_w) // 2)


def _resize(x: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize the last two dims of a (N, C, H, W) float tensor (identity when the size is unchanged)."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(x, size=hw, mode=mode, align_corners=False)
    return F.interpolate(x, size=hw, mode="nearest-exact")


def letterbox_image(
    img: Image.Image, size: int, fill: Sequence[float] = CLIP_MEAN
) -> tuple[torch.Tensor, LetterboxParams]:
    """Letterbox an RGB PIL image: ``FloatTensor (3, S, S)`` in [0, 1] and its :class:`LetterboxParams`.

    Bicubic resize (clamped to [0, 1], since the cubic kernel overshoots at edges); the border is
    ``fill``, an RGB colour in [0, 1] (CLIP mean by default, which normalises to exactly 0).
    """
    if not isinstance(img, Image.Image) or img.mode != "RGB":
        got = img.mode if isinstance(img, Image.Image) else type(img).__name__
        raise ValueError(f"letterbox_image expects an RGB PIL image (see refer.to_rgb), got {got}")
    if len(fill) != 3:
        raise ValueError(f"letterbox_image: fill must be 3 values in [0, 1], got {fill!r}")
    p = letterbox_params(img.height, img.width, size)
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    x = _resize(x[None], (p.new_h, p.new_w), "bicubic")[0].clamp_(0.0, 1.0)
    out = torch.tensor([float(v) for v in fill], dtype=torch.float32).view(3, 1, 1).repeat(1, p.size, p.size)
    out[:, p.top : p.top + p.new_h, p.left : p.left + p.new_w] = x
    return out, p


def letterbox_mask(mask: np.ndarray, params: LetterboxParams) -> torch.Tensor:
    """Warp a target mask ``(H, W)`` like its image: ``FloatTensor (S, S)``, bilinear (soft edges in
    [0, 1]), border 0."""
    mask = np.asarray(mask)
    if mask.shape != (params.orig_h, params.orig_w):
        raise ValueError(
            f"letterbox_mask: mask is {mask.shape}, params expect {(params.orig_h, params.orig_w)}"
        )
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    m = _resize(m, (params.new_h, params.new_w), "bilinear")[0, 0].clamp_(0.0, 1.0)
    out = torch.zeros(params.size, params.size)
    out[params.top : params.top + params.new_h, params.left : params.left + params.new_w] = m
    return out


def inverse_letterbox(x: torch.Tensor, params: LetterboxParams, mode: str = "bilinear") -> torch.Tensor:
    """Map a letterboxed map ``(..., S, S)`` back to the original image: ``(..., H, W)``.

    Crops the image region and resizes it to ``(orig_h, orig_w)``. ``mode`` is ``bicubic``,
    ``bilinear`` (float output; bicubic may overshoot, clamp if you need [0, 1]) or ``nearest``
    (pixel-centre nearest neighbour, ``nearest-exact`` in torch; keeps the input dtype).
    """
    if mode not in ("bicubic", "bilinear", "nearest"):
        raise ValueError(f"inverse_letterbox: mode must be bicubic, bilinear or nearest, got {mode!r}")
    if x.dim() < 2 or tuple(x.shape[-2:]) != (params.size, params.size):
        raise ValueError(
            f"inverse_letterbox: expected (..., {params.size}, {params.size}), got {tuple(x.shape)}"
        )
    lead = x.shape[:-2]
    crop = x[..., params.top : params.top + params.new_h, params.left : params.left + params.new_w]
    y = crop.reshape(-1, 1, params.new_h, params.new_w)
    dtype = y.dtype
    y = _resize(y.float(), (params.orig_h, params.orig_w), mode)
    if mode == "nearest" and dtype != y.dtype:
        y = y.to(dtype)
    return y.reshape(*lead, params.orig_h, params.orig_w)


def _stats(x: torch.Tensor, v: Sequence[float], name: str) -> torch.Tensor:
    if x.dim() < 3 or x.shape[-3] != len(v):
        raise ValueError(f"{name}: expected (..., {len(v)}, H, W), got {tuple(x.shape)}")
    return torch.as_tensor(v, dtype=x.dtype, device=x.device).view(-1, 1, 1)


def normalize(
    x: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> torch.Tensor:
    """``(x - mean) / std`` over the channel dim of ``(..., 3, H, W)``."""
    return (x - _stats(x, mean, "normalize")) / _stats(x, std, "normalize")


def denormalize(
    x: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> torch.Tensor:
    """Inverse of :func:`normalize` (for figures): ``x * std + mean``."""
    return x * _stats(x, std, "denormalize") + _stats(x, mean, "denormalize")


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "LetterboxParams",
    "denormalize",
    "inverse_letterbox",
    "letterbox_image",
    "letterbox_mask",
    "letterbox_params",
    "normalize",
]
