"""Training parameters: one dataclass, :class:`TrainConfig`, whose field names are the keys of the
run configurations shipped in :mod:`refseg_core.configs` (and of any YAML parameter file).

The defaults are the CRIS recipe (Wang et al., CVPR 2022, Sec. 4.1; official CRIS.pytorch
``config/*/cris_r50.yaml``): Adam, lr 1e-4, backbone lr x0.1, weight decay 0, 50 epochs, lr x0.1 at
epoch 35, global batch 64, 416x416 letterboxed input, ``word_len`` 17, threshold 0.35. A smoke run
overrides a handful of them.

``load_config(name_or_path, overrides)`` reads a shipped configuration or a YAML file, applies ``key=value`` overrides and checks every
name and type; an unknown key is an error listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """All parameters of a training run (see the module docstring for where the defaults come from)."""

    # -- model ---------------------------------------------------------------------------------------
    model: str = "cris_r50"  # a build_model name: lts, lts_tiny, cris_r50, cris_r101, cris_tiny
    model_overrides: dict = field(default_factory=dict)  # extra keywords for build_model
    pretrained: str | None = None  # open_clip tag ("openai") or a local weights file; None = random init
    init_from: str | None = None  # start from this checkpoint's model weights (fine-tuning; fresh optimiser)
    # -- data ----------------------------------------------------------------------------------------
    dataset: str = "refcoco"  # refcoco, refcoco+, refcocog, grefcoco, refcoco_m (RefCOCO-M: evaluation only)
    split_by: str = "unc"  # unc / google (refcoco), unc (refcoco+, grefcoco), umd / google (refcocog)
    data_root: str = "data"  # holds <dataset>/ and images/train2014/
    synthetic: bool = False  # generate the synthetic dataset into data_root when it is missing
    synthetic_num_images: int = 200
    synthetic_seed: int = 0
    synthetic_image_size: int = 96
    train_split: str = "train"
    val_split: str = "val"
    input_size: int = 416  # side of the square letterboxed input
    word_len: int = 17  # tokens per expression (CRIS: 17 RefCOCO/+, 22 G-Ref)
    max_train_items: int | None = None  # keep the first N training refs (quick runs)
    max_eval_items: int | None = None  # keep the first N validation sentences
    val_first_sentence_only: bool = True  # CRIS validates on each ref's first sentence during training
    num_workers: int = 0
    # -- optimisation --------------------------------------------------------------------------------
    epochs: int = 50
    batch_size: int = 64  # global: each of W ranks loads batch_size // W
    lr: float = 1e-4
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.0
    milestones: list = field(default_factory=lambda: [35])  # epochs at which lr *= lr_gamma
    lr_gamma: float = 0.1
    warmup_steps: int = 0  # linear warm-up from lr/100 over this many optimiser steps
    grad_clip: float | None = None  # max global gradient norm; None = no clipping (CRIS)
    dice_weight: float = 0.0  # add dice_weight * Dice loss to the model's loss (0 = the papers' losses)
    official_lr_quirk: bool = False  # CRIS code: epoch 1 trains the backbone at the full lr
    bn_eval: bool = False  # keep BatchNorm layers in eval mode while training (tiny batches, DDP test)
    # -- speed ---------------------------------------------------------------------------------------
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16 (+ GradScaler)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm under DDP on CUDA (CRIS uses it)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # -- run -----------------------------------------------------------------------------------------
    seed: int = 0
    output_dir: str = "runs/default"
    eval_threshold: float = 0.35  # CRIS: sigmoid > 0.35
    eval_batch_size: int | None = None  # None = batch_size
    eval_every: int = 1  # validate every N epochs (and always after the last one)
    log_every: int = 50  # print and log every N optimiser steps
    tensorboard: bool = True  # TensorBoard event files in output_dir/tb
    checkpoint_every: int = 1  # write last.pt every N epochs (and at the end)
    select_best: bool = False  # also keep best.pt, the epoch with the best val mIoU so far (>=; official)
    time_limit_s: float | None = None  # stop training after this many seconds (then checkpoint + evaluate)

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _type_of(name: str):
    hints = typing.get_type_hints(TrainConfig)
    return hints[name]


def _coerce(name: str, value: Any, tp) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, bool, str, list, dict, Optional)."""
    args = typing.get_args(tp)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ValueError(f"parameter {name!r} may not be null")
    base = next((a for a in args if a is not type(None)), tp) if args else tp
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"parameter {name!r} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"parameter {name!r} must be an integer, got {value!r}")
        return int(value)
    if base is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; it is a number here
            try:
                value = float(value.strip())
            except ValueError:
                raise ValueError(f"parameter {name!r} must be a number, got {value!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"parameter {name!r} must be a finite number, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"parameter {name!r} must be a string, got {value!r}")
        return os.fspath(value)
    if base is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"parameter {name!r} must be a list, got {value!r}")
        return list(value)
    if base is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"parameter {name!r} must be a mapping, got {value!r}")
        return dict(value)
    return value


