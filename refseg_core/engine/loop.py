"""The training loop: :func:`train`, the one code path of the notebooks, the CLI and ``torchrun``.

A run (:class:`_Run`) is built in the order that makes it resume exactly: seed, data
(:func:`refseg_core.engine.prepare.prepare_data`), model (fresh, or rebuilt from a checkpoint), datasets and
samplers, optimiser and schedule (:func:`refseg_core.engine.optim.build_optimizer`), the checkpoint's state
restored last. Each step is :func:`refseg_core.engine.step.train_step` + :func:`refseg_core.engine.step.backward_step`;
after each epoch the schedule steps (:func:`refseg_core.engine.optim.end_epoch`), the model is validated
(:func:`refseg_core.engine.evaluation.evaluate`) and ``last.pt`` is written atomically (with ``select_best``,
also ``best.pt`` when the epoch's validation mIoU is the best so far: :mod:`refseg_core.engine.selection`). SIGINT / SIGTERM
(:class:`StopFlag`) and ``time_limit_s`` stop the loop after a step, all ranks together.

The checkpoint's keys are described in :mod:`refseg_core.engine.checkpoint`. This file is over 350
lines: :class:`_Run` is one object whose set-up order is what exact resumption depends on, so it is
kept in one place to be read top to bottom.
"""

from __future__ import annotations

import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from refseg_core.config import TrainConfig, make_config, save_config
from refseg_core.engine import distributed as distu
from refseg_core.engine.checkpoint import (
    atomic_torch_save,
    load_checkpoint,
    model_from_checkpoint,
    rebuild_kwargs,
    rng_state,
    set_rng_state,
)
from refseg_core.engine.evaluation import evaluate, input_stats, trivial_baselines
from refseg_core.engine.loaders import Shard, SkipSampler, make_loader
from refseg_core.engine.optim import build_optimizer, end_epoch, step_schedule
from refseg_core.engine.precision import amp_dtype, unwrap
from refseg_core.engine.prepare import build_model_for, prepare_data, seed_everything
from refseg_core.engine.results import data_is_synthetic
from refseg_core.engine.runlog import RunLog, say
from refseg_core.engine.selection import BEST_NAME, BestSelector
from refseg_core.engine.step import LossModule, backward_step, set_train_mode, train_step
from refseg_core.engine.stopping import NonFiniteLossError, OutOfMemory, StopFlag, TrainingInterrupted
from refseg_core.io import write_json
from refseg_core.tables import metrics_table


@dataclass
class TrainResult:
    """What :func:`train` returns. ``history`` rows: ``epoch``, ``step``, ``loss``, ``lr``,
    ``images_per_s`` and, at epoch ends, ``val_<metric>``."""

    model: nn.Module
    history: list[dict]
    metrics: dict
    output_dir: Path
    checkpoint: Path | None
    config: TrainConfig
    stopped_early: bool = False
    train_time_s: float = 0.0
    extra: dict = field(default_factory=dict)
    best: dict | None = None  # select_best: {"epoch", "mIoU", "split", "checkpoint"} of best.pt


