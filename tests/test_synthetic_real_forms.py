"""The synthetic files use only the annotation forms of the real COCO / RefCOCO / gRefCOCO files.

The forms COCO's ``instances.json`` and ReLA's G_REFER (``gres_model/data/datasets/grefer.py``) use:
non-crowd objects are polygon lists (often several parts), crowd objects a bare RLE dict with uncompressed ``counts`` (a list), and every ``grefs(unc).json`` ref carries a boolean ``no_target``.
ReLA's loaders drop or fail on other forms, such as a list holding one compressed RLE (what version 1 of
the generator wrote). The checker below encodes those rules; it accepts the real-shaped fixtures and
rejects the old synthetic form, and then every synthetic annotation and ref must pass it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _refer_fixtures import base_instances, make_grefer

from refseg_core.data import synthetic as syn
from refseg_core.data import synthetic_scenes as scenes


def form_problem(ann: dict, img: dict) -> str | None:
    """Why ``ann`` is not in a real form, or None."""
    seg = ann.get("segmentation")
    if ann.get("iscrowd", 0):
        if not isinstance(seg, dict) or not isinstance(seg.get("counts"), list):
            return "crowd: not a bare RLE dict with list counts"
        h, w = img["height"], img["width"]
        if list(seg.get("size", [])) != [h, w] or sum(seg["counts"]) != h * w:
            return "crowd: RLE size or run total differs from the image"
        return None
    if not isinstance(seg, list) or not seg:
        return "non-crowd: not a polygon list"
    for p in seg:
        numbers = isinstance(p, list) and all(isinstance(v, (int, float)) for v in p)
        if not numbers or len(p) < 6 or len(p) % 2:
            return "non-crowd: a part is not a flat polygon of >= 3 points"
    return None


def test_checker_accepts_real_shapes_and_rejects_the_old_synthetic_form():
    instances, _ = base_instances()
    imgs = {i["id"]: i for i in instances["images"]}
    anns = {a["id"]: a for a in instances["annotations"]}
    assert len(anns[101]["segmentation"]) == 2 and anns[103]["iscrowd"] == 1  # multi-part polygon, crowd RLE
    for k in (101, 103, 201):
        assert form_problem(anns[k], imgs[anns[k]["image_id"]]) is None
    img = imgs[1]
    v1 = {"iscrowd": 0, "segmentation": [{"size": [img["height"], img["width"]], "counts": "abc"}]}
    assert form_problem(v1, img) is not None
    assert form_problem(anns[102], img) is not None  # a bare compressed RLE on a non-crowd object
    assert form_problem(dict(anns[103], segmentation=anns[102]["segmentation"]), img) is not None


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_forms")
    for flavour in ("refcoco", "grefcoco"):
        syn.generate(out, flavour, seed=3, num_images=24, image_size=72)
    return out


@pytest.mark.parametrize("dataset", ["refcoco", "grefcoco"])
def test_every_synthetic_annotation_has_a_real_form(root, dataset):
    inst = json.loads((root / dataset / "instances.json").read_text())
    imgs = {i["id"]: i for i in inst["images"]}
    problems = [(a["id"], form_problem(a, imgs[a["image_id"]])) for a in inst["annotations"]]
    assert [p for p in problems if p[1]] == []
    assert syn.VERSION >= 2  # version 1 wrote the rejected form; its data must not be reused


def test_every_synthetic_gref_carries_a_boolean_no_target(root, tmp_path):
    refs = json.loads((root / "grefcoco" / "grefs(unc).json").read_text())
    assert all(type(r["no_target"]) is bool and r["no_target"] == (r["ann_id"] == [-1]) for r in refs)
    assert any(r["no_target"] for r in refs) and not all(r["no_target"] for r in refs)
    fx = make_grefer(tmp_path)  # the real-shaped fixture has the same field
    assert [r["no_target"] for r in fx.refs] == [False, True, False, True, False]


def test_polygons_give_back_the_visible_masks_exactly():
    """Painting and scoring use the decoded polygons, so they must equal the visible part of each shape."""
    rings = 0
    for index in range(20):
        plan = syn.plan_image(3, "refcoco", index, 96)
        for obj, seg, vis in zip(plan["objs"], plan["seg"], scenes.visible_masks(plan["full"])):
            np.testing.assert_array_equal(scenes.raster(seg, plan["h"], plan["w"]), vis)
            rings += obj.shape == "ring"
    assert rings > 0


def test_a_ring_is_one_polygon_whose_slit_leaves_the_hole_empty():
    obj = scenes.Obj("ring", "red", "big", 40.0, 38.0, 25.0, 0.0)
    seg = scenes.shape_polygons(obj)
    assert len(seg) == 1
    m = scenes.raster(seg, 80, 90)
    yy, xx = np.mgrid[0:80, 0:90] + 0.5  # pixel centres
    r = np.hypot(xx - 40.0, yy - 38.0)
    inner_apothem = 0.55 * 25.0 * math.cos(math.pi / scenes.CIRCLE_POINTS)
    assert not m[r < inner_apothem - 0.5].any()  # the hole is empty, slit included
    assert m[(r > 0.55 * 25.0 + 0.5) & (r < 25.0 * math.cos(math.pi / scenes.CIRCLE_POINTS) - 0.5)].all()


def test_mask_polygons_cut_holes_open_and_keep_parts_apart():
    m = np.zeros((30, 40), bool)
    m[2:20, 2:20] = True
    m[8:12, 8:12] = False  # a hole
    m[22:28, 25:38] = True  # a second part
    seg = scenes.mask_polygons(m)
    assert len(seg) == 2
    np.testing.assert_array_equal(scenes.raster(seg, 30, 40), m)
    assert scenes.mask_polygons(np.zeros((5, 5), bool)) == []
