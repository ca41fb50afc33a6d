"""Shared tiny setup for the engine, CLI and DDP tests: a small synthetic dataset and a config."""

from __future__ import annotations

from pathlib import Path

from refseg_core.data.synthetic import ensure_synthetic


def synthetic_root(base: Path, flavour: str = "refcoco", num_images: int = 16) -> Path:
    """Generated REFER-format data (64 px images) under ``base`` (reused when already there)."""
    return ensure_synthetic(
        base / f"syn_{flavour}_{num_images}", flavour, seed=0, num_images=num_images, image_size=64
    )


def tiny_config(data_root: Path, out: Path, **over) -> dict:
    """lts_tiny at 32 px on CPU: a few steps per epoch, every moving part (warm-up, milestones) on."""
    cfg = dict(
        model="lts_tiny",
        dataset="refcoco",
        data_root=str(data_root),
        synthetic=False,
        input_size=32,
        word_len=10,
        epochs=2,
        batch_size=4,
        lr=1e-3,
        backbone_lr_mult=0.5,
        milestones=[2],
        lr_gamma=0.5,
        warmup_steps=2,
        grad_clip=5.0,
        precision="fp32",
        device="cpu",
        seed=0,
        output_dir=str(out),
        max_train_items=12,
        max_eval_items=6,
        log_every=1,
        tensorboard=False,
        num_workers=0,
    )
    cfg.update(over)
    return cfg
