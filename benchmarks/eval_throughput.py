"""Evaluation speed: sentences per second of :func:`refseg_core.engine.evaluate` (data loading, model,
the official CRIS post-processing at the original resolution, metrics) on a split of ~10k sentences.

A synthetic RefCOCO-format dataset is generated large enough that its ``train`` split holds
``num_sentences`` sentences, and that split is scored sentence by sentence (``train=False`` items: every
sentence, as a test split is). The model's weights are random: only the speed is measured.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmarks.env import environment
from refseg_core import engine
from refseg_core.data.refer import Refer
from refseg_core.data.synthetic import ensure_synthetic
from refseg_core.models import build_model

SENTENCES_PER_IMAGE = 7.0  # measured on the synthetic refcoco train split (~7.3 per train image)


def eval_row(
    model_name: str,
    data_root: str | Path,
    num_sentences: int = 10_000,
    image_size: int = 96,
    input_size: int = 128,
    batch_size: int = 32,
    workers: int = 0,
    precision: str = "auto",
    device: str | torch.device = "cpu",
    gen_workers: int = 0,
    **overrides,
) -> dict:
    """One row: ``sentences_per_s`` of a full evaluation of ``num_sentences`` sentences."""
    device = torch.device(device)
    num_images = max(8, int(num_sentences / (0.7 * SENTENCES_PER_IMAGE)) + 1)
    root = ensure_synthetic(
        data_root,
        "refcoco",
        seed=0,
        num_images=num_images,
        image_size=image_size,
        num_workers=gen_workers,
        regenerate=True,
    )  # a benchmark's scratch cache
    refer = Refer(root, "refcoco", "unc")
    available = len(refer.sentences("train"))
    if available < num_sentences:
        raise ValueError(
            f"{root}: the generated train split has {available} sentences, fewer than "
            f"num_sentences={num_sentences}; raise SENTENCES_PER_IMAGE's margin"
        )
    torch.manual_seed(0)
    model = build_model(model_name, **overrides).to(device).eval()
    row = dict(
        environment(device),
        kind="evaluation",
        model=model_name,
        input_size=input_size,
        batch=batch_size,
        workers=workers,
        precision=precision,
        image_size=image_size,
        dataset=f"synthetic refcoco ({len(refer.images)} images)",
        split="train (all sentences)",
    )
    t0 = time.perf_counter()
    metrics = engine.evaluate(
        model,
        refer,
        split="train",
        input_size=input_size,
        batch_size=batch_size,
        device=device,
        max_items=num_sentences,
        precision=precision,
        num_workers=workers,
    )
    seconds = time.perf_counter() - t0
    row.update(
        sentences=int(metrics["n"]),
        seconds=round(seconds, 3),
        sentences_per_s=round(metrics["n"] / seconds, 3),
    )
    print(
        f"  evaluate {model_name} @ {input_size}: {row['sentences']} sentences in {seconds:.1f} s = "
        f"{row['sentences_per_s']:.1f}/s  load {row['loadavg']}",
        flush=True,
    )
    return row
