"""Scenes of the synthetic dataset: coloured shapes on noisy backgrounds, rendered with PIL.

A scene is a list of :class:`Obj` (category, colour, size class, centre, radius) drawn back to front,
so a later object hides part of an earlier one. Masks follow COCO: an annotation is the *visible*
region of its object. Every object mask is rasterised by pycocotools from the very polygon that is
written to ``instances.json``, and the image is composited with those masks, so pixels and annotations
agree exactly (no antialiasing seam between what the model sees and what it is scored against).

Learnability (see the brief of the smoke scale): diameters are 15-20 % ("small") or 26-34 % ("big")
of the shorter image side, object colours are saturated, the background is a low-contrast gradient with
noise and faint strokes, so colour and shape are clear cues but none of them alone picks the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from refseg_core.data.synthetic_lexicon import COLOUR_NAMES

# (name, COCO-style supercategory). Category ids are 1-based positions in this list.
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "ring")
# RGB of every colour word of the lexicon (refseg_core.data.synthetic_lexicon.COLOUR_NAMES), in its order.
_RGB = {
    "red": (220, 38, 38),
    "green": (34, 170, 60),
    "blue": (40, 84, 225),
    "yellow": (238, 212, 36),
    "purple": (142, 52, 196),
    "orange": (248, 140, 24),
    "white": (246, 246, 246),
    "black": (22, 22, 22),
}
COLOURS = {name: _RGB[name] for name in COLOUR_NAMES}
# Radius ranges as fractions of the shorter image side; the gap between them (ratio >= 1.3) makes
# "big" and "small" visible at a glance.
SMALL_R = (0.075, 0.10)
BIG_R = (0.13, 0.17)
CIRCLE_POINTS = 40


@dataclass
class Obj:
    """One object of a scene. ``r`` is the circumradius in pixels, ``(cx, cy)`` the centre."""

    shape: str
    colour: str
    size: str  # "big" or "small"
    cx: float
    cy: float
    r: float
    angle: float  # rotation in radians (squares, triangles, stars, hexagons)

    @property
    def category_id(self) -> int:
        return SHAPES.index(self.shape) + 1


def categories() -> list[dict]:
    """COCO ``categories`` entries of the synthetic dataset."""
    return [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]


def _regular(cx, cy, r, n, angle):
    return [
        (cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
        for k in range(n)
    ]


def outline(obj: Obj) -> list[list[tuple[float, float]]]:
    """Polygons of an object's full (unoccluded) shape: ``[outer]`` or ``[outer, hole]`` for a ring."""
    cx, cy, r, a = obj.cx, obj.cy, obj.r, obj.angle
    if obj.shape in ("circle", "ring"):
        outer = _regular(cx, cy, r, CIRCLE_POINTS, 0.0)
        return [outer, _regular(cx, cy, 0.55 * r, CIRCLE_POINTS, 0.0)] if obj.shape == "ring" else [outer]
    if obj.shape == "square":
        return [_regular(cx, cy, r, 4, a + math.pi / 4)]
    if obj.shape == "triangle":
        # centroid of an equilateral triangle sits low; shift so the bounding box is centred
        return [_regular(cx, cy + 0.25 * r, 1.15 * r, 3, -math.pi / 2 + a * 0.3)]
    if obj.shape == "hexagon":
        return [_regular(cx, cy, r, 6, a)]
    if obj.shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else 0.45 * r
            t = -math.pi / 2 + a * 0.4 + math.pi * k / 5
            pts.append((cx + rad * math.cos(t), cy + rad * math.sin(t)))
        return [pts]
    raise ValueError(f"unknown shape {obj.shape!r}")


def flat(poly) -> list[float]:
    """A polygon as COCO's flat ``[x0, y0, x1, y1, ...]`` rounded to 2 decimals (like the REFER files)."""
    return [round(float(c), 2) for xy in poly for c in xy]


def raster(polys_flat: list[list[float]], h: int, w: int) -> np.ndarray:
    """Union of flat polygons rasterised by pycocotools, bool (H, W)."""
    rles = mask_utils.frPyObjects(polys_flat, h, w)
    return mask_utils.decode(rles).any(axis=2)


def full_mask(obj: Obj, h: int, w: int) -> np.ndarray:
    """Full shape of an object, bool (H, W); a ring has its hole removed."""
    polys = outline(obj)
    m = raster([flat(polys[0])], h, w)
    if len(polys) > 1:
        m &= ~raster([flat(polys[1])], h, w)
    return m


