"""Per-sentence evaluation records, read back: what chapter 6 turns a single score into.

``engine.evaluate(..., return_records=True)`` returns one record per scored sentence: ``ref_id``,
``sent_id``, ``iou`` and the predicted mask as a COCO RLE (:func:`refseg_core.data.rle.mask_to_rle`).
Here they are joined back to their sentences (:func:`sentence_index`), grouped by the kind of expression
(:func:`by_kind`, the rule of :mod:`refseg_core.data.expression_kind`) or, on gRefCOCO, by the number of
targets (:func:`target_kind`), summarised (:func:`kind_scores`) and drawn on their images
(:func:`draw`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

import numpy as np

from refseg_core.data.expression_kind import KINDS, expression_kind
from refseg_core.data.rle import rle_to_mask
from refseg_core.viz import overlay


def sentence_index(refer, splits: Iterable[str]) -> dict:
    """``{sent_id: (ref, sentence)}`` over every sentence of ``splits``."""
    return {s["sent_id"]: (ref, s) for split in splits for ref, s in refer.sentences(split)}


def by_kind(records: Iterable[dict], index: dict) -> dict[str, list[dict]]:
    """Records grouped by the kind of their expression: ``{kind: [record, ...]}`` for every kind of
    :data:`~refseg_core.data.expression_kind.KINDS` (empty lists kept)."""
    groups: dict[str, list[dict]] = {k: [] for k in KINDS}
    for r in records:
        groups[expression_kind(index[r["sent_id"]][1]["raw"])].append(r)
    return groups


def target_kind(refer, ref: dict) -> str:
    """gRefCOCO: ``"no target"``, ``"multi"`` (several objects) or ``"single"``."""
    if refer.is_no_target(ref):
        return "no target"
    return "multi" if len(refer.ann_ids(ref)) > 1 else "single"


def by_target_kind(records: Iterable[dict], refer, index: dict) -> dict[str, list[dict]]:
    """Records grouped by :func:`target_kind` of their ref."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[target_kind(refer, index[r["sent_id"]][0])].append(r)
    return dict(groups)


def mean_iou(records: list[dict]) -> float:
    """Mean per-sentence IoU (NaN for no records)."""
    return float(np.mean([r["iou"] for r in records])) if records else float("nan")


def kind_scores(groups: dict[str, list[dict]]) -> dict[str, dict]:
    """``{kind: {"n", "mIoU", "prec@0.5"}}``: each group's count, mean IoU and fraction above 0.5."""
    out = {}
    for kind, recs in groups.items():
        ious = np.array([r["iou"] for r in recs])
        out[kind] = {
            "n": len(recs),
            "mIoU": float(ious.mean()) if len(ious) else float("nan"),
            "prec@0.5": float((ious > 0.5).mean()) if len(ious) else float("nan"),
        }
    return out


def ranked(records: Iterable[dict]) -> list[dict]:
    """Records from the lowest IoU to the highest."""
    return sorted(records, key=lambda r: r["iou"])


def first_per_image(records: Iterable[dict], index: dict, n: int, keep: Callable | None = None) -> list:
    """The first ``n`` records (optionally those with ``keep(record, ref)``) from ``n`` different images."""
    out, seen = [], set()
    for r in records:
        ref = index[r["sent_id"]][0]
        if (keep is None or keep(r, ref)) and ref["image_id"] not in seen:
            out.append(r)
            seen.add(ref["image_id"])
            if len(out) == n:
                break
    return out


def default_title(record: dict, ref: dict, sentence: dict) -> str:
    return f"IoU {record['iou']:.2f}: {sentence['raw']}"


def draw(
    axes,
    records: list[dict],
    refer,
    index: dict,
    title: Callable[[dict, dict, dict], str] = default_title,
    wrap: int = 32,
) -> None:
    """Each record on its original image: the predicted mask bright with an orange outline, the target as
    a dashed blue outline (:func:`refseg_core.viz.overlay`)."""
    for ax, r in zip(axes, records):
        ref, sentence = index[r["sent_id"]]
        overlay(
            ax,
            refer.load_image(ref),
            rle_to_mask(r["mask"]),
            contour=refer.ref_mask(ref),
            title=title(r, ref, sentence),
            wrap=wrap,
        )