def train(
    config: TrainConfig | Mapping[str, Any] | None,
    progress: bool = True,
    resume: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
) -> TrainResult:
    """Train ``config.model`` on ``config.dataset`` and evaluate it on ``config.val_split``.

    ``config`` is a :class:`TrainConfig` or a dict of its fields (a notebook's parameters). ``resume``
    is a checkpoint written by an earlier run (``output_dir/last.pt``): training continues exactly where
    it stopped (same weights, optimiser, schedule, RNG and data order). ``config.init_from`` instead
    takes only the model (and its vocabulary) from a checkpoint and starts a new run (fine-tuning).
    Returns a :class:`TrainResult`; ``output_dir`` receives ``config.yaml``, ``last.pt``, ``log.csv``,
    ``tb/`` and ``metrics.json`` (and ``best.pt`` with ``select_best``; ``metrics.json["best"]`` names its epoch).

    Raises :class:`NonFiniteLossError` on a NaN/inf loss (the last good checkpoint is kept),
    :class:`OutOfMemory` on CUDA OOM, :class:`TrainingInterrupted` after SIGINT/SIGTERM (checkpoint
    written first).

    Nothing is written before the checks pass (:mod:`refseg_core.engine.run_dir`): an ``output_dir`` that
    already holds a run is refused unless ``resume`` is that run's checkpoint or ``overwrite=True``
    (which removes the old run's files); on resume, ``config=None`` means the checkpoint's own
    configuration (in the checkpoint's folder, plus ``overrides``, ``key=value`` strings), and a config may differ from it only in :data:`refseg_core.engine.run_dir.RESUME_SAFE`.
    A lock in ``output_dir`` keeps a second run out while this one writes.
    """
    from refseg_core.engine import run_dir

    ckpt = load_checkpoint(resume) if resume is not None else None
    if ckpt is not None and "optimizer" not in ckpt:
        raise ValueError(
            f"--resume {resume} holds only model weights (a {BEST_NAME}), not a point to continue from; "
            f"resume the run's last.pt, or start a new run from these weights with init_from"
        )
    if config is None:
        if ckpt is None:
            raise ValueError("train: give a configuration (or resume a checkpoint that holds one)")
        cfg = run_dir.resume_config(ckpt, resume, overrides)  # its own run, in the checkpoint's folder
    else:
        cfg = config if isinstance(config, TrainConfig) else make_config(config)
    if ckpt is not None:
        run_dir.check_resume(ckpt, cfg, resume)
    with run_dir.claim(cfg.output_dir, resume=resume, overwrite=overwrite, enabled=distu.env_info().is_main):
        return _Run(cfg, progress, resume, ckpt).fit()


