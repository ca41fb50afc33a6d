"""How much of a mask survives a coarse feature map: the resolution ceiling of a decoder (chapter 5).

CRIS decodes at stride 16 (its FPN neck ends at H/16, Sec. 3.2 and ``CRIS.forward_features``) and only
then upsamples by 4 with convolutions; LTS segments from stride 8 and predicts at stride 4. A mask that
a model can only express at stride ``s`` is, at best, roughly the ground truth averaged over s x s cells
and interpolated back. :func:`stride_ceiling` measures that: for each ground-truth mask it resizes the
mask to the model input, area-averages it to the ``input_size / stride`` grid, upsamples it back to the
original size (bicubic, as the CRIS post-processing does) and scores ``> 0.5`` against the original.
It gauges how much of a shape such a grid keeps; it is not a strict bound: a learned upsampler (the CRIS
projector convolves again at stride 4) can recover part of what the averaging blurs.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from refseg_core.metrics import iou


def stride_ceiling(masks: Iterable[np.ndarray], input_size: int, stride: int) -> float:
    """Mean IoU of each bool mask ``(H, W)`` against itself seen through an ``input_size / stride`` grid.

    The mask is stretched to ``input_size x input_size`` (aspect ignored: a bound, not the letterbox),
    area-averaged to ``(input_size // stride)^2`` cells, upsampled bicubically to ``(H, W)`` and thresholded
    at 0.5. Raises ``ValueError`` for no masks or a grid smaller than one cell.
    """
    if input_size // stride < 1:
        raise ValueError(f"stride_ceiling: input_size {input_size} / stride {stride} leaves no grid cell")
    scores = []
    for m in masks:
        gt = np.asarray(m, dtype=bool)
        if gt.ndim != 2:
            raise ValueError(f"stride_ceiling: masks must be (H, W), got shape {gt.shape}")
        t = torch.from_numpy(gt.astype(np.float32))[None, None]
        x = F.interpolate(t, size=(input_size, input_size), mode="area")
        g = F.adaptive_avg_pool2d(x, input_size // stride)
        up = F.interpolate(g, size=gt.shape, mode="bicubic", align_corners=False)[0, 0].numpy() > 0.5
        scores.append(iou(up, gt))
    if not scores:
        raise ValueError("stride_ceiling: no masks given")
    return float(np.mean(scores))
