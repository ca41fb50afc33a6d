"""Variants of one run configuration (the LTS chapter's ablation): configurations that differ only in
``model_overrides`` (for example the interaction, or no prior at all), trained for the same number of epochs with the same
data, seed and schedule, each into its own run folder.

:func:`variant_config` derives one variant's configuration; :func:`train_variants` trains them all. The
configuration's learning-rate milestones are scaled to the shorter schedule, so a variant trained for
fewer epochs still takes its learning-rate drop at the same fraction of its training.
"""

from __future__ import annotations

from collections.abc import Mapping

from refseg_core.config import TrainConfig, make_config


def scaled_milestones(milestones, epochs: int, run_epochs: int) -> list[int]:
    """``milestones`` of an ``epochs``-long schedule moved to a ``run_epochs``-long one: each milestone
    inside the schedule at the same fraction (at least epoch 1), duplicates merged; those at or past the
    end of the schedule (which never fire) are left out."""
    if run_epochs < 1 or epochs < 1:
        raise ValueError(f"epochs and run_epochs must be >= 1, got {epochs} and {run_epochs}")
    kept = [m for m in milestones if m < epochs]
    return sorted({max(1, round(m * run_epochs / epochs)) for m in kept})


def variant_config(cfg: TrainConfig, name: str, overrides: Mapping, run_epochs: int) -> TrainConfig:
    """``cfg`` trained for ``run_epochs`` epochs with ``overrides`` added to its ``model_overrides``,
    into ``<output_dir>_<name>`` (spaces in ``name`` become underscores)."""
    return make_config(
        cfg.to_dict(),
        epochs=run_epochs,
        milestones=scaled_milestones(cfg.milestones, cfg.epochs, run_epochs),
        model_overrides=dict(cfg.model_overrides, **overrides),
        output_dir=f"{cfg.output_dir}_{name.replace(' ', '_')}",
    )


def train_variants(cfg: TrainConfig, variants: Mapping[str, Mapping], run_epochs: int) -> dict:
    """``{name: TrainResult}``: each variant of ``variants`` (``{name: model overrides}``) trained by
    :func:`refseg_core.engine.train`, replacing the run an earlier call left in its folder."""
    from refseg_core.engine.loop import train

    return {
        name: train(variant_config(cfg, name, overrides, run_epochs), progress=False, overwrite=True)
        for name, overrides in variants.items()
    }
