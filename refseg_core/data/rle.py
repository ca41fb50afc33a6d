"""Masks as COCO run-length encodings (pycocotools), both ways: :func:`mask_to_rle` writes the predicted
masks of ``evaluate --save-predictions`` and :func:`rle_to_mask` reads them back (chapter 6), and the
compressed RLE masks of RefCOCO-M.

The JSON form is ``{"size": [H, W], "counts": str}`` (compressed counts as ASCII).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def mask_to_rle(mask: np.ndarray) -> dict:
    """A boolean mask ``(H, W)`` as a compressed COCO RLE ``{"size": [H, W], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask).astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """The boolean mask ``(H, W)`` of a compressed RLE (``counts`` a str or bytes), the inverse of
    :func:`mask_to_rle`."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return mask_utils.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)
