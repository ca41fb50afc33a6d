"""Verdicts with a margin: a claim such as "the model is above the baseline" or "the prior helps" is
printed only when the measured difference exceeds :data:`MARGIN`; otherwise the page says it cannot tell
at this scale. :func:`meets_target` does the same for a speed ratio against a target, and
:func:`unbacked_claims` checks a page: every claim word in it sits in one of these sentences, and the
sentence's numbers agree with its words (the browser test runs it on every page of the built book).

Why 2 points: the smoke runs are seeded and fixed in epochs, so the same commit prints the same numbers
on one machine, but float rounding between machines moves smoke mIoU by about 2 points (measured between
two 2-core machines, DESIGN.md "Two scales"). A difference inside that band is not evidence.
"""

from __future__ import annotations

import re
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


# --- Speed: a measured ratio against a target ----------------------------------------------------------

SPEED_MARGIN = 0.10
"""Relative margin of a speed verdict: the GPU check's alternating timing rounds of one configuration
differ from one another by about 10 % (``ours_round_s`` in ``refseg_core/evidence/*_check.json``), so a
ratio within 10 % of its target cannot be told from it."""


def meets_target(
    ratio: float,
    target: float,
    what: str,
    margin: float = SPEED_MARGIN,
    loadavg: float | None = None,
    cores: int | None = None,
) -> str:
    """One sentence: does a measured speed ``ratio`` (ours / theirs) meet ``target``? Only when it exceeds
    the target by more than ``margin`` (relative); it misses only when it falls short by more. A row taken
    while the load average exceeded the core count shared the CPU with other work: no verdict."""
    r, t, pct = float(ratio), float(target), round(100 * margin)
    head = f"Cannot tell whether {what} meets the x{t:g} target"
    if loadavg is not None and cores is not None and loadavg > cores:
        return (
            f"{head}: x{r:.2f} was measured at load {loadavg:.1f} on {cores} cores, where other work "
            "shared the CPU."
        )
    if r > t * (1 + margin):
        return f"{what} meets the x{t:g} target: x{r:.2f}, more than {pct}% above it."
    if r < t * (1 - margin):
        return f"{what} misses the x{t:g} target: x{r:.2f}, more than {pct}% below it."
    return f"{head}: x{r:.2f} is within the {pct}% margin of it."


# --- Checking a page: every claim is one of the sentences above, and its numbers agree -------------------

_NUM = r"[+-]?\d+(?:\.\d+)?"
_NAME = r"[^:\n]+?"
VERDICT_SENTENCES = re.compile(
    "|".join(
        [
            rf"(?P<a>{_NAME}) is (?P<side>above|below) (?P<b>{_NAME}): (?P=a) (?P<sa>{_NUM}) vs (?P=b) "
            rf"(?P<sb>{_NUM}) (?P<metric>\S+), (?P<d>{_NUM}) points \(more than the (?P<m>\d+)-point margin\)\.",
            rf"Cannot tell (?P<ta>{_NAME}) from (?P<tb>{_NAME}) at this scale: (?P=ta) (?P<tsa>{_NUM}) vs "
            rf"(?P=tb) (?P<tsb>{_NUM}) (?P<tmetric>\S+), (?P<td>{_NUM}) points, within the (?P<tm>\d+)-point "
            r"margin that float rounding alone can move a smoke run\.",
            rf"(?P<what>{_NAME}) (?P<verb>meets|misses) the x(?P<t>{_NUM}) target: x(?P<r>{_NUM}), more than "
            rf"(?P<pct>\d+)% (?:above|below) it\.",
            rf"Cannot tell whether (?P<cwhat>{_NAME}) meets the x(?P<ct>{_NUM}) target: x(?P<cr>{_NUM}) "
            rf"(?:is within the (?P<cpct>\d+)% margin of it|was measured at load (?P<load>{_NUM}) on "
            r"(?P<cores>\d+) cores, where other work shared the CPU)\.",
        ]
    )
)
"""The sentences :func:`compare` and :func:`meets_target` write (as a page shows them)."""

CLAIMS = re.compile(
    r"\b(?:above|below) (?:the )?(?:[\w()-]+ ){0,4}?(?:baselines?|chance)\b"
    r"|\b(?:helps|hurts|outperforms?|beats)\b"
    r"|\b(?:better|worse) than\b"
    r"|\b(?:meets|misses|met|missed) (?:the |its |our )?(?:[\w.-]+ )?targets?\b"
    r"|\bmeets_target\b",
    re.IGNORECASE,
)
"""Words that claim a measured difference. On a page they may appear only inside a verdict sentence."""


def _verdict_problem(m: re.Match) -> str | None:
    """Why a verdict sentence's numbers do not support its words (None when they do)."""
    g = m.groupdict()
    if g["a"] is not None or g["ta"] is not None:
        sa, sb, d, mg = (
            float(g[k]) for k in (("sa", "sb", "d", "m") if g["a"] else ("tsa", "tsb", "td", "tm"))
        )
        if abs((sa - sb) - d) > 0.011:
            return f"its difference {d:+.2f} is not {sa:.2f} - {sb:.2f}"
        if g["a"] is not None and (g["side"] == "above") != (d > 0):
            return f"it says {g['side']} for a difference of {d:+.2f}"
        if g["a"] is not None and abs(d) <= mg:
            return f"it claims a difference of {d:+.2f} inside the {mg:.0f}-point margin"
        if g["ta"] is not None and abs(d) > mg:
            return f"it cannot tell a difference of {d:+.2f}, which exceeds the {mg:.0f}-point margin"
        return None
    if g["what"] is not None:
        r, t, pct = float(g["r"]), float(g["t"]), float(g["pct"]) / 100
        ok = r > t * (1 + pct) if g["verb"] == "meets" else r < t * (1 - pct)
        return None if ok else f"x{r:.2f} does not {g['verb'][:-1]} x{t:g} by the {pct:.0%} margin"
    r, t = float(g["cr"]), float(g["ct"])
    if g["cpct"] is not None and abs(r / t - 1) > float(g["cpct"]) / 100:
        return f"it cannot tell x{r:.2f} from x{t:g}, which differ by more than {g['cpct']}%"
    if g["load"] is not None and float(g["load"]) <= int(g["cores"]):
        return f"load {g['load']} on {g['cores']} cores did not share the CPU"
    return None


def unbacked_claims(text: str) -> list[str]:
    """Problems with the verdicts in ``text`` (a page's prose and outputs): a claim word outside a
    verdict sentence (``"... is above the baseline"`` typed by hand, a bare ``meets_target True``), or a
    verdict sentence whose numbers contradict its words. Empty when every claim is backed."""
    problems, rest, last = [], [], 0
    for m in VERDICT_SENTENCES.finditer(text):
        why = _verdict_problem(m)
        if why:
            problems.append(f"verdict {m.group(0)[:160]!r}: {why}")
        rest.append(text[last : m.start()])
        last = m.end()
    rest.append(text[last:])
    for part in rest:
        for c in CLAIMS.finditer(part):
            lo, hi = max(0, c.start() - 60), min(len(part), c.end() + 60)
            problems.append(f"claim {c.group(0)!r} outside a verdict sentence: ...{part[lo:hi]!r}...")
    return problems