def make_scene(rng: np.random.Generator, w: int, h: int) -> tuple[list[Obj], list[np.ndarray]]:
    """Draw 2-5 objects; returns them and their full masks (bool (H, W)), back to front.

    Distractors: a new object reuses an existing shape or colour with probability 0.45 each, so that
    most targets share a cue with another object and the expression has to combine cues. Objects may
    overlap, but a new object may hide at most 30 % of any earlier one, and at most 2 objects share
    the same (shape, colour, size) triple.
    """
    side = min(w, h)
    n_target = int(rng.choice([2, 3, 4, 5], p=[0.15, 0.3, 0.3, 0.25]))
    objs: list[Obj] = []
    masks: list[np.ndarray] = []
    for _ in range(n_target):
        for _attempt in range(40):
            shape = str(rng.choice(SHAPES))
            colour = str(rng.choice(list(COLOURS)))
            if objs and rng.random() < 0.45:
                shape = objs[int(rng.integers(len(objs)))].shape
            if objs and rng.random() < 0.45:
                colour = objs[int(rng.integers(len(objs)))].colour
            size = "big" if rng.random() < 0.5 else "small"
            lo, hi = BIG_R if size == "big" else SMALL_R
            r = float(rng.uniform(lo, hi)) * side
            cx = float(rng.uniform(r + 1, w - r - 1))
            cy = float(rng.uniform(r + 1, h - r - 1))
            obj = Obj(shape, colour, size, cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
            if sum((o.shape, o.colour, o.size) == (shape, colour, size) for o in objs) >= 2:
                continue
            if any(math.hypot(o.cx - cx, o.cy - cy) < 0.75 * (o.r + r) for o in objs):
                continue  # centres too close: one would swallow the other
            m = full_mask(obj, h, w)
            # how much of each earlier object's visible part the new one would hide
            vis = visible_masks(masks)
            if any((v & m).sum() > 0.3 * f.sum() for v, f in zip(vis, masks)):
                continue
            objs.append(obj)
            masks.append(m)
            break
    return objs, masks


def visible_masks(full: list[np.ndarray]) -> list[np.ndarray]:
    """Visible part of each object given full masks back to front: later objects occlude earlier ones."""
    out = []
    cover = np.zeros_like(full[0]) if full else None
    for m in reversed(full):
        out.append(m & ~cover)
        cover = cover | m
    return out[::-1]


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Low-contrast gradient + faint strokes + noise, float (H, W, 3) in 0..255."""
    base = rng.uniform(70, 190)
    c0 = base + rng.uniform(-22, 22, size=3)
    c1 = base + rng.uniform(-22, 22, size=3)
    t = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = (xx / w - 0.5) * math.cos(t) + (yy / h - 0.5) * math.sin(t) + 0.5
    img = c0[None, None, :] * (1 - g[..., None]) + c1[None, None, :] * g[..., None]
    strokes = Image.new("RGB", (w, h), (0, 0, 0))
    alpha = Image.new("L", (w, h), 0)
    d, da = ImageDraw.Draw(strokes), ImageDraw.Draw(alpha)
    for _ in range(int(rng.integers(3, 9))):
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(int(rng.integers(2, 4)))]
        col = tuple(int(v) for v in rng.integers(0, 256, size=3))
        width = int(rng.integers(1, 3))
        d.line(pts, fill=col, width=width)
        da.line(pts, fill=int(rng.integers(50, 100)), width=width)
    a = np.asarray(alpha, dtype=np.float32)[..., None] / 255.0
    img = img * (1 - a) + np.asarray(strokes, dtype=np.float32) * a
    return img + rng.normal(0, 7, size=img.shape)


def render(rng: np.random.Generator, objs: list[Obj], masks: list[np.ndarray], w: int, h: int) -> Image.Image:
    """Composite objects (back to front) on a background; returns an RGB PIL image (W x H).

    Each object gets its named colour with a small per-object jitter and a soft shading gradient, so
    the colour name is unambiguous but not a single exact RGB value.
    """
    img = _background(rng, w, h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for obj, m in zip(objs, masks):
        col = np.array(COLOURS[obj.colour], dtype=np.float32) + rng.uniform(-14, 14, size=3)
        t = rng.uniform(0, 2 * math.pi)
        shade = 1.0 + 0.12 * (((xx - obj.cx) * math.cos(t) + (yy - obj.cy) * math.sin(t)) / max(obj.r, 1.0))
        fill = col[None, None, :] * shade[..., None]
        img = np.where(m[..., None], fill, img)
    img = img + rng.normal(0, 5, size=img.shape)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


def _keyhole(outer: list[tuple[float, float]], holes: list[list[tuple[float, float]]]) -> list[tuple]:
    """One polygon for an outer ring with holes: each hole is spliced in through a zero-width slit.

    COCO polygons cannot carry holes, so real annotations cut a slit instead. pycocotools fills
    polygons by the even-odd rule, so the slit's two coincident edges cancel and the hole stays empty.
    The hole must run the other way round from the outer ring (contourpy and :func:`outline` do so).
    """
    ring = list(outer)
    for hole in holes:
        a = np.asarray(ring, dtype=np.float64)
        b = np.asarray(hole, dtype=np.float64)
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        turn = list(hole[j:]) + list(hole[:j]) + [hole[j]]  # around the hole, back to where it started
        ring = ring[: i + 1] + turn + ring[i:]
    return ring


def shape_polygons(obj: Obj) -> list[list[float]]:
    """COCO ``segmentation`` of an unoccluded object: its outline as one flat polygon (a ring's hole
    through a slit, see :func:`_keyhole`); rasterises to exactly :func:`full_mask`."""
    polys = outline(obj)
    if len(polys) == 1:
        return [flat(polys[0])]
    outer, hole = polys
    return [flat(_keyhole(outer + [outer[0]], [hole[::-1]]))]


def mask_polygons(m: np.ndarray) -> list[list[float]]:
    """The connected parts of a bool (H, W) mask as flat COCO polygons, one per part (``[]`` if empty).

    Boundaries come from ``contourpy`` filled contours at level 0.5, so they run between pixel centres;
    a part with holes becomes one polygon with slits (:func:`_keyhole`). Rasterised by pycocotools the
    polygons give back the mask pixel for pixel on the generated scenes (``tests/test_synthetic.py``).
    """
    import contourpy

    z = np.pad(m.astype(np.float64), 1)
    gen = contourpy.contour_generator(z=z, fill_type=contourpy.FillType.OuterOffset)
    points, offsets = gen.filled(0.5, 1.5)
    out = []
    for pts, offs in zip(points, offsets):
        rings = [pts[a:b] - 0.5 for a, b in zip(offs[:-1], offs[1:])]  # undo the pad; centre at i + 0.5
        rings = [[(float(x), float(y)) for x, y in r] for r in rings if len(r) >= 4]  # closed: >= 3 + 1
        if rings:
            out.append(flat(_keyhole(rings[0], rings[1:])))
    return out
