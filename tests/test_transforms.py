"""Letterbox geometry, its inverse, and CLIP normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from refseg_core.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    LetterboxParams,
    denormalize,
    inverse_letterbox,
    letterbox_image,
    letterbox_mask,
    letterbox_params,
    normalize,
)


def blob_mask(h: int, w: int, seed: int) -> np.ndarray:
    """A union of a few random rectangles and an ellipse: object-like, with corners and curves."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for _ in range(3):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0 : y0 + max(2, h // 3), x0 : x0 + max(2, w // 3)] = 1
    yy, xx = np.mgrid[:h, :w]
    m |= (((yy - h / 2) / (h / 3 + 1)) ** 2 + ((xx - w / 3) / (w / 4 + 1)) ** 2 <= 1).astype(np.uint8)
    return m


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, float((a | b).sum()))


@pytest.mark.parametrize(
    "h,w,size,expected",
    [
        (480, 640, 416, (312, 416, 52, 0)),  # COCO landscape: 480 * 0.65 = 312
        (640, 427, 416, (416, 278, 0, 69)),  # 427 * 0.65 = 277.55 -> 278, (416 - 278) // 2 = 69
        (37, 91, 64, (26, 64, 19, 0)),  # 37 * 64 / 91 = 26.02
        (1, 5, 64, (13, 64, 25, 0)),  # 12.8 -> 13, odd remainder 51 -> top 25
        (500, 3, 64, (64, 1, 0, 31)),  # 0.384 rounds to 0, clamped to one pixel
        (64, 64, 64, (64, 64, 0, 0)),
    ],
)
def test_letterbox_params(h, w, size, expected):
    p = letterbox_params(h, w, size)
    assert (p.new_h, p.new_w, p.top, p.left) == expected
    assert p.scale == pytest.approx(min(size / h, size / w))
    assert LetterboxParams.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    "bad", [{"h": 0, "w": 5, "size": 4}, {"h": 3, "w": 5, "size": -1}, {"h": 2.5, "w": 5, "size": 4}]
)
def test_letterbox_params_rejects_bad_sizes(bad):
    name = next(k for k, v in bad.items() if v in (0, -1, 2.5))
    with pytest.raises(ValueError, match=name):
        letterbox_params(**bad)


def test_from_dict_names_missing_key():
    d = letterbox_params(3, 4, 8).to_dict()
    del d["top"]
    with pytest.raises(ValueError, match="'top'"):
        LetterboxParams.from_dict(d)


def test_letterbox_image_places_image_and_fills_border():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(10, 20, 3), dtype=np.uint8)
    x, p = letterbox_image(Image.fromarray(arr), 40)  # exact 2x upsampling: 20x40 at rows 10..29
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32
    assert (p.new_h, p.new_w, p.top, p.left) == (20, 40, 10, 0)
    border = torch.cat([x[:, :10].reshape(3, -1), x[:, 30:].reshape(3, -1)], dim=1)
    assert torch.allclose(border, torch.tensor(CLIP_MEAN).view(3, 1))
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # the border normalises to exactly zero with CLIP statistics
    assert normalize(x)[:, :10].abs().max() < 1e-6
    # same-size letterbox is the identity on pixel values
    y, q = letterbox_image(Image.fromarray(arr[:, :10]), 10)
    assert (q.top, q.left) == (0, 0)
    assert torch.equal(y, torch.from_numpy(arr[:, :10]).permute(2, 0, 1).float() / 255)


