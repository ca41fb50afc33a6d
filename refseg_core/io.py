"""Atomic writes: the one place that writes "a temporary file beside the target, then rename over it".

A rename within one folder (one file system) is atomic, so a reader - or a resumed run after a crash -
sees either the previous file or the complete new one, never half a file. Every file this package
writes for a run (``last.pt``, ``log.csv``, ``metrics.json``, ``config.yaml``, ``eval_*.json``,
``mask.png``) goes through :func:`atomic_path`.

Temporary names are ``.<name>.tmp<pid>`` in the target's folder (hidden, and per process so that two
processes never share one); :func:`refseg_core.engine.run_dir.claim` removes those a killed run left behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator


def temp_name(path: str | os.PathLike) -> Path:
    """The temporary file :func:`atomic_path` writes for ``path``: ``<folder>/.<name>.tmp<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends normally, rename it over ``path``.

    If the block raises (or is interrupted), the temporary file is removed and ``path`` keeps its old
    content. ``fsync=True`` flushes the bytes to disk before the rename (checkpoints: a power cut after
    the rename must not leave an empty file). The parent folder is created if needed.

    >>> with atomic_path("out/metrics.json") as tmp:   # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; removed after a failure


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN / inf
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically, NaN and infinities as ``null``; returns ``path``."""
    return write_text(path, json.dumps(_json_safe(obj), indent=indent))


__all__ = ["atomic_path", "temp_name", "write_json", "write_text"]
