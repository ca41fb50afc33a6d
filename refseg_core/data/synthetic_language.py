"""Referring expressions for synthetic scenes: a tiny logical form, its denotation, and templates.

Every expression is generated from a *form* (a small dict) and kept only if the form's denotation in
its scene is exactly the intended set of objects. Spatial predicates are three-valued (holds / fails /
unclear): a form is rejected when any object is in the unclear band, so a kept expression is never a
borderline call a person would dispute. The same :func:`denote` is used by the tests.

Forms (``shape`` / ``colour`` / ``size`` may be None = not mentioned):
- ``{"t": "attr", shape, colour, size}``: "the small green triangle"; size is the object's absolute
  size class (sizes are bimodal, see ``synthetic_scenes``).
- ``{"t": "loc", shape, colour, size, "loc"}``: "the circle on the far left" (absolute location; among
  several candidates the extreme one, alone: the image third it lies in). Not in ``refcoco+``.
- ``{"t": "rel", shape, colour, size, "rel", "lm": attr form}``: relation to a uniquely described
  landmark: left/right/above/below (not in ``refcoco+``), near (nearest object), touching (overlap).
- ``{"t": "plural", shape, colour, "count"}``: G-REFER multi-target ("the two circles", "all blue
  shapes"); a no-target expression is an ``attr`` form whose denotation is empty.
"""

from __future__ import annotations

import math

import numpy as np

from refseg_core.data.synthetic_lexicon import (
    ATTR_TEMPLATES,
    COUNT_WORDS,
    LOC_TEMPLATES,
    NOUNS,
    PLURAL_TEMPLATES_ALL,
    PLURAL_TEMPLATES_N,
    PLURAL_WORDS,
    REL_TEMPLATES,
    SHAPE_WORDS,
    SIZE_WORDS,
)

from .synthetic_scenes import COLOURS, SHAPES, Obj

# The words and templates live in refseg_core.data.synthetic_lexicon (LTS's default vocabulary is read from them);
# which locations and relations a dataset flavour may use is a planning choice, made here.
LOCS = ["left", "right", "top", "bottom", "top left", "top right", "bottom left", "bottom right", "middle"]
RELS_ALL = ["left of", "right of", "above", "below", "near", "touching"]
RELS_PLUS = ["near", "touching"]  # RefCOCO+ banned location words: no directions at all

# Words that state the target's own position; none may appear in a refcoco+ expression.
LOCATION_WORDS = frozenset(
    "left right top bottom middle center centre upper lower leftmost rightmost highest lowest far corner "
    "above below over under beneath".split()
)

# Geometry thresholds (fractions of the shorter image side unless noted).
EXTREME_MARGIN = 0.12  # the extreme candidate must beat the runner-up by this much
NEAR_MARGIN = 0.12  # nearest object must be closer than the second nearest by this much
THIRD_BAND = 0.04  # "alone in the left third": at least this far from the third's border


# ------------------------------------------------------------------------------------------ semantics
def _matches(o: Obj, f: dict) -> bool:
    return (
        (f.get("shape") is None or o.shape == f["shape"])
        and (f.get("colour") is None or o.colour == f["colour"])
        and (f.get("size") is None or o.size == f["size"])
    )


def _loc_score(o: Obj, loc: str, w: int, h: int) -> float:
    x, y = o.cx / w, o.cy / h
    return {
        "left": -x,
        "right": x,
        "top": -y,
        "bottom": y,
        "top left": -x - y,
        "top right": x - y,
        "bottom left": -x + y,
        "bottom right": x + y,
    }[loc]


def _loc_alone(o: Obj, loc: str, w: int, h: int) -> bool | None:
    """Absolute position of a lone candidate by image thirds; None when too close to a border."""
    x, y = o.cx / w, o.cy / h

    def third(v):
        for lo, hi, name in ((0, 1 / 3, 0), (1 / 3, 2 / 3, 1), (2 / 3, 1.01, 2)):
            if lo <= v < hi:
                near = min(abs(v - lo) if lo > 0 else 1, abs(hi - v) if hi < 1 else 1)
                return name, near < THIRD_BAND
        return 2, False

    (tx, ux), (ty, uy) = third(x), third(y)
    want = {
        "left": (0, None),
        "right": (2, None),
        "top": (None, 0),
        "bottom": (None, 2),
        "top left": (0, 0),
        "top right": (2, 0),
        "bottom left": (0, 2),
        "bottom right": (2, 2),
        "middle": (1, 1),
    }[loc]
    ok = True
    for want_v, got, unclear in ((want[0], tx, ux), (want[1], ty, uy)):
        if want_v is None:
            continue
        if unclear:
            return None
        ok &= got == want_v
    return ok


