"""Checkpoints that are written atomically and load with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and plain containers: ``model`` (state dict), ``model_config``
(the keywords that rebuild the model with ``build_model``, tokenizer vocabulary included), ``optimizer``,
``scheduler``, ``warmup``, ``scaler``, ``rng`` (python, numpy, torch, cuda), ``epoch`` (completed
epochs), ``step`` (optimiser steps so far), ``epoch_step`` (steps done inside the unfinished epoch),
``history``, ``config`` (the :class:`~refseg_core.config.TrainConfig` as a dict) and ``best`` (with
``select_best``: the epoch and validation mIoU of ``best.pt``, else None). ``best.pt`` holds the model part
only (:mod:`refseg_core.engine.selection`).
Nothing here is pickled code, so a checkpoint from elsewhere cannot run anything when loaded.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from refseg_core.io import atomic_path
from refseg_core.models.base import without_weight_sources


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states as tensors and plain values."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        # Python's state is (version, tuple of 625 ints, gauss); store the ints as a tensor.
        "python": {"version": py[0], "state": torch.tensor(py[1], dtype=torch.int64), "gauss": py[2]},
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
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
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`refseg_core.io.atomic_path` (temporary file, ``fsync``, rename): a
    crash or error while writing leaves the previous file at ``path`` untouched and no temporary file
    behind. A full disk raises :class:`CheckpointWriteError` ("disk full ...").

    torch writes through a Python file object here, not a path: given a path, its zip writer reports a
    full disk as a ``RuntimeError`` about file positions, which says nothing of the cause; through a file
    object the ``OSError`` (``ENOSPC``) arrives as such."""
    path = Path(path)
    try:
        with atomic_path(path, fsync=True) as tmp:
            with _open_for_writing(tmp) as fh:
                torch.save(obj, fh)
    except BaseException as exc:
        if _is_disk_full(exc, path.parent):
            raise CheckpointWriteError(
                f"disk full: no space left on the device while writing {path}; "
                + ("the previous checkpoint there is kept" if path.exists() else "no checkpoint was written")
                + "; free some space and resume"
            ) from None
        raise
    return path


def _open_for_writing(tmp: Path):
    return open(tmp, "wb")  # its own function so that tests can hand torch a full device (/dev/full)


def _is_disk_full(exc: BaseException, folder: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch's zip writer (a path, or an old torch) reports ENOSPC as a RuntimeError ("file write failed",
    # "unexpected pos"); then ask the file system
    text = str(exc)
    zip_writer = any(w in text for w in ("inline_container", "PytorchStreamWriter", "file write failed"))
    return isinstance(exc, RuntimeError) and zip_writer and _disk_full(folder)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full); the message is one sentence naming the file."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"checkpoint {path} is a directory, not a checkpoint file (did you mean {path / 'last.pt'}?)"
        )
    if not path.is_file():
        from refseg_core.engine.run_dir import describe

        held = describe(path.parent) if path.name == "last.pt" and path.parent.is_dir() else ""
        if "log.csv" in held or "config.yaml" in held:
            raise FileNotFoundError(
                f"checkpoint {path} does not exist: {path.parent} holds {held}, a run that stopped before "
                "its first checkpoint; start it again with --overwrite"
            )
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    from refseg_core.safe_load import torch_load

    ckpt = torch_load(path, "checkpoint", map_location)  # truncated, not a checkpoint, unsafe: one sentence
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"checkpoint {path} holds no 'model' state dict")
    return ckpt


def rebuild_kwargs(model_config) -> tuple[str, dict]:
    """``(name, keywords)`` for ``build_model`` from a checkpoint's ``model_config``, with every
    initial-weight source (``pretrained``, ``glove_path``) set to None
    (:func:`refseg_core.models.base.without_weight_sources`)."""
    if not isinstance(model_config, dict) or not isinstance(model_config.get("name"), str):
        raise ValueError("checkpoint's 'model_config' holds no model name; cannot rebuild the model")
    cfg = without_weight_sources(model_config)
    name = cfg.pop("name")
    return name, cfg


def load_model_state(model, state: dict, source: str) -> None:
    """``model.load_state_dict(state)``; weights that do not fit raise one ``ValueError`` naming ``source``."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ValueError(
            f"{source}: its weights do not fit a {model.config.get('name', 'model')} model ({detail[:300]})"
        ) from None


def model_from_checkpoint(path_or_ckpt, map_location: str | torch.device = "cpu", source=None):
    """Rebuild the model saved in a checkpoint (architecture + tokenizer from ``model_config``) and load
    its weights. Returns the model in eval mode on ``map_location``. ``source`` names the file in errors
    when a loaded dict is given. No weight file named in ``model_config`` is opened (:func:`rebuild_kwargs`)."""
    from refseg_core.models import build_model

    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt, map_location)
    if "model_config" not in ckpt:
        raise ValueError("checkpoint holds no 'model_config'; cannot rebuild the model")
    name, cfg = rebuild_kwargs(ckpt["model_config"])
    model = build_model(name, **cfg)
    where = source if source is not None else path_or_ckpt if not isinstance(path_or_ckpt, dict) else None
    load_model_state(model, ckpt["model"], f"checkpoint {where}" if where is not None else "the checkpoint")
    return model.to(map_location).eval()


__all__ = [
    "atomic_torch_save",
    "CheckpointWriteError",
    "load_checkpoint",
    "load_model_state",
    "model_from_checkpoint",
    "rebuild_kwargs",
    "rng_state",
    "set_rng_state",
]
