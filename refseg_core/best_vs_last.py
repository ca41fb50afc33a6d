"""best.pt against last.pt: the two checkpoints of one run, scored on the same splits (chapter 6).

A run trained with ``select_best: true`` keeps ``last.pt`` (the weights after the final epoch) and
``best.pt`` (the weights of the epoch with the best validation mIoU, first sentence of each ref, ``>=`` as
the official CRIS.pytorch ``train.py``; :mod:`refseg_core.engine.selection`); ``metrics.json["best"]``
names that epoch. The published CRIS table scores ``best_model.pth``, the official counterpart of
``best.pt``. Chapter 6 scores both checkpoints of a run folder on every split (``pick_checkpoint`` of
:mod:`refseg_core.engine.selection` finds them, ``engine.evaluate`` scores them); here their scores are
set side by side (:func:`rows`), with one margin verdict per split (:func:`verdict_lines`,
:func:`refseg_core.verdicts.compare`), and the per-epoch validation curve that chose ``best.pt`` is read
back from ``log.csv`` (:func:`val_curve`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from refseg_core import verdicts


def best_record(folder: str | Path) -> dict:
    """``metrics.json["best"]`` of the run in ``folder``: ``{"epoch", "mIoU", "split", "checkpoint"}``."""
    path = Path(folder) / "metrics.json"
    best = json.loads(path.read_text()).get("best") if path.is_file() else None
    if not best:
        raise ValueError(f"{path} names no best epoch: the run was not trained with select_best: true")
    return dict(best)


def val_curve(folder: str | Path, metric: str = "mIoU") -> tuple[list[int], list[float]]:
    """``(epochs, val scores)`` of the epochs that were validated, from the run's ``log.csv``: the numbers
    ``best.pt`` was chosen by."""
    epochs, scores = [], []
    with open(Path(folder) / "log.csv", newline="") as f:
        for row in csv.DictReader(f):
            value = row.get(f"val_{metric}")
            if value not in (None, ""):
                epochs.append(int(row["epoch"]))
                scores.append(float(value))
    return epochs, scores


def rows(scores: dict, splits, labels: dict | None = None) -> list[tuple]:
    """Table rows ``(split, best mIoU, last mIoU, best - last, best oIoU, last oIoU)`` in points;
    ``labels`` renames the splits (e.g. RefCOCO-M's)."""
    labels = labels or {}
    out = []
    for split in splits:
        b, last = scores["best", split], scores["last", split]
        out.append(
            (
                labels.get(split, split),
                100 * b["mIoU"],
                100 * last["mIoU"],
                100 * (b["mIoU"] - last["mIoU"]),
                100 * b["oIoU"],
                100 * last["oIoU"],
            )
        )
    return out


def verdict_lines(scores: dict, splits, names: dict, labels: dict | None = None) -> list[str]:
    """One :func:`refseg_core.verdicts.compare` sentence per split, best against last (mIoU, 2-point
    margin); ``names`` maps ``"best"``/``"last"`` to how each checkpoint is named."""
    labels = labels or {}
    return [
        f"{labels.get(split, split)}: "
        + verdicts.compare(
            scores["best", split]["mIoU"], scores["last", split]["mIoU"], names["best"], names["last"]
        )
        for split in splits
    ]


__all__ = ["best_record", "rows", "val_curve", "verdict_lines"]
