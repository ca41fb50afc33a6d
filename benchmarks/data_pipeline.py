"""Data pipeline speed: samples per second of :class:`~refseg_core.data.dataset.RefSegDataset` through
the engine's own DataLoader (:func:`refseg_core.engine.loaders.make_loader`: collate, pinned memory on CUDA) at a
given input size and number of workers.

Each item decodes a JPEG, letterboxes it to ``input_size``, decodes the target mask (pycocotools) and
letterboxes it, and tokenises one sentence. The synthetic images are generated at ``image_size`` ~ 480
to resemble COCO's (about 640 x 480). Samples are drawn with replacement so that a small dataset can feed
a long measurement. The first batch (worker start-up) is timed separately from the steady state.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import RandomSampler

from benchmarks.env import environment
from refseg_core.data.dataset import RefSegDataset
from refseg_core.data.refer import Refer
from refseg_core.data.synthetic import ensure_synthetic
from refseg_core.engine.loaders import make_loader
from refseg_core.text import ClipTokenizer


def loader_throughput(
    refer: Refer,
    workers: int,
    batch_size: int = 16,
    input_size: int = 416,
    num_batches: int = 20,
    split: str = "train",
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict:
    """One row: ``samples_per_s`` over ``num_batches`` batches after the first, ``first_batch_s``."""
    if workers < 0 or num_batches < 1:
        raise ValueError(f"workers must be >= 0 and num_batches >= 1, got {workers}, {num_batches}")
    device = torch.device(device)
    ds = RefSegDataset(refer, split, ClipTokenizer(17), input_size, train=True, seed=seed)
    n = batch_size * (num_batches + 1)
    sampler = RandomSampler(
        ds, replacement=True, num_samples=n, generator=torch.Generator().manual_seed(seed)
    )
    loader = make_loader(ds, batch_size, sampler, workers, device, drop_last=True)
    row = dict(
        environment(device),
        kind="data_loader",
        input_size=input_size,
        batch=batch_size,
        workers=workers,
        dataset=f"synthetic {refer.dataset} ({len(refer.images)} images)",
        split=split,
    )
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)
    t1 = time.perf_counter()
    seen = 0
    for b in it:
        seen += b["image"].shape[0]
    t2 = time.perf_counter()
    row.update(
        first_batch_s=round(t1 - t0, 4),
        samples=seen,
        seconds=round(t2 - t1, 4),
        samples_per_s=round(seen / (t2 - t1), 3),
        image_shape=list(first["image"].shape[1:]),
    )
    print(
        f"  data loader workers={workers} batch={batch_size} @ {input_size}: "
        f"{row['samples_per_s']:.1f} samples/s"
        f" (first batch {row['first_batch_s']:.2f} s)  load {row['loadavg']}",
        flush=True,
    )
    return row


def data_rows(
    data_root: str | Path,
    workers_list=(0, 1, 2),
    image_size: int = 480,
    num_images: int = 60,
    batch_size: int = 16,
    input_size: int = 416,
    num_batches: int = 10,
    device: str | torch.device = "cpu",
    gen_workers: int = 0,
) -> list[dict]:
    """Generate (once; cached by its manifest) a synthetic RefCOCO-format dataset of ``num_images`` images
    of side ~``image_size`` under ``data_root``, and measure the loader with each worker count."""
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
    return [
        dict(
            loader_throughput(refer, w, batch_size, input_size, num_batches, device=device),
            image_size=image_size,
        )
        for w in workers_list
    ]
