"""The engine: training, evaluation and prediction, the same for notebooks, the CLI, tests and benchmarks.

``from refseg_core import engine; engine.train(cfg)``. Each idea lives in its own module here:

================  ====================================================================================
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
