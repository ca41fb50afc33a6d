"""Referring-segmentation metrics that accumulate across batches and DDP ranks without keeping masks.

Classic RES (RefCOCO, RefCOCO+, G-Ref):

* per-sample IoU = |P and G| / (|P or G| + 1e-6)   (official CRIS ``engine.py``; an empty prediction of an
  empty target therefore scores 0 here);
* **mIoU** = mean of per-sample IoUs — what CRIS reports as "IoU" (CRIS issue #12);
* **oIoU** (overall IoU) = sum of intersections / sum of unions over the split — what LTS, LAVT and most
  leaderboards report;
* **Pr@X** = fraction of samples whose IoU is *strictly* greater than X, X in {0.5, ..., 0.9}, where the
  cut-offs are the float32 values of ``torch.arange(0.5, 1.0, 0.1)`` (official CRIS ``engine/engine.py``):
  0.5, 0.6000000238, 0.6999999881, 0.8000000119, 0.8999999762 (:data:`PR_CUTOFFS`). The float64 IoU is
  compared with them in float64, as torch promotes there, so an IoU of 0.7 - 1e-8 counts for Pr@0.7.

Generalised RES (gRefCOCO, Liu et al. 2023; ReLA evaluator after its 2023-08 fix), counts named from the
no-target side:

=========================  ==========================  ===============  ==========================
sample                     prediction                  count            contribution
=========================  ==========================  ===============  ==========================
no target                  empty                       TP               gIoU term 1, I += 0, U += 0
no target                  non-empty                   FN               gIoU term 0, U += |P|G|
has target                 empty                       FP               gIoU term 0, U += |G|
has target                 non-empty                   TN               IoU, I += |P&G|, U += |P|G|
=========================  ==========================  ===============  ==========================

Whether a sample has a target is a property of its *ref*, not of its mask: ReLA reads it from the ref
(``ann_id == [-1]``), and so does :meth:`RefSegMetrics.update` when given ``no_target`` (the engine passes
``meta["no_target"]``, i.e. :meth:`Refer.is_no_target`). A targeted ref whose annotation decodes to an
empty mask is therefore FP (predicted empty) or TN with IoU 0, never TP. Only a caller that has masks
and no refs may leave ``no_target=None``, and then an empty target stands for "no target". For a
no-target sample the target is empty, so the FN union ``|P|G|`` is ``|P|``.

**gIoU** = mean of the per-sample terms; **cIoU** = sum I / sum U; **T-acc** = TN / (TN + FP);
**N-acc** = TP / (TP + FN). With no empty targets, cIoU = oIoU and gIoU = mIoU (up to the 1e-6).
A ratio whose denominator is zero is reported as NaN (for example N-acc on RefCOCO).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

PR_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""The labels of the Pr@X keys (``prec@0.5`` ... ``prec@0.9``)."""
PR_CUTOFFS = tuple(float(t) for t in torch.arange(0.5, 1.0, 0.1, dtype=torch.float32))
"""The values the official code compares with: float32 ``arange(0.5, 1.0, 0.1)``, one per label."""
EPS = 1e-6