class _Run:
    """One training run, set up by ``__init__`` (nothing is written before the checks pass) and run by
    :meth:`fit`. ``resume``/``ckpt``: the checkpoint to continue (or None)."""

    def __init__(self, cfg: TrainConfig, progress: bool, resume, ckpt: dict | None):
        self.cfg, self.resume, self.ckpt = cfg, resume, ckpt
        info = distu.env_info()
        self.device = device = distu.resolve_device(cfg.device, info)
        self.info = info = distu.setup(device)
        self.main = info.is_main
        self.talk = progress and self.main
        self.out_dir = Path(cfg.output_dir)
        if cfg.batch_size % info.world_size:
            raise ValueError(
                f"parameter 'batch_size' ({cfg.batch_size}) must be a multiple of the number of "
                f"processes ({info.world_size}): it is the global batch"
            )
        self.per_rank = cfg.batch_size // info.world_size

        seed_everything(cfg.seed)
        self.refer = prepare_data(cfg, info)
        self.model = self._build_model()
        # the state dict carries the weights; rebuilding the model needs no weight file (record_config)
        self.model_config = dict(self.model.config)
        self._place_model()
        self._build_data()
        self.optimizer, self.scheduler, self.warmup = build_optimizer(cfg, self.model)
        self.amp = amp_dtype(cfg.precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp is torch.float16)

        self.history: list[dict] = []
        self.start_epoch, self.global_step, self.skip_steps = 0, 0, 0
        self.partial_loss = None
        self.epoch_loss, self.epoch_n = 0.0, 0
        self.best = BestSelector(cfg.val_split, ckpt.get("best") if ckpt is not None else None)
        if ckpt is not None:
            self._restore(ckpt)

        self.loss_module = LossModule(self.model, cfg.dice_weight)
        self.check_unused = info.enabled  # after the first backward (distu.unused_parameters)
        if info.enabled:
            self.loss_module = distu.wrap(self.loss_module, device)
        if cfg.compile:
            self.loss_module = torch.compile(self.loss_module)
        if self.main:  # first write into output_dir: everything above has been checked
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
        self.log = RunLog(self.out_dir, self.main, cfg.tensorboard, self.history)
        self.ckpt_path = self.out_dir / "last.pt"
        self.saved: Path | None = Path(resume) if resume is not None else None
        self.metrics: dict = {}
        self.stopped_early = False

    # ---------------------------------------------------------------------------------------- set-up
    def _build_model(self) -> nn.Module:
        """Fresh (:func:`~refseg_core.engine.prepare.build_model_for`), or rebuilt from the resumed or
        ``init_from`` checkpoint's own ``model_config`` (same vocabulary and shapes)."""
        cfg, init = self.cfg, None
        if self.ckpt is None and cfg.init_from is not None:
            if not Path(cfg.init_from).is_file():
                raise FileNotFoundError(f"parameter 'init_from': checkpoint {cfg.init_from} does not exist")
            init = load_checkpoint(cfg.init_from)
            name, _ = rebuild_kwargs(init.get("model_config"))
            if name != cfg.model:
                raise ValueError(
                    f"parameter 'init_from': {cfg.init_from} holds a {name} model, but 'model' "
                    f"is {cfg.model!r}"
                )
        if self.ckpt is not None:
            return model_from_checkpoint(self.ckpt, source=self.resume)
        if init is not None:
            model = model_from_checkpoint(init, source=cfg.init_from)
            say(self.talk, f"weights initialised from {cfg.init_from} (fresh optimiser and schedule)")
            return model
        return build_model_for(cfg, self.refer)

    def _place_model(self) -> None:
        cfg, info = self.cfg, self.info
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and info.enabled:
            if self.device.type != "cuda":
                warnings.warn("sync_bn needs CUDA; BatchNorm stays per-process on CPU", stacklevel=3)
            else:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)

    def _build_data(self) -> None:
        from refseg_core.data.dataset import RefSegDataset

        cfg, info = self.cfg, self.info
        tok = self.model.tokenizer
        stats = input_stats(self.model)  # the backbone's own normalisation and letterbox fill
        self.train_ds = RefSegDataset(
            self.refer,
            cfg.train_split,
            tok,
            cfg.input_size,
            train=True,
            seed=cfg.seed,
            max_items=cfg.max_train_items,
            **stats,
        )
        val_ds = RefSegDataset(
            self.refer,
            cfg.val_split,
            tok,
            cfg.input_size,
            train=False,
            max_items=cfg.max_eval_items,
            first_sentence_only=cfg.val_first_sentence_only,
            **stats,
        )
        self.sampler = DistributedSampler(
            self.train_ds,
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=True,
        )
        self.steps_per_epoch = len(self.sampler) // self.per_rank
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"split {cfg.train_split!r} has {len(self.train_ds)} training refs, fewer than "
                f"one batch (batch_size {cfg.batch_size}); lower batch_size or add data"
            )
        self.val_loader = make_loader(
            val_ds,
            cfg.eval_batch_size or self.per_rank,
            Shard(len(val_ds), info.rank, info.world_size),
            cfg.num_workers,
            self.device,
            False,
        )

    def _restore(self, ckpt: dict) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.warmup is not None and ckpt.get("warmup") is not None:
            self.warmup.load_state_dict(ckpt["warmup"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch, self.global_step = int(ckpt["epoch"]), int(ckpt["step"])
        self.skip_steps = int(ckpt.get("epoch_step", 0))
        # the loss sum of the interrupted epoch's first steps, so its logged mean covers the whole epoch
        self.partial_loss = ckpt.get("epoch_loss") if self.skip_steps else None
        self.history = list(ckpt.get("history", []))
        set_rng_state(ckpt["rng"])
        into = f", {self.skip_steps} steps into epoch {self.start_epoch + 1}" if self.skip_steps else ""
        say(
            self.talk,
            f"resumed from {self.resume}: epoch {self.start_epoch} done, step {self.global_step}{into}",
        )

    # ------------------------------------------------------------------------------------- the loop
    def fit(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        self.t_start = time.time()
        n_params = sum(p.numel() for p in self.model.parameters()) / 1e6
        say(
            self.talk,
            f"training {cfg.model} on {cfg.dataset} ({len(self.train_ds)} refs, "
            f"{self.steps_per_epoch} steps/epoch, batch {cfg.batch_size} = {info.world_size} x "
            f"{self.per_rank}) on {self.device}, {n_params:.2f}M parameters",
        )
        if getattr(self.train_ds, "empty_sentences", 0):
            say(
                self.talk,
                f"{self.train_ds.empty_sentences} empty sentences in the training refs, tokenised "
                "as [SOT, EOT]",
            )
        try:
            with StopFlag() as stop:
                for epoch in range(self.start_epoch, cfg.epochs):
                    halt = self._epoch(epoch, stop)
                    if halt == "signal":
                        path = self.save(epoch, self.epoch_step)
                        name = signal.Signals(stop.signum).name
                        raise TrainingInterrupted(
                            f"{name} received at step {self.global_step}: checkpoint "
                            f"saved to {path}; continue with --resume {path}",
                            stop.signum,
                            path,
                        )
                    if halt == "time":
                        self._stop_for_time(epoch)
                        break
                    self._end_epoch(epoch)
        finally:
            self.log.close()
        return self._finish()

    def _epoch(self, epoch: int, stop: StopFlag) -> str | None:
        """Train one epoch (from ``skip_steps`` when resuming inside it). Returns None when it ran to its
        end, ``"signal"`` or ``"time"`` when a stop vote ended it after a step."""
        cfg, per_rank = self.cfg, self.per_rank
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        skip = self.skip_steps if epoch == self.start_epoch else 0
        sampler = SkipSampler(self.sampler, skip * per_rank) if skip else self.sampler
        loader = make_loader(self.train_ds, per_rank, sampler, cfg.num_workers, self.device, True)
        set_train_mode(self.model, cfg.bn_eval)
        self.win_loss, self.win_n, self.win_t, self.epoch_loss, self.epoch_n = 0.0, 0, time.time(), 0.0, 0
        if skip and self.partial_loss is not None:
            self.epoch_loss, self.epoch_n = float(self.partial_loss[0]), int(self.partial_loss[1])
        self.epoch_step = skip
        for batch in loader:
            loss_value, want_stop = self._step(batch, epoch, stop)
            self._log_step(epoch, loss_value, len(batch["meta"]) * self.info.world_size)
            if want_stop:
                return "signal" if stop.signum is not None else "time"
        return None

    def _step(self, batch: dict, epoch: int, stop: StopFlag) -> tuple[float, bool]:
        """One optimiser step. Returns the loss averaged over ranks and the ranks' stop vote (any rank
        that saw a signal or the time limit stops them all)."""
        cfg, info, device = self.cfg, self.info, self.device
        try:
            try:
                out = train_step(self.loss_module, batch, device, self.amp, channels_last=cfg.channels_last)
            except RuntimeError as exc:  # a parameter went unused in the previous step (after the check)
                if not distu.is_unfinished_reduction(exc):
                    raise
                names = distu.unused_parameters(self.model)
                raise distu.UnusedParametersError(
                    distu.unused_message(names, f"in step {self.global_step}")
                ) from None
            # One collective for the global loss and the stop vote (signal / time limit).
            want_stop = stop.signum is not None or (
                cfg.time_limit_s is not None and time.time() - self.t_start > cfg.time_limit_s
            )
            vec = torch.tensor(
                [float(out["loss"].detach()), float(want_stop)], device=device, dtype=torch.float64
            )
            if info.enabled:
                dist.all_reduce(vec)
                vec[0] /= info.world_size
            loss_value = float(vec[0])
            if not math.isfinite(loss_value):
                ids = [m["ref_id"] for m in batch["meta"]]
                raise NonFiniteLossError(
                    f"loss is {loss_value} at step {self.global_step + 1} (epoch {epoch + 1}, batch "
                    f"{self.epoch_step + 1} of {self.steps_per_epoch}; ref ids {ids[:8]}); the weights of "
                    f"this step were not updated; last good checkpoint: {self.saved or 'none yet'}"
                )
            backward_step(out, self.loss_module, self.optimizer, self.scaler, cfg)
            if self.check_unused:
                self.check_unused = False
                names = distu.unused_parameters(self.model)
                if names:
                    raise distu.UnusedParametersError(
                        distu.unused_message(names, f"in the first step of {cfg.model}")
                    )
        except torch.cuda.OutOfMemoryError as exc:
            raise OutOfMemory(
                f"CUDA out of memory at step {self.global_step + 1} with batch_size {cfg.batch_size} "
                f"({self.per_rank} per process, input_size {cfg.input_size}, precision {cfg.precision}); "
                "lower batch_size or input_size, use precision: bf16, or add GPUs"
            ) from exc
        if self.warmup is not None and self.global_step < cfg.warmup_steps:
            step_schedule(self.warmup)
        self.global_step += 1
        self.epoch_step += 1
        return loss_value, bool(vec[1] > 0)

    def _log_step(self, epoch: int, loss_value: float, n: int) -> None:
        """Add the step's loss to the window and epoch sums; every ``log_every`` steps, log a row."""
        cfg = self.cfg
        self.win_loss, self.win_n = self.win_loss + loss_value, self.win_n + 1
        self.epoch_loss, self.epoch_n = self.epoch_loss + loss_value, self.epoch_n + 1
        if self.global_step % cfg.log_every == 0:
            dt = time.time() - self.win_t
            row = {
                "epoch": epoch + 1,
                "step": self.global_step,
                "loss": self.win_loss / self.win_n,
                "lr": self.optimizer.param_groups[-1]["lr"],
                "images_per_s": self.win_n * n / max(dt, 1e-9),
            }
            self.log.add(row)
            say(
                self.talk,
                f"epoch {epoch + 1}/{cfg.epochs} step {self.global_step} loss {row['loss']:.4f} "
                f"lr {row['lr']:.2e} {row['images_per_s']:.1f} img/s",
            )
            self.win_loss, self.win_n, self.win_t = 0.0, 0, time.time()

    def _stop_for_time(self, epoch: int) -> None:
        self.stopped_early = True
        say(self.talk, f"time limit of {self.cfg.time_limit_s} s reached at step {self.global_step}")
        self.metrics = self.run_eval()
        self.log.add(
            {
                "epoch": epoch + 1,
                "step": self.global_step,
                **{f"val_{k}": v for k, v in self.metrics.items() if k != "n"},
            }
        )
        self.save(epoch, self.epoch_step)

    def _end_epoch(self, epoch: int) -> None:
        """Schedule step, validation (every ``eval_every`` epochs and the last), log row, checkpoint."""
        cfg = self.cfg
        end_epoch(self.optimizer, self.scheduler, epoch, cfg.lr)
        last = epoch + 1 == cfg.epochs
        row = {
            "epoch": epoch + 1,
            "step": self.global_step,
            "loss": self.epoch_loss / max(self.epoch_n, 1),
            "lr": self.optimizer.param_groups[-1]["lr"],
        }
        if (epoch + 1) % cfg.eval_every == 0 or last:
            t_eval = time.time()
            m = self.metrics = self.run_eval()
            row.update({f"val_{k}": v for k, v in m.items() if k != "n"})
            say(
                self.talk,
                f"epoch {epoch + 1}/{cfg.epochs} train loss {row['loss']:.4f} | val "
                f"mIoU {100 * m['mIoU']:.2f} oIoU {100 * m['oIoU']:.2f} prec@0.5 "
                f"{100 * m['prec@0.5']:.2f} (n={m['n']}, {time.time() - t_eval:.1f} s) | "
                f"{time.time() - self.t_start:.0f} s elapsed",
            )
        self.log.add(row)
        is_best = "val_mIoU" in row and cfg.select_best and self.best.offer(epoch + 1, self.metrics)
        if (epoch + 1) % cfg.checkpoint_every == 0 or last:
            self.save(epoch + 1, 0)
        if is_best:
            self.save_best()

    # ------------------------------------------------------------------------- checkpoint and results
    def save(self, epoch_done: int, epoch_step: int) -> Path:
        """Write ``last.pt`` (main rank) after ``epoch_done`` epochs and ``epoch_step`` steps of the next."""
        if self.main:
            warmup = self.warmup
            state = {
                "model": unwrap(self.model).state_dict(),
                "model_config": self.model_config,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "warmup": warmup.state_dict() if warmup is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "rng": rng_state(),
                "epoch": epoch_done,
                "step": self.global_step,
                "epoch_step": epoch_step,
                "epoch_loss": [self.epoch_loss, self.epoch_n] if epoch_step else None,
                "history": list(self.history),
                "config": self.cfg.to_dict(),
                "best": self.best.record,
            }
            atomic_torch_save(state, self.ckpt_path)
            self.saved = self.ckpt_path
        distu.barrier()
        return self.ckpt_path

    def save_best(self) -> None:
        """Write ``best.pt`` (main rank): the weights of the epoch just validated, the run's best so far
        (:mod:`refseg_core.engine.selection`)."""
        if self.main:
            model = unwrap(self.model)
            state = self.best.checkpoint(
                model.state_dict(), self.model_config, self.cfg.to_dict(), self.global_step, self.metrics
            )
            atomic_torch_save(state, self.out_dir / BEST_NAME)
            rec = self.best.record
            say(
                self.talk,
                f"epoch {rec['epoch']}: the best {rec['split']} mIoU so far ({100 * rec['mIoU']:.2f}); "
                f"wrote {self.out_dir / BEST_NAME}",
            )
        distu.barrier()

    def run_eval(self) -> dict:
        return evaluate(
            self.model,
            self.val_loader,
            threshold=self.cfg.eval_threshold,
            device=self.device,
            precision=self.cfg.precision,
        )

    def _finish(self) -> TrainResult:
        """Final metrics (and, on synthetic data, the baselines), ``metrics.json``, the result."""
        cfg, info = self.cfg, self.info
        if not self.metrics:  # nothing left to train (resumed a finished run): still report validation
            self.metrics = self.run_eval()
        train_time = time.time() - self.t_start
        extra: dict = {}
        if self.main and cfg.synthetic:
            # Small generated data: the language-blind baselines cost a second and show what "learning" means.
            extra["baselines"] = trivial_baselines(
                self.refer, cfg.val_split, cfg.max_eval_items, first_sentence_only=cfg.val_first_sentence_only
            )
            say(self.talk, metrics_table({cfg.model: self.metrics, **extra["baselines"]}))
        if self.main:
            write_json(
                self.out_dir / "metrics.json",
                {
                    **self.metrics,
                    **({"baselines": extra["baselines"]} if "baselines" in extra else {}),
                    **({"best": self.best.record} if cfg.select_best else {}),
                    "meta": {
                        "model": unwrap(self.model).config.get("name", cfg.model),
                        "dataset": cfg.dataset,
                        "split_by": cfg.split_by,
                        "split": cfg.val_split,
                        "synthetic": data_is_synthetic(cfg),
                        "epochs": cfg.epochs,
                        "steps": self.global_step,
                        "stopped_early": self.stopped_early,
                        "threshold": cfg.eval_threshold,
                        "train_time_s": round(train_time, 2),
                        "world_size": info.world_size,
                        "device": str(self.device),
                        "torch_threads": torch.get_num_threads(),
                        "val_first_sentence_only": cfg.val_first_sentence_only,
                    },
                },
            )
        return TrainResult(
            model=unwrap(self.model),
            history=self.history,
            metrics=self.metrics,
            output_dir=self.out_dir,
            checkpoint=self.saved,
            config=cfg,
            stopped_early=self.stopped_early,
            train_time_s=train_time,
            extra=extra,
            best=self.best.record if cfg.select_best else None,
        )


__all__ = ["train", "TrainResult"]