def _rel(o: Obj, lm: Obj, rel: str, scene: list[Obj], masks, side: float) -> bool | None:
    """Three-valued relation ``o rel lm``."""
    if rel in ("left of", "right of", "above", "below"):
        dx, dy = lm.cx - o.cx, lm.cy - o.cy
        along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[
            rel
        ]
        gap = 0.5 * (o.r + lm.r)
        if along > gap and abs(across) < 0.8 * along:
            return True
        if along < 0.3 * gap or abs(across) > 1.2 * max(along, 1e-6):
            return False
        return None
    if rel == "near":
        d = sorted(
            (math.hypot(p.cx - lm.cx, p.cy - lm.cy) - p.r, i) for i, p in enumerate(scene) if p is not lm
        )
        if len(d) > 1 and d[1][0] - d[0][0] < NEAR_MARGIN * side:
            return None
        return scene[d[0][1]] is o
    if rel == "touching":
        a, b = masks[scene.index(o)], masks[scene.index(lm)]
        inter = int((a & b).sum())
        if inter >= 12:
            return True
        dist = math.hypot(o.cx - lm.cx, o.cy - lm.cy) - (o.r + lm.r)
        return False if (inter == 0 and dist > 0.03 * side) else None
    raise ValueError(f"unknown relation {rel!r}")


def denote(form: dict, scene: list[Obj], masks: list[np.ndarray], w: int, h: int) -> frozenset[int] | None:
    """Indices of the scene objects a form refers to; None when the answer would be unclear.

    ``masks`` are the full (unoccluded) object masks, bool (H, W), used for "touching".
    """
    side = min(w, h)
    cand = [i for i, o in enumerate(scene) if _matches(o, form)]
    t = form["t"]
    if t in ("attr", "plural"):
        if t == "plural" and form.get("count") is not None and len(cand) != form["count"]:
            return frozenset()
        return frozenset(cand)
    if t == "loc":
        loc = form["loc"]
        if not cand:
            return frozenset()
        if len(cand) == 1:
            ok = _loc_alone(scene[cand[0]], loc, w, h)
            return None if ok is None else (frozenset(cand) if ok else frozenset())
        if loc == "middle":
            return None  # "middle" is only used for a lone candidate
        sc = sorted(((_loc_score(scene[i], loc, w, h), i) for i in cand), reverse=True)
        norm = 2.0 if " " in loc else 1.0
        if (sc[0][0] - sc[1][0]) / norm < EXTREME_MARGIN:
            return None
        return frozenset([sc[0][1]])
    if t == "rel":
        lm_set = denote(form["lm"], scene, masks, w, h)
        if lm_set is None or len(lm_set) != 1:
            return None
        lm = scene[next(iter(lm_set))]
        out = set()
        for i in cand:
            if scene[i] is lm:
                continue
            v = _rel(scene[i], lm, form["rel"], scene, masks, side)
            if v is None:
                return None
            if v:
                out.add(i)
        return frozenset(out)
    raise ValueError(f"unknown form type {t!r}")


# ------------------------------------------------------------------------------------------ wording
def _desc(rng, f: dict, plural: bool = False) -> str:
    words = []
    if f.get("size"):
        words.append(str(rng.choice(SIZE_WORDS[f["size"]])))
    if f.get("colour"):
        words.append(f["colour"])
    if f.get("shape"):
        words.append(str(rng.choice((PLURAL_WORDS if plural else SHAPE_WORDS)[f["shape"]])))
    else:
        noun = str(rng.choice(NOUNS[:3] if plural or not words else NOUNS))
        words.append(noun + "s" if plural else noun)
    return " ".join(words)


def realise(rng: np.random.Generator, form: dict) -> str:
    """One English sentence for a form (templates and synonyms drawn from ``rng``)."""
    t = form["t"]
    if t == "attr":
        return str(rng.choice(ATTR_TEMPLATES)).format(d=_desc(rng, form))
    if t == "loc":
        return str(rng.choice(LOC_TEMPLATES[form["loc"]])).format(d=_desc(rng, form))
    if t == "rel":
        return str(rng.choice(REL_TEMPLATES[form["rel"]])).format(
            d=_desc(rng, form), l=_desc(rng, form["lm"])
        )
    if t == "plural":
        if form.get("count"):
            tpl = [x for x in PLURAL_TEMPLATES_N if form["count"] == 2 or not x.startswith("both")]
            return str(rng.choice(tpl)).format(n=COUNT_WORDS[form["count"]], d=_desc(rng, form, plural=True))
        tpl = str(rng.choice(PLURAL_TEMPLATES_ALL))
        return tpl.format(d=_desc(rng, form, plural=True), d_one=_desc(rng, form))
    raise ValueError(f"unknown form type {t!r}")


