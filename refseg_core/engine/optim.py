"""The optimiser and learning-rate schedule of a run, and the official CRIS first-epoch rule.

* :func:`build_optimizer` — ``Adam`` over ``model.param_groups(lr, backbone_lr_mult)`` (CRIS: the CLIP
  backbone at ``0.1 x lr``; CRIS paper Sec. 4.1 and official CRIS.pytorch ``config/*/cris_r50.yaml``),
  ``MultiStepLR`` stepped once per epoch, and an optional per-step linear warm-up.
* :func:`end_epoch` — what happens to the rates after each epoch (the scheduler step, and the end of
  the official first epoch when ``official_lr_quirk`` is on).
* :func:`official_epoch_lrs` — the rule itself: the rate of each group in each epoch of the official
  ``train.py`` (quirk (a)). :func:`build_optimizer` takes epoch 1's rates from it.
* :func:`lr_by_epoch` — the rates a configuration gives each group in each epoch (what chapters 4 and 5
  plot), computed by running the two functions above; :func:`lr_by_step` the same per optimiser step,
  warm-up included, in the order the training loop applies them.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import warnings

import torch
from torch import nn


def official_epoch_lrs(
    groups: list[dict], epoch: int, base_lr: float, milestones=(35,), gamma: float = 0.1
) -> list[float]:
    """The learning rate of each param group during 1-based ``epoch`` in the official CRIS.pytorch
    ``train.py`` (quirk (a)).

    Its param groups carry only ``initial_lr``, so ``Adam(param_list, lr=base_lr)`` gives *every* group
    ``lr = base_lr``; ``MultiStepLR``'s construction step keeps the current rates, so epoch 1 runs the
    backbone at ``base_lr`` (1e-4, not 1e-5). After epoch ``e`` the script calls ``scheduler.step(e)``,
    whose closed form sets ``initial_lr * gamma ** bisect_right(milestones, e)``: from epoch 2 the
    backbone runs at ``0.1 * base_lr``, and after epoch 35 every group is decayed x0.1.

    ``groups`` are those of ``model.param_groups`` (each group's ``initial_lr``, else its ``lr``, is the
    rate it is meant to have).
    """
    if epoch < 1:
        raise ValueError(f"epoch is 1-based, got {epoch}")
    if epoch == 1:
        return [float(base_lr) for _ in groups]
    k = bisect.bisect_right(sorted(milestones), epoch - 1)
    return [g.get("initial_lr", g["lr"]) * gamma**k for g in groups]


def build_optimizer(cfg, model: nn.Module):
    """``(optimizer, scheduler, warmup)`` for a :class:`~refseg_core.config.TrainConfig` and a RefSeg model.

    * ``optimizer``: ``Adam(model.param_groups(cfg.lr, cfg.backbone_lr_mult), lr=cfg.lr,
      weight_decay=cfg.weight_decay)``.
    * ``scheduler``: ``MultiStepLR(milestones=cfg.milestones, gamma=cfg.lr_gamma)``, stepped once per
      epoch by :func:`end_epoch`.
    * ``warmup``: ``LinearLR`` from ``lr / 100`` to ``lr`` over ``cfg.warmup_steps`` optimiser steps
      (stepped after each of those steps), or None.

    With ``cfg.official_lr_quirk`` every group starts at the rate :func:`official_epoch_lrs` gives epoch 1
    (``cfg.lr``); a group moved that way remembers its own rate in ``lr_after_epoch1``, which
    :func:`end_epoch` restores after the first epoch.
    """
    groups = model.param_groups(cfg.lr, cfg.backbone_lr_mult)
    if cfg.official_lr_quirk:
        first = official_epoch_lrs(groups, 1, cfg.lr, cfg.milestones, cfg.lr_gamma)
        for g, lr in zip(groups, first):
            if not math.isclose(g["lr"], lr):
                g["lr_after_epoch1"], g["lr"] = g["lr"], lr
    optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.lr_gamma)
    warmup = None
    if cfg.warmup_steps > 0:
        warmup = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=0.01, end_factor=1.0, total_iters=cfg.warmup_steps
        )
    return optimizer, scheduler, warmup


def step_schedule(scheduler) -> None:
    """One ``scheduler.step()``, without PyTorch's "``lr_scheduler.step()`` before ``optimizer.step()``"
    warning: an fp16 GradScaler skips the optimiser step of an overflowing batch (often the first), and
    the schedule still advances by one, as intended (the official loop does the same)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        scheduler.step()


def end_epoch(optimizer, scheduler, epoch: int, base_lr: float) -> None:
    """After 0-based ``epoch``: one ``scheduler`` step; after the first epoch, the groups that
    :func:`build_optimizer` ran at ``base_lr`` (official quirk (a)) move to their own rate."""
    step_schedule(scheduler)
    if epoch == 0:
        for g in optimizer.param_groups:
            if "lr_after_epoch1" in g:
                g["lr"] = g["lr"] * g["lr_after_epoch1"] / base_lr


def lr_by_epoch(cfg, model: nn.Module, epochs: int | None = None) -> list[list[float]]:
    """Row ``e`` = the rate of each of ``model.param_groups`` during epoch ``e + 1`` of a run with ``cfg``
    (warm-up aside), for ``epochs`` (default ``cfg.epochs``) epochs: :func:`build_optimizer` and
    :func:`end_epoch` run without a training step. The model is not changed."""
    optimizer, scheduler, _ = build_optimizer(dataclasses.replace(cfg, warmup_steps=0), model)
    rows = []
    for epoch in range(cfg.epochs if epochs is None else epochs):
        rows.append([g["lr"] for g in optimizer.param_groups])
        end_epoch(optimizer, scheduler, epoch, cfg.lr)
    return rows


def lr_by_step(cfg, model: nn.Module, steps_per_epoch: int, epochs: int | None = None) -> list[list[float]]:
    """Row ``s`` = the rate of each of ``model.param_groups`` during optimiser step ``s + 1`` of a run with
    ``cfg`` and ``steps_per_epoch`` steps an epoch, warm-up included: :func:`build_optimizer`, then after
    each step the warm-up step (the first ``cfg.warmup_steps`` steps) and after each epoch
    :func:`end_epoch`, the order of :mod:`refseg_core.engine.loop`. No training step is taken; the model
    is not changed. ``len(rows) == steps_per_epoch * epochs`` (default ``cfg.epochs``)."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
    optimizer, scheduler, warmup = build_optimizer(cfg, model)
    rows, step = [], 0
    for epoch in range(cfg.epochs if epochs is None else epochs):
        for _ in range(steps_per_epoch):
            rows.append([g["lr"] for g in optimizer.param_groups])
            if warmup is not None and step < cfg.warmup_steps:
                step_schedule(warmup)
            step += 1
        end_epoch(optimizer, scheduler, epoch, cfg.lr)
    return rows


__all__ = ["build_optimizer", "end_epoch", "lr_by_epoch", "lr_by_step", "official_epoch_lrs", "step_schedule"]
