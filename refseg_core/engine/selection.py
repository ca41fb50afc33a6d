"""The official checkpoint selection: keep ``best.pt``, the weights of the epoch with the best validation mIoU.

The official CRIS.pytorch ``train.py`` validates after every epoch (``engine/engine.py``, ``validate``: the
first sentence of each ref of the config's validation split) and saves ``best_model.pth`` whenever that
mIoU is *at least* the best so far (``>=``: a later epoch that ties replaces an earlier one), besides
``last_model.pth``; ``test.py`` then scores ``best_model.pth`` on every split. The published table is
therefore best-of-50-epochs, selected on the validation split of each config: ``val`` for RefCOCO and
G-Ref, ``testB`` for the official RefCOCO+ configs (this package's RefCOCO+ configurations select on
``val``; their headers say so).

With ``select_best: true`` (:class:`refseg_core.config.TrainConfig`) :func:`refseg_core.engine.loop.train`
does the same after each validated epoch (every epoch with ``eval_every: 1``, as the official code).
``best.pt`` holds what scoring needs (``model``, ``model_config``, ``config``) plus ``epoch`` (completed
epochs), ``step``, ``val_metrics`` and ``best``; not the optimiser (it is not a point to resume from:
``last.pt`` is). ``last.pt`` and ``metrics.json`` carry the same ``best`` record, so a resumed run keeps
selecting against the right score. A validation after a time-limit stop (mid-epoch) is not a candidate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from refseg_core.paths import readable

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"


class BestSelector:
    """The best validation mIoU so far and its epoch; ``record`` is None before the first validation."""

    def __init__(self, split: str, record: Mapping | None = None):
        self.split = split
        self.record: dict | None = dict(record) if isinstance(record, Mapping) else None

    def offer(self, epoch: int, metrics: Mapping) -> bool:
        """Epoch ``epoch`` (1-based, completed) scored ``metrics``: True when it becomes the best (the
        official ``>=``), and the record then names it."""
        score = float(metrics["mIoU"])
        if self.record is not None and score < float(self.record["mIoU"]):
            return False
        self.record = {"epoch": int(epoch), "mIoU": score, "split": self.split, "checkpoint": BEST_NAME}
        return True

    def checkpoint(self, model_state: dict, model_config: dict, config: dict, step: int, metrics) -> dict:
        """The contents of ``best.pt`` for the epoch just recorded."""
        return {
            "model": model_state,
            "model_config": model_config,
            "config": config,
            "epoch": self.record["epoch"],
            "step": int(step),
            "val_metrics": dict(metrics),
            "best": dict(self.record),
        }


def pick_checkpoint(folder: str | Path, which: str = "auto") -> tuple[Path, str]:
    """The checkpoint of the run in ``folder`` to score, and a sentence saying which and why.

    ``which``: ``"auto"`` (``best.pt`` when the run kept one: the official protocol; else ``last.pt``),
    ``"best"`` or ``"last"``. A missing file raises ``FileNotFoundError`` saying what the folder holds."""
    folder = Path(folder)
    best, last = folder / BEST_NAME, folder / LAST_NAME
    if which not in ("auto", "best", "last"):
        raise ValueError(f"checkpoint choice must be auto, best or last, got {which!r}")
    if which == "auto":
        which = "best" if best.is_file() else "last"
        if which == "best":
            return best, (
                f"scoring {readable(best)}, the epoch the run selected on its validation split (official protocol); "
                f"--checkpoint last scores the last epoch"
            )
        if last.is_file():
            return last, f"scoring {readable(last)} (the run kept no best.pt: it trained without select_best)"
    path = best if which == "best" else last
    if not path.is_file():
        if not folder.is_dir():
            raise FileNotFoundError(f"run folder {folder} does not exist")
        held = sorted(p.name for p in folder.glob("*.pt"))
        raise FileNotFoundError(
            f"run folder {folder} has no {path.name} (it holds {', '.join(held) if held else 'no checkpoint'})"
        )
    return path, f"scoring {readable(path)} ({which}.pt)"


__all__ = ["BEST_NAME", "BestSelector", "LAST_NAME", "pick_checkpoint"]
