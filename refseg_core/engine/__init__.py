"""The engine: one import for training, evaluation and prediction (notebooks, the CLI, tests, benchmarks).

``from refseg_core import engine; engine.train(cfg)`` keeps working; each idea lives in its own module,
re-exported here:

=====================================  ==========================================================
:mod:`refseg_core.engine.prepare`             ``prepare_data``, ``build_model_for``, ``seed_everything``
:mod:`refseg_core.engine.optim`               ``build_optimizer`` (Adam, MultiStepLR, warm-up), ``end_epoch``,
                                       ``official_epoch_lrs`` (official first-epoch rule), ``lr_by_epoch``
:mod:`refseg_core.engine.step`                ``amp_dtype``, ``autocast``, ``LossModule``, ``train_step``,
                                       ``backward_step``
:mod:`refseg_core.engine.loop`            ``train`` (the loop), ``TrainResult``
:mod:`refseg_core.engine.stopping`            ``StopFlag`` (SIGINT / SIGTERM), ``TrainingInterrupted``,
                                       ``NonFiniteLossError``, ``OutOfMemory``
:mod:`refseg_core.engine.evaluation`          ``evaluate``, ``predict``, ``trivial_baselines``,
                                       ``format_comparison``, ``mask_to_rle``
:mod:`refseg_core.engine.loaders`             ``make_loader``, ``SkipSampler``, ``Shard``, ``seed_worker``
:mod:`refseg_core.engine.runlog`              ``RunLog`` (``log.csv``, TensorBoard)
:mod:`refseg_core.io`                  atomic writes (``atomic_path``, ``write_json``)
:mod:`refseg_core.engine.checkpoint`          checkpoint files, RNG state, rebuilding a model
:mod:`refseg_core.engine.selection`           ``best.pt``: the official best-epoch selection, ``pick_checkpoint``
=====================================  ==========================================================

Recipe defaults follow CRIS (Wang et al., CVPR 2022, Sec. 4.1; official CRIS.pytorch
``config/*/cris_r50.yaml``); see :class:`refseg_core.config.TrainConfig`.
"""

from __future__ import annotations

from refseg_core.engine.evaluation import evaluate, format_comparison, mask_to_rle, predict, trivial_baselines
from refseg_core.engine.loop import TrainResult, train
from refseg_core.engine.optim import build_optimizer, end_epoch, lr_by_epoch, official_epoch_lrs
from refseg_core.engine.prepare import build_model_for, prepare_data, seed_everything
from refseg_core.engine.step import LossModule, amp_dtype, autocast, backward_step, train_step
from refseg_core.engine.stopping import NonFiniteLossError, OutOfMemory, StopFlag, TrainingInterrupted

__all__ = [
    "amp_dtype",
    "autocast",
    "backward_step",
    "build_model_for",
    "build_optimizer",
    "end_epoch",
    "evaluate",
    "format_comparison",
    "LossModule",
    "lr_by_epoch",
    "mask_to_rle",
    "NonFiniteLossError",
    "official_epoch_lrs",
    "OutOfMemory",
    "predict",
    "prepare_data",
    "seed_everything",
    "StopFlag",
    "train",
    "train_step",
    "TrainingInterrupted",
    "TrainResult",
    "trivial_baselines",
]
