"""Reading PyTorch files safely: ``torch.load(weights_only=True)`` only, and errors as one sentence.

A file that is corrupt, truncated, not a PyTorch file, or that holds objects other than tensors and plain
containers (pickled code) is refused with one sentence naming it. PyTorch's own message for the last case
advises turning the weights-only restriction off, which would execute whatever the file holds; that advice
is never passed on (:func:`describe_load_error` keeps only the reason).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch


def describe_load_error(exc: BaseException) -> str:
    """The reason ``torch.load`` failed, in a few words, without PyTorch's advice to lift the weights-only
    restriction."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        detail = " ".join(detail.split()).split(" Check the documentation")[0].strip()
        return (
            "it is not a checkpoint of tensors and plain containers (corrupt, or it holds pickled objects "
            "that loading would have to execute" + (f": {detail[:120]}" if detail else "") + ")"
        )
    if "zip archive" in text or "PytorchStreamReader" in text or isinstance(exc, EOFError):
        return "it is not a complete PyTorch file (corrupt or truncated)"
    first = " ".join(text.split())[:200] or type(exc).__name__
    if "weights_only" in first:  # any other wording of the same advice
        return "it cannot be read as tensors and plain containers"
    return first


def torch_load(path: str | os.PathLike, what: str = "file", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; ``ValueError`` naming ``what`` and ``path`` if it fails."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # UnpicklingError, RuntimeError (zip reader), EOFError, ...
        raise ValueError(f"{what} {path} cannot be loaded: {describe_load_error(exc)}") from None


__all__ = ["describe_load_error", "torch_load"]
