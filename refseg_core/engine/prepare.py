"""What a run needs before its first step: its data, its model, and seeded generators.

* :func:`prepare_data` — the REFER / G-REFER annotations of ``cfg.dataset`` (generated first with
  ``synthetic: true``), as a :class:`~refseg_core.data.refer.Refer`.
* :func:`build_model_for` — ``build_model(cfg.model, ...)`` with the configuration's ``word_len`` and
  ``pretrained``; LTS gets its word vocabulary from the training expressions.
* :func:`seed_everything` — Python, numpy and torch generators from one seed.

Used by :func:`refseg_core.engine.loop.train`, the CLI's ``evaluate`` and the chapters.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from refseg_core.config import TrainConfig
from refseg_core.engine import distributed as distu


def _dataset_folder_missing(cfg: TrainConfig) -> bool:
    return not (Path(cfg.data_root) / cfg.dataset).is_dir()


def prepare_data(cfg: TrainConfig, info: distu.DistInfo | None = None):
    """Load the annotations of ``cfg.dataset``; with ``synthetic: true`` generate them first if needed.

    Under DDP only rank 0 generates; the others wait. A missing real dataset is an error that says how
    to get it.
    """
    from refseg_core.data.refer import Refer

    info = info or distu.env_info()
    if cfg.synthetic:
        from refseg_core.data.synthetic import DATASET_NAME, ensure_synthetic

        if cfg.dataset not in DATASET_NAME:
            raise ValueError(
                f"parameter 'dataset' is {cfg.dataset!r}; synthetic data exists for {sorted(DATASET_NAME)}"
            )
        if info.is_main:
            ensure_synthetic(
                cfg.data_root,
                cfg.dataset,
                cfg.synthetic_seed,
                cfg.synthetic_num_images,
                cfg.synthetic_image_size,
            )
        distu.barrier()
    elif _dataset_folder_missing(cfg):
        raise FileNotFoundError(
            f"data_root {cfg.data_root!r} has no {cfg.dataset}/ folder. Get the data with either\n"
            f"  python -m refseg_core synth --out {cfg.data_root} --flavour {cfg.dataset}   (generated data; "
            "or set synthetic: true)\n"
            f"  python -m refseg_core data fetch {cfg.dataset} --root {cfg.data_root} --images val   (the real "
            "annotations, converted and verified, and the COCO images of the named splits; with your own "
            "mirror of the REFER archives: refseg_core.data.download.prepare_refer_data)"
        )
    return Refer(cfg.data_root, cfg.dataset, cfg.split_by)


def build_model_for(cfg: TrainConfig, refer=None) -> nn.Module:
    """``build_model(cfg.model, **overrides)``: ``word_len`` and ``pretrained`` from the config; a model
    registered with ``word_vocabulary=True`` (LTS) gets a vocabulary built from the training expressions
    (saved in ``model.config``)."""
    from refseg_core.models import build_model, uses_word_vocabulary
    from refseg_core.text import WordVocab

    overrides = dict(cfg.model_overrides)
    overrides.setdefault("word_len", cfg.word_len)
    if cfg.pretrained is not None:
        overrides.setdefault("pretrained", cfg.pretrained)
    if uses_word_vocabulary(cfg.model) and "vocab" not in overrides and refer is not None:
        texts = [refer.sentence_text(s) for _, s in refer.sentences(cfg.train_split)]
        overrides["vocab"] = WordVocab.from_expressions(texts, max_len=cfg.word_len)
    return build_model(cfg.model, **overrides)


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch (CPU and CUDA) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


__all__ = ["build_model_for", "prepare_data", "seed_everything"]
