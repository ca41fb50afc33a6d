"""How long one optimiser step takes under each precision and memory format, through the engine's own
step (:func:`~refseg_core.engine.step.train_step` + :func:`~refseg_core.engine.step.backward_step`):
what chapter 5 measures on the reader's machine. Careful benchmarks, GPU ones included, are
``benchmarks/`` and chapter 8; this is the quick look.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.engine.optim import build_optimizer
from refseg_core.engine.precision import amp_dtype
from refseg_core.engine.prepare import build_model_for
from refseg_core.engine.step import LossModule, backward_step, train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stepper(cfg, refer, batch: dict, device: torch.device):
    """One optimiser step of a fresh model (seed 0) with ``cfg``'s precision and memory format."""
    torch.manual_seed(0)
    model = build_model_for(cfg, refer).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_module = LossModule(model, cfg.dice_weight)
    optimizer, _, _ = build_optimizer(cfg, model)  # the run's Adam and parameter groups
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    amp = amp_dtype(cfg.precision, device)

    def step() -> tuple[float, float]:
        _sync(device)
        t0 = time.perf_counter()
        out = train_step(loss_module, batch, device, amp, channels_last=cfg.channels_last)
        backward_step(out, loss_module, optimizer, scaler, cfg)
        _sync(device)
        return time.perf_counter() - t0, float(out["loss"].detach())

    return step


def time_train_steps(
    cfg,
    refer,
    variants: list[tuple[str, bool]],
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    rounds: int = 3,
) -> list[dict]:
    """Time one training step of ``cfg``'s model for each ``(precision, channels_last)`` in ``variants``.

    Every variant starts from the same weights and takes the same batch (the first ``batch_size``
    training items, ``(B, 3, S, S)`` images). One untimed warm-up step (allocations, kernel choice),
    then ``rounds`` interleaved rounds of one step each; the fastest is kept, since other programs on a
    shared machine slow a step down, never up. Rows: ``precision``, ``channels_last``, ``s_per_step``,
    ``relative`` (to the first variant), ``loss`` (after ``rounds + 1`` steps), ``steps``."""
    device = torch.device(device)
    base = dataclasses.replace(cfg, pretrained=None)  # timing needs no weights
    ds = RefSegDataset(
        refer, cfg.train_split, build_model_for(base, refer).tokenizer, cfg.input_size, train=True, seed=0
    )
    batch = collate([ds[i] for i in range(batch_size)])
    steppers = {
        v: _stepper(dataclasses.replace(base, precision=v[0], channels_last=v[1]), refer, batch, device)
        for v in variants
    }
    for step in steppers.values():
        step()  # untimed
    samples = {v: [] for v in variants}
    for _ in range(rounds):
        for v, step in steppers.items():
            samples[v].append(step())
    first = min(t for t, _ in samples[variants[0]])
    rows = []
    for (precision, channels_last), s in samples.items():
        fastest = min(t for t, _ in s)
        rows.append(
            {
                "precision": precision,
                "channels_last": channels_last,
                "s_per_step": fastest,
                "relative": fastest / first,
                "loss": s[-1][1],
                "steps": rounds + 1,
            }
        )
    return rows


__all__ = ["time_train_steps"]
