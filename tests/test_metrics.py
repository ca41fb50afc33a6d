"""Metrics against hand-computed values, including every no-target case of the GRES metrics (Liu, Ding,
Jiang, CVPR 2023; the ReLA evaluator after its 2023-08 fix)."""

import math

import numpy as np
import pytest
import torch

from refseg_core.metrics import RefSegMetrics, intersection_union, iou


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def test_intersection_union_and_iou():
    p = box(4, 4, 0, 2, 0, 2)  # 4 pixels
    g = box(4, 4, 0, 2, 1, 3)  # 4 pixels, overlap 2
    assert intersection_union(p, g) == (2, 6)
    assert iou(p, g) == pytest.approx(2 / 6)
    assert iou(np.zeros((3, 3)), np.zeros((3, 3))) == 0.0  # official CRIS: 0 / (0 + eps)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        iou(np.zeros((3, 3)), np.zeros((3, 4)))


def test_miou_and_oiou_disagree_on_a_small_and_a_large_object():
    m = RefSegMetrics()
    # Small object (4 px) segmented perfectly; large object (100 px) half found.
    m.update(box(20, 20, 0, 2, 0, 2), box(20, 20, 0, 2, 0, 2))
    m.update(box(20, 20, 10, 20, 10, 15), box(20, 20, 10, 20, 10, 20))
    r = m.compute()
    assert r["mIoU"] == pytest.approx((1.0 + 0.5) / 2, abs=1e-6)
    assert r["oIoU"] == pytest.approx((4 + 50) / (4 + 100))
    # Strictly greater: IoU exactly 0.5 (up to eps, slightly below) is not a hit at 0.5.
    assert r["prec@0.5"] == pytest.approx(0.5)
    assert r["prec@0.9"] == pytest.approx(0.5)
    # Without empty targets the generalised metrics equal the classic ones.
    assert r["cIoU"] == pytest.approx(r["oIoU"])
    assert r["gIoU"] == pytest.approx(r["mIoU"], abs=1e-5)
    assert r["T-acc"] == 1.0 and math.isnan(r["N-acc"]) and r["no_target_samples"] == 0


def test_every_no_target_case():
    z = np.zeros((10, 10), dtype=bool)
    g = box(10, 10, 0, 5, 0, 4).astype(bool)  # 20 px
    p = box(10, 10, 0, 5, 0, 2).astype(bool)  # 10 px inside g
    m = RefSegMetrics()
    m.update(z, z)  # TP: no target, predicted empty -> gIoU term 1, nothing to I/U
    m.update(p, z)  # FN: no target, predicted 10 px -> gIoU 0, U += 10
    m.update(z, g)  # FP: target, predicted empty -> gIoU 0, U += 20
    m.update(p, g)  # TN: normal -> IoU 0.5, I += 10, U += 20
    r = m.compute()
    assert r["gIoU"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert r["cIoU"] == pytest.approx(10 / (10 + 20 + 20))
    assert r["N-acc"] == pytest.approx(1 / 2)
    assert r["T-acc"] == pytest.approx(1 / 2)
    assert r["no_target_samples"] == 2
    # The classic view scores the correct empty prediction as 0.
    assert r["mIoU"] == pytest.approx((0 + 0 + 0 + 0.5) / 4, abs=1e-6)
    assert r["n"] == 4


def test_merge_equals_single_accumulator_and_accepts_torch():
    rng = np.random.default_rng(0)
    preds = [rng.random((8, 9)) > 0.5 for _ in range(6)]
    gts = [rng.random((8, 9)) > 0.6 for _ in range(6)]
    whole = RefSegMetrics()
    whole.update_many(preds, gts)
    a, b = RefSegMetrics(), RefSegMetrics()
    a.update_many(preds[:3], gts[:3])
    b.update_many(
        [torch.from_numpy(x) for x in preds[3:]], [torch.from_numpy(x.astype(np.float32)) for x in gts[3:]]
    )
    merged = a.merge(b).compute()
    for k, v in whole.compute().items():
        assert merged[k] == pytest.approx(v, nan_ok=True), k


def test_empty_accumulator_is_nan_not_an_exception():
    r = RefSegMetrics().compute()
    assert r["n"] == 0 and math.isnan(r["mIoU"]) and math.isnan(r["oIoU"])


def test_pr_cutoffs_are_the_official_float32_arange_compared_with_greater_than():
    """Official CRIS: ``for thres in torch.arange(0.5, 1.0, 0.1): (iou > thres)`` with float32 thresholds.
    float32 rounds 0.7 and 0.9 *down* (0.6999999881, 0.8999999762), so an IoU of 70 / (100 + 1e-6) =
    0.699999993 (70 of 100 pixels) passes Pr@0.7 there; against a float64 0.7 it would not."""
    from refseg_core.metrics import PR_CUTOFFS, PR_THRESHOLDS

    expected = [float(np.float32(x)) for x in PR_THRESHOLDS]  # the nearest float32 of each label
    assert list(PR_CUTOFFS) == expected
    assert expected[2] < 0.7 and expected[4] < 0.9 and expected[1] > 0.6 and expected[3] > 0.8

    def score(i, u=100):
        g = np.zeros((1, u), bool)
        g[0, :] = True
        p = g.copy()
        p[0, i:] = False
        m = RefSegMetrics()
        assert m.update(p, g) == pytest.approx(i / (u + 1e-6), rel=1e-12)
        return m.compute()

    r70, r90 = score(70), score(90)
    assert 70 / (100 + 1e-6) < 0.7 and 90 / (100 + 1e-6) < 0.9
    assert r70["prec@0.7"] == 1.0 and r70["prec@0.8"] == 0.0
    assert r90["prec@0.9"] == 1.0
    # 9 of 10 pixels: 0.89999991 is below the float32 cut-off 0.8999999762; strictly greater still rules
    assert score(9, 10)["prec@0.9"] == 0.0
    # 60 of 100: 0.59999999 is below 0.6000000238 (float32 rounds 0.6 up)
    assert score(60)["prec@0.6"] == 0.0 and score(61)["prec@0.6"] == 1.0
