"""The engine: training, evaluation and prediction, the same for notebooks, the CLI, tests and benchmarks.

``from refseg_core import engine; engine.train(cfg)``. Each idea lives in its own module here:

================  ===========================================================================================
``loop``          ``train`` — the training loop (validation, checkpoints, resume), ``TrainResult``
``step``          one training step: ``LossModule``, ``train_step``, ``backward_step``
``precision``     ``amp_dtype``, ``autocast``, ``unwrap`` (shared by training and evaluation)
``optim``         ``build_optimizer`` (Adam, MultiStepLR, warm-up), ``end_epoch``, ``official_epoch_lrs``
                  (the official first-epoch rule), ``lr_by_epoch``
``prepare``       ``prepare_data`` (real or generated), ``build_model_for``, ``seed_everything``
``loaders``       ``make_loader``, ``SkipSampler``, ``Shard``, ``seed_worker``
``checkpoint``    checkpoint files (atomic, ``weights_only``), RNG state, rebuilding a model
``run_dir``       run folders: claiming, resuming (``resume_config``), overwriting only when asked
``runlog``        ``RunLog`` (``log.csv``, TensorBoard)
``stopping``      ``StopFlag`` (SIGINT / SIGTERM), ``TrainingInterrupted``, ``NonFiniteLossError``,
                  ``OutOfMemory``
``distributed``   torchrun environment, device choice, process group
``evaluation``    ``evaluate`` (the official protocol), ``predict`` (one image), ``trivial_baselines``
``postprocess``   the official CRIS post-processing: sigmoid, bicubic up-sampling, inverse letterbox, 0.35
``results``       eval files (one writer) and the table of results next to the papers' numbers
================  ===========================================================================================

The engine imports the library (``refseg_core.data``, ``models``, ``config``, ``metrics``, ...), never
the command line (:mod:`refseg_core.cli`). Recipe defaults follow CRIS (Wang et al., CVPR 2022, Sec. 4.1;
official CRIS.pytorch ``config/*/cris_r50.yaml``); see :class:`refseg_core.config.TrainConfig`.
"""

from __future__ import annotations

from refseg_core.engine.evaluation import evaluate, predict, trivial_baselines
from refseg_core.engine.loop import TrainResult, train
from refseg_core.engine.optim import build_optimizer, end_epoch, lr_by_epoch, official_epoch_lrs
from refseg_core.engine.precision import amp_dtype, autocast, unwrap
from refseg_core.engine.prepare import build_model_for, prepare_data, seed_everything
from refseg_core.engine.results import eval_meta, find_results, write_eval
from refseg_core.engine.step import LossModule, backward_step, train_step
from refseg_core.engine.stopping import NonFiniteLossError, OutOfMemory, StopFlag, TrainingInterrupted

__all__ = [
    "amp_dtype",
    "autocast",
    "backward_step",
    "build_model_for",
    "build_optimizer",
    "end_epoch",
    "eval_meta",
    "evaluate",
    "find_results",
    "LossModule",
    "lr_by_epoch",
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
    "unwrap",
    "write_eval",
]