def test_letterbox_image_custom_fill_and_bad_input():
    x, _ = letterbox_image(Image.new("RGB", (8, 4), (255, 0, 0)), 8, fill=(0.0, 0.5, 1.0))
    assert torch.allclose(x[:, 0, 0], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(x[:, 4, 4], torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="RGB PIL image.*got L"):
        letterbox_image(Image.new("L", (4, 4)), 8)
    with pytest.raises(ValueError, match="fill"):
        letterbox_image(Image.new("RGB", (4, 4)), 8, fill=(0.5,))


def test_constant_image_round_trips():
    colour = (17, 200, 93)
    img = Image.new("RGB", (91, 37), colour)
    x, p = letterbox_image(img, 64)
    for mode in ("bicubic", "bilinear", "nearest"):
        back = inverse_letterbox(x, p, mode=mode)
        assert back.shape == (3, 37, 91)
        expected = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255
        assert (back - expected).abs().max() < 1e-5, mode


def test_letterbox_mask_soft_edges_and_zero_border():
    m = np.zeros((37, 91), np.uint8)
    m[10:20, 30:60] = 1
    p = letterbox_params(37, 91, 64)
    lm = letterbox_mask(m, p)
    assert lm.shape == (64, 64) and lm.dtype == torch.float32
    assert float(lm.min()) >= 0.0 and float(lm.max()) == 1.0
    soft = ((lm > 0) & (lm < 1)).sum()
    assert soft > 0  # bilinear edges, not nearest
    assert lm[: p.top].abs().sum() == 0 and lm[p.top + p.new_h :].abs().sum() == 0
    # area is preserved up to the scale factor (within the soft edge)
    assert float(lm.sum()) == pytest.approx(m.sum() * p.new_h * p.new_w / (37 * 91), rel=0.05)
    with pytest.raises(ValueError, match=r"mask is \(36, 91\)"):
        letterbox_mask(m[:36], p)


@pytest.mark.parametrize("h,w,seed", [(31, 47, 0), (1, 5, 1), (13, 9, 2), (20, 7, 3), (5, 33, 4), (63, 2, 5)])
def test_mask_round_trip_exact_when_upsampling(h, w, seed):
    m = blob_mask(h, w, seed) if min(h, w) > 1 else np.array([[0, 1, 1, 0, 1]], np.uint8)
    p = letterbox_params(h, w, 64)
    assert p.new_h >= h and p.new_w >= w
    back = inverse_letterbox(letterbox_mask(m, p), p, mode="bilinear")
    assert back.shape == (h, w)
    np.testing.assert_array_equal((back > 0.5).numpy().astype(np.uint8), m)


# Bounds measured over 20 seeds each (worst IoU 0.995, 0.970, 0.963, 0.996), set a little below.
@pytest.mark.parametrize(
    "h,w,seed,min_iou", [(37, 91, 0, 0.99), (500, 3, 0, 0.96), (300, 200, 1, 0.95), (128, 90, 2, 0.99)]
)
def test_mask_round_trip_close_when_downsampling(h, w, seed, min_iou):
    m = blob_mask(h, w, seed)
    if w == 3:  # a mask constant across the 3 columns survives the squeeze to one column
        m = np.repeat(m[:, :1], 3, axis=1)
    p = letterbox_params(h, w, 64)
    back = inverse_letterbox(letterbox_mask(m, p), p, mode="bilinear")
    assert iou((back > 0.5).numpy().astype(np.uint8), m) > min_iou


def test_inverse_letterbox_batch_dims_and_nearest_dtype():
    p = letterbox_params(10, 30, 16)
    x = torch.rand(2, 3, 16, 16)
    assert inverse_letterbox(x, p).shape == (2, 3, 10, 30)
    lab = torch.zeros(16, 16, dtype=torch.long)
    lab[p.top : p.top + p.new_h, p.left : p.left + 8] = 7
    out = inverse_letterbox(lab, p, mode="nearest")
    assert out.dtype == torch.long and set(out.unique().tolist()) == {0, 7}
    assert (out[:, :15] == 7).all() and (out[:, 15:] == 0).all()  # 8 of 16 columns -> 15 of 30
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 16, 16\)"):
        inverse_letterbox(torch.rand(8, 8), p)
    with pytest.raises(ValueError, match="mode"):
        inverse_letterbox(x, p, mode="area")


def test_normalize_denormalize():
    x = torch.rand(2, 3, 4, 5)
    y = normalize(x)
    assert torch.allclose(y[:, 0], (x[:, 0] - CLIP_MEAN[0]) / CLIP_STD[0])
    assert torch.allclose(denormalize(y), x, atol=1e-6)
    assert torch.allclose(normalize(x[0], (0.5,) * 3, (0.25,) * 3), (x[0] - 0.5) * 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        normalize(torch.rand(4, 4, 5))