def _as_bool(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x if x.dtype == bool else x > 0.5 if np.issubdtype(x.dtype, np.floating) else x != 0


def intersection_union(pred, target) -> tuple[int, int]:
    """Pixel counts ``(|P and G|, |P or G|)`` of two binary masks ``(H, W)`` of the same shape."""
    p, g = _as_bool(pred), _as_bool(target)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {g.shape}")
    return int(np.logical_and(p, g).sum()), int(np.logical_or(p, g).sum())


def iou(pred, target) -> float:
    """Per-sample IoU as the official CRIS code computes it: ``I / (U + 1e-6)``."""
    i, u = intersection_union(pred, target)
    return i / (u + EPS)


class RefSegMetrics:
    """Accumulator for mIoU, oIoU, Pr@X and the gRefCOCO metrics.

    ``update(pred, target)`` takes one sample's binary masks ``(H, W)`` (numpy or torch; at the original
    image resolution). The whole state is a short float64 vector, so :meth:`all_reduce` sums it over
    DDP ranks with one collective and :meth:`merge` adds another accumulator.
    """

    # Layout of the state vector.
    _FIELDS = (
        "n",
        "sum_iou",
        "sum_i",
        "sum_u",
        *(f"pr@{t}" for t in PR_THRESHOLDS),
        "sum_giou",
        "g_i",
        "g_u",
        "tp",
        "fn",
        "fp",
        "tn",
    )

    def __init__(self):
        self.state = torch.zeros(len(self._FIELDS), dtype=torch.float64)
        self._idx = {k: i for i, k in enumerate(self._FIELDS)}

    def _add(self, key: str, value: float) -> None:
        self.state[self._idx[key]] += value

    def update(self, pred, target, no_target: bool | None = None) -> float:
        """Add one sample: masks ``(H, W)``; returns its IoU (``I / (U + 1e-6)``).

        ``no_target``: whether the sample's ref refers to nothing (gRefCOCO ``ann_id == [-1]``; ReLA's
        rule). ``None`` decides from the target mask (empty = no target), for callers without refs.
        """
        i, u = intersection_union(pred, target)
        p_area, g_area = int(_as_bool(pred).sum()), int(_as_bool(target).sum())
        gt_empty = g_area == 0 if no_target is None else bool(no_target)
        sample_iou = i / (u + EPS)
        self._add("n", 1)
        self._add("sum_iou", sample_iou)
        self._add("sum_i", i)
        self._add("sum_u", u)
        for t, cut in zip(PR_THRESHOLDS, PR_CUTOFFS):
            self._add(f"pr@{t}", float(sample_iou > cut))
        # Generalised RES: the four cases of the table in the module docstring.
        if gt_empty and p_area == 0:
            self._add("tp", 1)
            self._add("sum_giou", 1.0)
        elif gt_empty:
            self._add("fn", 1)
            self._add("g_u", u)
        elif p_area == 0:
            self._add("fp", 1)
            self._add("g_u", g_area)
        else:
            self._add("tn", 1)
            self._add("sum_giou", i / u)
            self._add("g_i", i)
            self._add("g_u", u)
        return sample_iou

    def update_many(
        self, preds: Iterable, targets: Iterable, no_targets: Iterable | None = None
    ) -> list[float]:
        """:meth:`update` for each sample; ``no_targets`` one flag per sample (None: from the masks)."""
        preds, targets = list(preds), list(targets)
        flags = [None] * len(preds) if no_targets is None else list(no_targets)
        return [self.update(p, g, nt) for p, g, nt in zip(preds, targets, flags)]

    def merge(self, other: "RefSegMetrics") -> "RefSegMetrics":
        self.state += other.state
        return self

    def all_reduce(self, group=None) -> "RefSegMetrics":
        """Sum the state over all ranks of the default (or given) process group, in place."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            backend = dist.get_backend(group)
            device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
            buf = self.state.to(device)
            dist.all_reduce(buf, group=group)
            self.state = buf.cpu()
        return self

    def __len__(self) -> int:
        return int(self.state[self._idx["n"]])

    def compute(self) -> dict[str, float]:
        """All metrics as plain floats (fractions in [0, 1], not percentages)."""
        s = {k: float(self.state[i]) for k, i in self._idx.items()}
        n = s["n"]

        def ratio(a, b):
            return a / b if b > 0 else float("nan")

        out = {
            "n": int(n),
            "mIoU": ratio(s["sum_iou"], n),
            "oIoU": ratio(s["sum_i"], s["sum_u"]),
        }
        for t in PR_THRESHOLDS:
            out[f"prec@{t}"] = ratio(s[f"pr@{t}"], n)
        out.update(
            {
                "gIoU": ratio(s["sum_giou"], n),
                "cIoU": ratio(s["g_i"], s["g_u"]),
                "N-acc": ratio(s["tp"], s["tp"] + s["fn"]),
                "T-acc": ratio(s["tn"], s["tn"] + s["fp"]),
                "no_target_samples": int(s["tp"] + s["fn"]),
            }
        )
        return out
