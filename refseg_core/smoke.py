"""The bar the book's smoke runs must clear, in one place: chapter 5 prints the verdict and
``tests/test_smoke_learning.py`` fails CI when a run of ``make book`` misses its learning part.

A smoke run *learned* when its validation mIoU reaches ``min_mIoU`` and beats the best language-blind
baseline (the whole image, the largest object) by ``min_margin``; it should do so within ``max_train_s``
seconds of training on an idle 2-core CPU. The runs are fixed in epochs and seeded, so the learning numbers
are the same on any machine (up to float rounding between thread counts); only the time depends on the
machine, so the time is a budget that ``benchmarks/smoke_times.py`` reports (a benchmark row), not a test.
"""

from __future__ import annotations

from typing import Mapping

from refseg_core.verdicts import MARGIN, best_baseline

BARS = {
    "smoke_lts": {"min_mIoU": 0.50, "min_margin": 0.15, "max_train_s": 240.0},
    "smoke_cris": {"min_mIoU": 0.45, "min_margin": 0.15, "max_train_s": 360.0},
}


def misses(config_name: str, metrics: Mapping, train_time_s: float | None = None) -> list[str]:
    """What a run of ``config_name`` misses of its bar (empty: it learned). ``metrics`` is a
    ``metrics.json`` (``mIoU`` and ``baselines``: ``{name: {"mIoU": ...}}``); with ``train_time_s`` the
    time budget is included (chapter 5 shows it; CI never checks it)."""
    bar = BARS[config_name]
    best = best_baseline(metrics["baselines"])[1]["mIoU"]
    out = []
    if metrics["mIoU"] < bar["min_mIoU"]:
        out.append(f"val mIoU {metrics['mIoU']:.3f} < {bar['min_mIoU']}")
    if metrics["mIoU"] - best < bar["min_margin"]:
        out.append(
            f"val mIoU {metrics['mIoU']:.3f} is less than {100 * bar['min_margin']:.0f} points over the best "
            f"baseline {best:.3f}"
        )
    if train_time_s is not None and train_time_s > bar["max_train_s"]:
        out.append(f"trained {train_time_s:.0f} s, more than {bar['max_train_s']:.0f} s")
    return out


def slack(config_name: str, metrics: Mapping) -> tuple[float, str]:
    """How far the learning part of a run of ``config_name`` clears its bar, in score units ([0, 1];
    negative: it misses), on the tighter of its two conditions, and that condition's name."""
    bar = BARS[config_name]
    lead = metrics["mIoU"] - best_baseline(metrics["baselines"])[1]["mIoU"]
    return min(
        (metrics["mIoU"] - bar["min_mIoU"], "the mIoU floor"),
        (lead - bar["min_margin"], "the lead over the best baseline"),
    )


def verdict(config_name: str, metrics: Mapping, train_time_s: float) -> str:
    """One sentence for a chapter: whether a run of ``config_name`` reaches the learning target the book
    sets its smoke runs (:data:`BARS`, :func:`misses`), or that the configuration has none (a full-size
    one, say)."""
    if config_name not in BARS:
        return f"{config_name} has no learning target here (only {', '.join(sorted(BARS))} have one)."
    bar = BARS[config_name]
    rule = (
        f"val mIoU at least {100 * bar['min_mIoU']:.0f} % and at least {100 * bar['min_margin']:.0f} points "
        f"over the best language-blind baseline, within {bar['max_train_s']:.0f} s of training"
    )
    missed = misses(config_name, metrics, train_time_s)
    room, where = slack(config_name, metrics)
    close = ""
    if abs(room) <= MARGIN:  # verdicts.MARGIN: what float rounding alone moves a smoke run between machines
        close = (
            f" It is {100 * abs(room):.2f} points {'over' if room >= 0 else 'under'} {where}, inside the "
            f"{100 * MARGIN:.0f}-point margin that float rounding alone can move a smoke run: on another "
            "machine the same commit could land on the other side."
        )
    if not missed:
        return f"{config_name} **reaches** the book's learning target ({rule}).{close}"
    return (
        f"{config_name} **falls short of** the book's learning target ({rule}): {'; '.join(missed)}.{close}"
    )
