"""Evaluation, single-image prediction and the baselines a model must beat.

* :func:`evaluate` — every sentence of every ref (or a DataLoader you give), the official CRIS
  post-processing (:mod:`refseg_core.engine.postprocess`: sigmoid, bicubic up-sampling, inverse letterbox,
  ``> 0.35``; official CRIS.pytorch ``engine/engine.py``, ``inference``) and
  :class:`~refseg_core.metrics.RefSegMetrics` (mIoU, oIoU, prec@X; gIoU, cIoU, N-acc, T-acc on G-REFER
  as in ReLA's evaluator).
* :func:`predict` — one PIL image and one expression -> probability map and mask at the image's size.
* :func:`input_stats` — the normalisation (and letterbox fill) a model's backbone expects.
* :func:`trivial_baselines` — what a model must beat: the whole image, and the largest object
  (:func:`refseg_core.verdicts.best_baseline` picks the stronger).

Predicted masks go to the per-sample records as COCO RLE (:mod:`refseg_core.data.rle`).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from refseg_core.data.rle import mask_to_rle
from refseg_core.engine import distributed as distu
from refseg_core.engine.loaders import Shard, make_loader
from refseg_core.engine.postprocess import logits_to_masks, logits_to_probs
from refseg_core.engine.precision import amp_dtype, autocast, unwrap
from refseg_core.metrics import RefSegMetrics

GRES_KEYS = ("gIoU", "cIoU", "N-acc", "T-acc", "no_target_samples")


def input_stats(model: nn.Module) -> dict:
    """``{"mean": ..., "std": ...}`` for :class:`~refseg_core.data.dataset.RefSegDataset`: the statistics
    the model's backbone expects (``model.input_mean`` / ``input_std``, the letterbox border being the
    mean; :class:`~refseg_core.models.base.RefSegModel`), CLIP's for a model that declares none."""
    from refseg_core.data.transforms import CLIP_MEAN, CLIP_STD

    base = unwrap(model)
    return {"mean": getattr(base, "input_mean", CLIP_MEAN), "std": getattr(base, "input_std", CLIP_STD)}


def _clean(metrics: dict, generalized: bool) -> dict:
    """Drop the gRefCOCO counts on classic data (they only repeat mIoU / oIoU there)."""
    return {k: v for k, v in metrics.items() if generalized or k not in GRES_KEYS}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataLoader | Any = None,
    *,
    data_root: str | os.PathLike | None = None,
    dataset: str = "refcoco",
    split_by: str = "unc",
    split: str = "val",
    input_size: int = 416,
    batch_size: int = 16,
    threshold: float = 0.35,
    device: str | torch.device | None = None,
    max_items: int | None = None,
    first_sentence_only: bool = False,
    precision: str = "auto",
    num_workers: int = 0,
    return_records: bool = False,
    progress: bool = False,
):
    """Score ``model`` on one split with the official CRIS post-processing (sigmoid -> bicubic to the
    input size -> inverse letterbox -> ``> threshold``) at the original image resolution.

    ``data`` is a DataLoader yielding :func:`refseg_core.data.dataset.collate` batches (eval items, with
    ``meta["orig_mask"]``), a :class:`~refseg_core.data.refer.Refer`, or None (then ``data_root``,
    ``dataset``, ``split_by`` are loaded). Every sentence of every ref is scored unless
    ``first_sentence_only``. Under DDP each rank scores a shard and the sums are all-reduced.

    Returns the metrics dict (fractions: ``mIoU``, ``oIoU``, ``prec@0.5`` ... ``prec@0.9``, ``n``; on
    G-REFER also ``gIoU``, ``cIoU``, ``N-acc``, ``T-acc``). With ``return_records=True`` returns
    ``(metrics, records)``: one dict per sample (``ref_id``, ``sent_id``, ``iou``, ``mask`` as a
    pycocotools RLE with ``counts`` as str), gathered from every rank.
    """
    from refseg_core.data.dataset import RefSegDataset
    from refseg_core.data.refer import Refer

    base = unwrap(model)
    if device is None:
        device = next(base.parameters()).device
    device = torch.device(device)
    generalized = False
    if isinstance(data, DataLoader):
        loader = data
        generalized = bool(getattr(getattr(loader.dataset, "refer", None), "generalized", False))
    else:
        refer = data if isinstance(data, Refer) else None
        if refer is None:
            if data_root is None:
                raise ValueError("evaluate: give a DataLoader, a Refer, or data_root")
            refer = Refer(data_root, dataset, split_by)
        generalized = refer.generalized
        ds = RefSegDataset(
            refer,
            split,
            base.tokenizer,
            input_size,
            train=False,
            max_items=max_items,
            first_sentence_only=first_sentence_only,
            **input_stats(base),
        )
        info = distu.env_info() if dist.is_available() and dist.is_initialized() else distu.DistInfo()
        loader = make_loader(
            ds, batch_size, Shard(len(ds), info.rank, info.world_size), num_workers, device, False
        )

    was_training = base.training
    base.eval()
    amp = amp_dtype(precision, device)
    metrics = RefSegMetrics()
    records: list[dict] = []
    t0, seen = time.time(), 0
    try:
        for bi, batch in enumerate(loader):
            images = batch["image"].to(device, non_blocking=True)
            tokens = batch["tokens"].to(device, non_blocking=True)
            with autocast(amp, device):
                logits = base(images, tokens)
            metas = batch["meta"]
            if "orig_mask" not in metas[0]:
                raise ValueError(
                    "evaluate: batches lack meta['orig_mask']; build the dataset with train=False"
                )
            preds = logits_to_masks(logits.float(), [m["letterbox"] for m in metas], threshold)
            for pred, m in zip(preds, metas):
                sample_iou = metrics.update(pred, m["orig_mask"], no_target=m["no_target"])  # from the ref
                if return_records:
                    records.append(
                        {
                            "ref_id": m["ref_id"],
                            "sent_id": m["sent_id"],
                            "iou": float(sample_iou),
                            "mask": mask_to_rle(pred),
                        }
                    )
            seen += len(metas)
            if progress and (bi + 1) % 20 == 0:
                print(f"  evaluated {seen} samples ({seen / (time.time() - t0):.1f}/s)", flush=True)
    finally:
        if was_training:
            base.train()
    metrics.all_reduce()
    out = _clean(metrics.compute(), generalized)
    if return_records:
        gathered = distu.all_gather_objects(records)
        return out, [r for rank_records in gathered for r in rank_records]
    return out


