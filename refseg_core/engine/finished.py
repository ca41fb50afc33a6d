"""A finished run read back from its folder, as :func:`refseg_core.engine.train` returned it.

``train`` leaves ``last.pt`` (weights, the logged ``history``, the configuration) and ``metrics.json`` (the
final validation metrics, on synthetic data the language-blind baselines, with ``select_best`` the
``best`` record, and ``meta`` with the measured ``train_time_s``). :func:`read_run` turns them back into a
:class:`~refseg_core.engine.loop.TrainResult`, so that a chapter can show a run another chapter of the
same build trained without training it twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from refseg_core.config import TrainConfig, make_config
from refseg_core.engine.checkpoint import load_checkpoint, model_from_checkpoint
from refseg_core.engine.loop import TrainResult

NOT_METRICS = ("baselines", "best", "meta")  # the keys of metrics.json that are not validation metrics


def read_run(output_dir: str | os.PathLike, config: TrainConfig | None = None) -> TrainResult:
    """The result of the finished run in ``output_dir`` (its ``last.pt`` and ``metrics.json``).

    ``config`` defaults to the configuration saved in the checkpoint. The model is rebuilt from
    ``last.pt`` in eval mode on the CPU; ``train_time_s`` is the time the run measured when it trained.
    """
    out = Path(output_dir)
    ckpt_path, metrics_path = out / "last.pt", out / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{out} holds no metrics.json: the run there did not finish")
    try:
        saved = json.loads(metrics_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{metrics_path} is not valid JSON ({e})") from None
    ckpt = load_checkpoint(ckpt_path)
    meta = saved.get("meta", {})
    return TrainResult(
        model=model_from_checkpoint(ckpt, source=ckpt_path),
        history=list(ckpt.get("history", [])),
        metrics={k: v for k, v in saved.items() if k not in NOT_METRICS},
        output_dir=out,
        checkpoint=ckpt_path,
        config=config if config is not None else make_config(ckpt["config"]),
        stopped_early=bool(meta.get("stopped_early", False)),
        train_time_s=float(meta.get("train_time_s", 0.0)),
        extra={"baselines": saved["baselines"]} if "baselines" in saved else {},
        best=saved.get("best"),
    )


__all__ = ["read_run"]
