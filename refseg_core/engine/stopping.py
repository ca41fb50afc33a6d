"""How a training run stops early: a signal (:class:`StopFlag`, then :class:`TrainingInterrupted`), a
non-finite loss (:class:`NonFiniteLossError`) or CUDA running out of memory (:class:`OutOfMemory`).

The official CRIS.pytorch ``train.py`` handles none of these; clusters pre-empt jobs with SIGTERM, so
:func:`refseg_core.engine.loop.train` finishes the step, writes a checkpoint and raises
:class:`TrainingInterrupted` (the CLI exits with status 128 + signal).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights of that step were not updated."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; a checkpoint was written first. ``signum`` says which."""

    def __init__(self, message: str, signum: int, checkpoint: Path | None):
        super().__init__(message)
        self.signum, self.checkpoint = signum, checkpoint


class OutOfMemory(RuntimeError):
    """CUDA ran out of memory; the message names the batch size and what to change."""


class StopFlag:
    """SIGINT / SIGTERM set a flag that the loop reads after each step (a checkpoint comes first)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


__all__ = ["NonFiniteLossError", "OutOfMemory", "StopFlag", "TrainingInterrupted"]
