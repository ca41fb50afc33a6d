"""The run log: history rows -> ``log.csv`` (rewritten atomically after each row) and TensorBoard scalars.

A row is a dict such as ``{"epoch": 1, "step": 20, "loss": 0.41, "lr": 1e-4, "images_per_s": 12.5}`` or,
at an epoch's end, ``{"epoch": 1, "step": 60, "loss": ..., "val_mIoU": ...}``. Only the main rank writes.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from refseg_core.io import atomic_path


class RunLog:
    """Append rows to ``history`` and, when ``enabled``, to ``out/log.csv`` and ``out/tb/``."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, history: list[dict]):
        self.out, self.enabled, self.history = Path(out), enabled, history
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(self.out / "tb"))

    def add(self, row: dict) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k.replace("val_", "val/"), v, row["step"])
            self.tb.flush()
        self.write_csv()

    def write_csv(self) -> None:
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        with atomic_path(self.out / "log.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def say(enabled: bool, msg: str) -> None:
    """Print a progress line (main rank, ``progress=True``), flushed at once."""
    if enabled:
        print(msg, flush=True)


__all__ = ["RunLog", "say"]