def validate(cfg: TrainConfig) -> TrainConfig:
    """Coerce and check every field in place; raises ``ValueError`` naming the parameter at fault."""
    for f in dataclasses.fields(cfg):
        setattr(cfg, f.name, _coerce(f.name, getattr(cfg, f.name), _type_of(f.name)))
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"parameter 'precision' must be one of {PRECISIONS}, got {cfg.precision!r}")
    for name in (
        "epochs",
        "batch_size",
        "input_size",
        "word_len",
        "log_every",
        "eval_every",
        "checkpoint_every",
        "synthetic_num_images",
        "synthetic_image_size",
    ):
        if getattr(cfg, name) < 1:
            raise ValueError(f"parameter {name!r} must be >= 1, got {getattr(cfg, name)}")
    for name in ("lr", "eval_threshold"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"parameter {name!r} must be > 0, got {getattr(cfg, name)}")
    for name in (
        "warmup_steps",
        "num_workers",
        "weight_decay",
        "backbone_lr_mult",
        "lr_gamma",
        "dice_weight",
    ):
        if getattr(cfg, name) < 0:
            raise ValueError(f"parameter {name!r} must be >= 0, got {getattr(cfg, name)}")
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in cfg.milestones):
        raise ValueError(
            f"parameter 'milestones' must be a list of positive epoch numbers, got {cfg.milestones!r}"
        )
    cfg.milestones = sorted(cfg.milestones)
    for name in ("max_train_items", "max_eval_items"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ValueError(f"parameter {name!r} must be >= 1 or null (all items), got {getattr(cfg, name)}")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise ValueError(f"parameter 'grad_clip' must be > 0 or null, got {cfg.grad_clip}")
    if not 0 < cfg.eval_threshold < 1:
        raise ValueError(f"parameter 'eval_threshold' must be in (0, 1), got {cfg.eval_threshold}")
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} is not key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"--set {item!r} names no parameter (expected key=value)")
    # YAML parses 3, 1e-4, true, null, [35, 40] and {a: 1} the way they are written in the files.
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"--set {item!r}: the value is not valid YAML ({problem})") from None
    if key in field_names() and value is not None and not isinstance(value, str):
        tp = _type_of(key)
        if tp is str or str in typing.get_args(tp):  # output_dir=2024 stays the string "2024"
            value = raw.strip()
    return key, value


def make_config(values: Mapping[str, Any] | TrainConfig | None = None, **more) -> TrainConfig:
    """A :class:`TrainConfig` from a mapping (e.g. a notebook's parameters) plus keyword overrides.

    Unknown keys raise ``ValueError`` listing the valid ones.
    """
    if isinstance(values, TrainConfig):
        values = values.to_dict()
    merged = dict(values or {}, **more)
    valid = field_names()
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; valid parameters: {', '.join(valid)}")
    return TrainConfig(**merged)


def _read_yaml_mapping(p: Path, what: str) -> dict:
    if p.is_dir():
        raise ValueError(f"{what} {p} is a directory, not a YAML file")
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {p} is not a YAML text file (byte {exc.start} is not UTF-8 text)") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{what} {p} is not valid YAML{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} {p} must hold a mapping of parameters, got {type(loaded).__name__}")
    return loaded


def is_config_name(config: str | os.PathLike) -> bool:
    """True for a shipped configuration's name (``smoke_cris``), False for a file path (``my.yaml``,
    ``./runs/x/config.yaml``)."""
    text = os.fspath(config)
    return not (os.sep in text or "/" in text or text.endswith((".yaml", ".yml")))


def read_config_values(config: str | os.PathLike | None) -> tuple[dict, str]:
    """The parameters a configuration sets, and how to name it in an error.

    ``config`` is the name of a shipped configuration (:mod:`refseg_core.configs`; its relative
    ``data_root`` / ``output_dir`` are placed under the refseg home, :mod:`refseg_core.paths`), the path of
    a YAML file (taken as written), or ``None`` (no values: the defaults)."""
    if config is None:
        return {}, "the defaults"
    if is_config_name(config):
        from refseg_core import configs
        from refseg_core.paths import CONFIG_PATH_KEYS, under_home

        values = _read_yaml_mapping(configs.path(os.fspath(config)), "configuration")
        for key in CONFIG_PATH_KEYS:
            if isinstance(values.get(key), str):
                values[key] = under_home(values[key])
        return values, f"configuration {config}"
    return _read_yaml_mapping(Path(config), "parameter file"), str(config)


def load_config(
    config: str | os.PathLike | None, overrides: list[str] | Mapping[str, Any] | None = None
) -> TrainConfig:
    """The run a configuration describes: ``config`` (a shipped name such as ``"smoke_cris"``, a YAML
    file, or ``None`` for the defaults) with ``overrides`` applied.

    ``overrides`` is a list of ``"key=value"`` strings (values parsed as YAML, as ``--set`` gives them) or
    a mapping (a notebook's ``overrides``). The CLI (``train --config``) and every chapter's parameters
    cell call this one function, so the same name and overrides give the same run.
    """
    from_file, where_file = read_config_values(config)
    values = dict(from_file)
    if isinstance(overrides, Mapping):
        values.update(overrides)
    else:
        for item in overrides or []:
            k, v = parse_override(item)
            values[k] = v
    try:
        return make_config(values)
    except ValueError as exc:
        # Blame the file only when the file alone is at fault; otherwise the overrides are.
        by = "--set" if overrides and not isinstance(overrides, Mapping) else "the overrides"
        if config is None:
            where = f" (from {by})" if overrides else ""
        else:
            try:
                make_config(from_file)
                file_ok = True
            except ValueError:
                file_ok = False
            where = f" (from {by})" if file_ok and overrides else f" (in {where_file})"
        raise ValueError(f"{exc}{where}") from None


def to_yaml(cfg: TrainConfig) -> str:
    """``cfg`` as the YAML text ``save_config`` writes and ``--dry-run`` / ``dry_run`` print."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML, atomically."""
    from refseg_core.io import write_text

    write_text(path, to_yaml(cfg))


__all__ = [
    "PRECISIONS",
    "TrainConfig",
    "field_names",
    "is_config_name",
    "load_config",
    "make_config",
    "read_config_values",
    "save_config",
    "to_yaml",
    "validate",
]