@torch.no_grad()
def predict(
    model: nn.Module,
    image,
    text: str,
    input_size: int = 416,
    threshold: float = 0.35,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment what ``text`` refers to in one PIL ``image``.

    Returns ``(prob, mask)``: ``prob`` float32 ``(H, W)`` in [0, 1] and ``mask`` bool ``(H, W)`` =
    ``prob > threshold``, at the image's original size (the same post-processing as :func:`evaluate`).
    """
    from refseg_core.data.refer import to_rgb
    from refseg_core.data.transforms import letterbox_image, normalize

    base = unwrap(model)
    if device is None:
        device = next(base.parameters()).device
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"predict: text must be a non-empty expression, got {text!r}")
    was_training = base.training
    base.eval()
    try:
        stats = input_stats(base)  # the backbone's own normalisation; the border is its mean colour
        x, params = letterbox_image(to_rgb(image), input_size, fill=stats["mean"])
        x = normalize(x, stats["mean"], stats["std"])[None].to(device)
        tokens = base.tokenizer([text]).to(device)
        logits = base(x, tokens)
        prob = logits_to_probs(logits.float(), [params])[0].numpy().astype(np.float32)
    finally:
        if was_training:
            base.train()
    return prob, prob > threshold


def trivial_baselines(
    refer, split: str = "val", max_items: int | None = None, first_sentence_only: bool = False
) -> dict[str, dict]:
    """Metrics of two language-blind predictions on every sentence of ``split`` (or each ref's first):
    ``whole_image`` (the mask covers everything) and ``largest_object`` (the largest annotated
    instance of the image — it even uses the ground-truth instance masks). A model must beat both."""
    pairs = refer.sentences(split)
    if first_sentence_only:
        pairs = [(r, r["sentences"][0]) for r in refer.split_refs(split) if r["sentences"]]
    if max_items is not None:
        pairs = pairs[:max_items]
    by_image: dict[int, list[int]] = {}
    for ann_id, ann in refer.anns.items():
        by_image.setdefault(int(ann["image_id"]), []).append(ann_id)
    whole, largest = RefSegMetrics(), RefSegMetrics()
    cache: dict[int, np.ndarray] = {}
    for ref, _ in pairs:
        target = refer.ref_mask(ref)
        iid = int(ref["image_id"])
        if iid not in cache:
            best = np.zeros_like(target)
            ids = by_image.get(iid, [])
            if ids:
                # A stand-in ref per instance, so Refer's own decoding (polygons, RLE) is reused.
                fake = [
                    {"ref_id": f"instance {a}", "image_id": iid, "ann_id": [a] if refer.generalized else a}
                    for a in ids
                ]
                best = refer.ref_mask(max(fake, key=refer.mask_area))
            cache[iid] = best
        no_target = refer.is_no_target(ref)
        whole.update(np.ones_like(target, dtype=bool), target, no_target)
        largest.update(cache[iid], target, no_target)
    return {
        "whole_image": _clean(whole.compute(), refer.generalized),
        "largest_object": _clean(largest.compute(), refer.generalized),
    }


__all__ = ["evaluate", "GRES_KEYS", "input_stats", "predict", "trivial_baselines"]
