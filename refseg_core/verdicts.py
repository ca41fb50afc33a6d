"""Verdicts with a margin: a claim such as "the model is above the baseline" or "the prior helps" is
printed only when the measured difference exceeds :data:`MARGIN`; otherwise the page says it cannot tell
at this scale.

Why 2 points: the smoke runs are seeded and fixed in epochs, so the same commit prints the same numbers
on one machine, but float rounding between machines moves smoke mIoU by about 2 points (measured between
two 2-core machines, DESIGN.md "Two scales"). A difference inside that band is not evidence.
"""

from __future__ import annotations

from typing import Mapping

MARGIN = 0.02  # in score units ([0, 1]); 2 points


def difference(a: float, b: float, margin: float = MARGIN) -> int:
    """+1 when ``a`` exceeds ``b`` by more than ``margin``, -1 when ``b`` exceeds ``a`` by more, 0 else."""
    d = float(a) - float(b)
    return 1 if d > margin else -1 if d < -margin else 0


def compare(
    a: float, b: float, name_a: str, name_b: str, metric: str = "mIoU", margin: float = MARGIN
) -> str:
    """One sentence comparing two scores in [0, 1] (printed as percentages), with the margin applied."""
    d = 100 * (float(a) - float(b))
    scores = f"{name_a} {100 * a:.2f} vs {name_b} {100 * b:.2f} {metric}"
    m = 100 * margin
    side = difference(a, b, margin)
    if side > 0:
        return f"{name_a} is above {name_b}: {scores}, {d:+.2f} points (more than the {m:.0f}-point margin)."
    if side < 0:
        return f"{name_a} is below {name_b}: {scores}, {d:+.2f} points (more than the {m:.0f}-point margin)."
    return (
        f"Cannot tell {name_a} from {name_b} at this scale: {scores}, {d:+.2f} points, within the "
        f"{m:.0f}-point margin that float rounding alone can move a smoke run."
    )


def best_baseline(baselines: Mapping[str, Mapping[str, float]], metric: str = "mIoU") -> tuple[str, dict]:
    """The strongest language-blind baseline (``engine.trivial_baselines``' output) by ``metric``:
    ``(name, metrics)``. A model "uses the sentence" only if it beats this one by the margin."""
    if not baselines:
        raise ValueError("best_baseline: no baselines given")
    name = max(baselines, key=lambda n: baselines[n][metric])
    return name, dict(baselines[name])


def versus_baseline(
    score: float, baselines: Mapping[str, Mapping[str, float]], name: str, metric: str = "mIoU"
) -> str:
    """:func:`compare` of a model's score with the best baseline (its name spelled out)."""
    base_name, base = best_baseline(baselines, metric)
    return compare(
        score, base[metric], name, f"the best language-blind baseline ({base_name.replace('_', ' ')})", metric
    )
