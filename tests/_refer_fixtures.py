"""Tiny REFER / G-REFER datasets written to disk in the exact release formats, for tests.

Layout: ``<root>/<dataset>/refs(<split_by>).p`` (pickle of a list of ref dicts, protocol 2 like the
Python-2 release), ``<root>/grefcoco/grefs(unc).json``, ``<root>/<dataset>/instances.json`` (COCO) and
``<root>/images/train2014/*.png`` (PNG keeps pixel values exact).

Masks are known independently of pycocotools: an integer rectangle polygon
``(x0, y0)-(x1, y1)`` covers rows ``y0:y1`` and columns ``x0:x1``; RLE masks are encoded from explicit
arrays.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

IMG1_HW = (20, 30)
IMG2_HW = (16, 12)


def rect_poly(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """A rectangle as a flat COCO polygon (clockwise corners)."""
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def rect_mask(hw: tuple[int, int], *rects: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros(hw, np.uint8)
    for x0, y0, x1, y1 in rects:
        m[y0:y1, x0:x1] = 1
    return m


def image_array(hw: tuple[int, int], seed: int) -> np.ndarray:
    """A deterministic RGB uint8 image (H, W, 3)."""
    return np.random.default_rng(seed).integers(0, 256, size=(*hw, 3), dtype=np.uint8)


def sentence(sent_id: int, text: str) -> dict:
    return {"raw": text, "sent": text.lower(), "sent_id": sent_id, "tokens": text.lower().split()}


def make_ref(ref_id, ann_id, image_id, split, texts, first_sent_id, category_id=1) -> dict:
    sents = [sentence(first_sent_id + i, t) for i, t in enumerate(texts)]
    return {
        "ref_id": ref_id,
        "ann_id": ann_id,
        "category_id": category_id,
        "image_id": image_id,
        # REFER's own file_name carries the annotation id as a suffix; the image file is named in
        # instances.json. Keep that quirk so code that uses the wrong one fails.
        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
        "split": split,
        "sent_ids": [s["sent_id"] for s in sents],
        "sentences": sents,
    }


@dataclass
class Fixture:
    root: Path
    dataset: str
    split_by: str
    refs: list[dict]
    instances: dict
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # ann id -> expected mask
    images: dict[int, np.ndarray] = field(default_factory=dict)  # image id -> RGB array

    @property
    def folder(self) -> Path:
        return self.root / self.dataset

    @property
    def image_dir(self) -> Path:
        return self.root / "images" / "train2014"

    def image_file(self, image_id: int) -> Path:
        name = next(im["file_name"] for im in self.instances["images"] if im["id"] == image_id)
        return self.image_dir / name


def base_instances() -> tuple[dict, dict[int, np.ndarray]]:
    """COCO instances for two images with polygon, RLE and degenerate annotations."""
    h1, w1 = IMG1_HW
    h2, w2 = IMG2_HW
    masks = {
        101: rect_mask(IMG1_HW, (2, 2, 8, 8), (15, 10, 25, 16)),  # two polygon parts
        102: np.zeros(IMG1_HW, np.uint8),  # compressed RLE (an L shape)
        103: np.zeros(IMG1_HW, np.uint8),  # uncompressed RLE
        104: np.zeros(IMG1_HW, np.uint8),  # degenerate polygon: zero area
        201: rect_mask(IMG2_HW, (1, 2, 7, 12)),
    }
    masks[102][10:18, 3:5] = 1
    masks[102][16:18, 3:12] = 1
    masks[103][0:5, 20:30] = 1
    masks[103][4, 20] = 0

    rle102 = mask_utils.encode(np.asfortranarray(masks[102]))
    rle102["counts"] = rle102["counts"].decode("ascii")
    # Uncompressed RLE: run lengths over the column-major (Fortran) flattening, starting with zeros.
    flat = masks[103].flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)

    instances = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_000000000001.png", "height": h1, "width": w1},
            {"id": 2, "file_name": "COCO_train2014_000000000002.png", "height": h2, "width": w2},
        ],
        "annotations": [
            {
                "id": 101,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [rect_poly(2, 2, 8, 8), rect_poly(15, 10, 25, 16)],
            },
            {
                "id": 102,
                "image_id": 1,
                "category_id": 2,
                "iscrowd": 0,
                "segmentation": {"size": [h1, w1], "counts": rle102["counts"]},
            },
            {
                "id": 103,
                "image_id": 1,
                "category_id": 2,
                "iscrowd": 1,
                "segmentation": {"size": [h1, w1], "counts": [int(c) for c in counts]},
            },
            {
                "id": 104,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[5.0, 5.0, 5.0, 5.0, 5.0, 5.0]],
            },
            {
                "id": 201,
                "image_id": 2,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [rect_poly(1, 2, 7, 12)],
            },
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    }
    return instances, masks


def write_images(fx: Fixture) -> None:
    fx.image_dir.mkdir(parents=True, exist_ok=True)
    for im in fx.instances["images"]:
        arr = image_array((im["height"], im["width"]), seed=im["id"])
        fx.images[im["id"]] = arr
        Image.fromarray(arr, "RGB").save(fx.image_dir / im["file_name"])


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_refer(root: Path, dataset: str = "refcoco", split_by: str = "unc") -> Fixture:
    """A REFER dataset: 6 refs (train 3, val 2, testA 1), 11 sentences, ref 4 has a zero-area mask."""
    instances, masks = base_instances()
    refs = [
        make_ref(1, 101, 1, "train", ["Left Man", "man on the left"], 10),
        make_ref(2, 102, 1, "train", ["the dog", "brown dog lying", "dog"], 20),
        make_ref(4, 104, 1, "train", ["a speck"], 40),
        make_ref(3, 103, 1, "val", ["crowd top right", "people"], 30),
        make_ref(5, 201, 2, "val", ["tall thing"], 50),
        make_ref(6, 201, 2, "testA", ["thing", "the thing here"], 60),
    ]
    fx = Fixture(Path(root), dataset, split_by, refs, instances, masks)
    write_pickle(fx.folder / f"refs({split_by}).p", refs)
    write_json(fx.folder / "instances.json", instances)
    write_images(fx)
    return fx


def make_grefer(root: Path, as_pickle: bool = False) -> Fixture:
    """A G-REFER dataset: multi-target (list ann ids), no-target ([-1] and -1) and single-target refs,
    each with the boolean ``no_target`` of the real release."""
    instances, masks = base_instances()
    refs = [
        make_ref(1, [101, 102], 1, "train", ["man and dog"], 10, category_id=[1, 2]),
        make_ref(2, [-1], 1, "train", ["the cat"], 20, category_id=[-1]),
        make_ref(3, 201, 2, "val", ["tall thing"], 30),
        make_ref(4, -1, 2, "val", ["a giraffe"], 40, category_id=-1),
        make_ref(5, [101, 103], 1, "val", ["man and the crowd"], 50, category_id=[1, 2]),
    ]
    for r in refs:  # the real grefs(unc).json carries this boolean on every ref
        r["no_target"] = r["ann_id"] in (-1, [-1])
    fx = Fixture(Path(root), "grefcoco", "unc", refs, instances, masks)
    name = "grefs(unc).p" if as_pickle else "grefs(unc).json"
    (write_pickle if as_pickle else write_json)(fx.folder / name, refs)
    write_json(fx.folder / "instances.json", instances)
    write_images(fx)
    return fx
