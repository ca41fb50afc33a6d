"""Checkpoints that are written atomically and load with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and plain containers: ``model`` (state dict), ``model_config``
(the keywords that rebuild the model with ``build_model``, tokenizer vocabulary included), ``optimizer``,
``scheduler``, ``warmup``, ``scaler``, ``rng`` (python, numpy, torch, cuda), ``epoch`` (completed
epochs), ``step`` (optimiser steps so far), ``epoch_step`` (steps done inside the unfinished epoch),
``history`` and ``config`` (the :class:`~refseg_core.config.TrainConfig` as a dict).
Nothing here is pickled code, so a checkpoint from elsewhere cannot run anything when loaded.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states as tensors and plain values."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        # Python's state is (version, tuple of 625 ints, gauss); store the ints as a tensor.
        "python": {"version": py[0], "state": torch.tensor(py[1], dtype=torch.int64), "gauss": py[2]},
        "numpy": {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path.tmp`` then ``os.replace``: a crash or error while writing leaves the
    previous file at ``path`` untouched and no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb+") as fh:  # make the bytes durable before the rename
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a checkpoint, unsafe content
        raise ValueError(f"checkpoint {path} cannot be loaded: {exc}") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"checkpoint {path} holds no 'model' state dict")
    return ckpt


def model_from_checkpoint(path_or_ckpt, map_location: str | torch.device = "cpu"):
    """Rebuild the model saved in a checkpoint (architecture + tokenizer from ``model_config``) and load
    its weights. Returns the model in eval mode on ``map_location``."""
    from refseg_core.models import build_model

    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt, map_location)
    if "model_config" not in ckpt:
        raise ValueError("checkpoint holds no 'model_config'; cannot rebuild the model")
    cfg = dict(ckpt["model_config"])
    name = cfg.pop("name")
    model = build_model(name, **cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval()


__all__ = ["atomic_torch_save", "load_checkpoint", "model_from_checkpoint", "rng_state", "set_rng_state"]