# ------------------------------------------------------------------------------------------ planning
def _bases(o: Obj) -> list[dict]:
    out = []
    for shape in (o.shape, None):
        for colour in (o.colour, None):
            for size in (None, o.size):
                if shape is None and colour is None and size is None:
                    continue
                out.append({"shape": shape, "colour": colour, "size": size})
    return out


def candidate_forms(i: int, scene: list[Obj], masks, w: int, h: int, flavour: str) -> dict[str, list[dict]]:
    """All forms that denote exactly object ``i``, grouped by kind (attr / loc / rel)."""
    o = scene[i]
    target = frozenset([i])
    out: dict[str, list[dict]] = {"attr": [], "loc": [], "rel": []}
    for b in _bases(o):
        f = {"t": "attr", **b}
        if denote(f, scene, masks, w, h) == target:
            out["attr"].append(f)
    if flavour != "refcoco+":
        for b in _bases(o):
            for loc in LOCS:
                f = {"t": "loc", **b, "loc": loc}
                if denote(f, scene, masks, w, h) == target:
                    out["loc"].append(f)
    rels = RELS_PLUS if flavour == "refcoco+" else RELS_ALL
    for j, lm in enumerate(scene):
        if j == i:
            continue
        lm_forms = [
            {"t": "attr", **b}
            for b in _bases(lm)
            if b["shape"] is not None and denote({"t": "attr", **b}, scene, masks, w, h) == frozenset([j])
        ]
        if not lm_forms:
            continue
        lm_form = min(lm_forms, key=lambda f: sum(v is not None for k, v in f.items() if k != "t"))
        for b in _bases(o):
            if b["shape"] is None and b["colour"] is None:
                continue
            for rel in rels:
                f = {"t": "rel", **b, "rel": rel, "lm": lm_form}
                if denote(f, scene, masks, w, h) == target:
                    out["rel"].append(f)
    return out


def pick_sentences(
    rng: np.random.Generator, cands: dict[str, list[dict]], flavour: str
) -> list[tuple[str, dict]]:
    """1-3 distinct (sentence, form) pairs mixing skills; empty when the object cannot be described.

    A short attribute description alone ("the circle") is kept rarer than combined cues, so the
    expression usually has to be read in full.
    """
    kinds = [k for k in ("attr", "loc", "rel") if cands[k]]
    if not kinds:
        return []
    weights = {"attr": 0.4, "loc": 0.3, "rel": 0.3} if flavour != "refcoco+" else {"attr": 0.5, "rel": 0.5}
    p = np.array([weights.get(k, 0.0) for k in kinds])
    if p.sum() == 0:
        return []
    p = p / p.sum()
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    out, seen = [], set()
    for _ in range(4 * n):
        if len(out) == n:
            break
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        form = cands[kind][int(rng.integers(len(cands[kind])))]
        text = realise(rng, form)
        if text not in seen:
            seen.add(text)
            out.append((text, form))
    return out


def plural_forms(scene: list[Obj], masks, w: int, h: int) -> list[tuple[frozenset[int], dict]]:
    """Multi-target forms (G-REFER): groups of >= 2 objects sharing a shape and/or colour."""
    out = []
    seen = set()
    for o in scene:
        for shape, colour in ((o.shape, None), (None, o.colour), (o.shape, o.colour)):
            if (shape, colour) in seen:
                continue
            seen.add((shape, colour))
            f = {"t": "plural", "shape": shape, "colour": colour, "size": None, "count": None}
            s = denote(f, scene, masks, w, h)
            if s and len(s) >= 2:
                out.append((s, f))
                out.append((s, {**f, "count": len(s)}))
    return out


def no_target_forms(rng: np.random.Generator, scene: list[Obj]) -> list[dict]:
    """Descriptions of absent things: a (colour, shape) pair not in the scene, mostly near misses
    (the shape is there in another colour, or the colour on another shape)."""
    present = {(o.shape, o.colour) for o in scene}
    near, far = [], []
    for s in SHAPES:
        for c in COLOURS:
            if (s, c) in present:
                continue
            miss = any(o.shape == s or o.colour == c for o in scene)
            (near if miss else far).append({"t": "attr", "shape": s, "colour": c, "size": None})
    return near if near and rng.random() < 0.8 else (far or near)
