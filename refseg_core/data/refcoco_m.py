"""RefCOCO-M (Hugging Face ``moondream/refcoco-m``, MIT): RefCOCO (unc) val re-segmented, in the REFER layout.

A different benchmark from RefCOCO val (47 % of the original masks were dropped as unrecoverable and
harmful samples removed; 1,190 images, 2,080 masks, 5,598 expressions per its card): every number
measured on it is labelled RefCOCO-M. The parquet holds one row per image::

    image: struct<bytes: binary, path: string>  (the photo, embedded)   image_id: int64   file_name: string
    samples: list<struct<id, image_id, category, supercategory, label, sentences: list<string>,
                         bbox: list<double> (x, y, w, h), mask: struct<counts: string (compressed RLE),
                         size: list<int64> (h, w)>>>

Written as ``<root>/refcoco_m/refs(unc).p`` (one ref per sample, split ``val``; ``ref_id`` and ``ann_id``
are the sample's ``id``; ``raw`` is the sentence as given, ``tokens`` its words and ``sent`` them joined,
lower-cased, as REFER's ``sent``), ``instances.json`` (one annotation per sample whose ``segmentation`` is
the mask exactly as given, a compressed RLE; category ids by COCO name) and the photos under
``<root>/refcoco_m/images/<file_name>``, byte for byte (they need no COCO download; ``Refer`` looks there
for this dataset). Each photo must decode at the size of its masks.
"""

from __future__ import annotations

import io as _io
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from refseg_core.data import coco_categories, hf, layout
from refseg_core.data.errors import DataError
from refseg_core.io import atomic_path
from refseg_core.words import split_words

DATASET, SPLIT_BY, SPLIT = "refcoco_m", "unc", "val"
IMAGES = "images"  # inside <root>/refcoco_m/
COLUMNS = ("image", "image_id", "file_name", "samples")


def _rows(path: Path, where: str):
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError("reading parquet needs pyarrow: pip install 'refseg_core[data]'") from exc
    try:
        pf = pq.ParquetFile(path)
        missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
        if missing:
            raise DataError(f"{where} lacks the columns {missing} of moondream/refcoco-m")
        for batch in pf.iter_batches(batch_size=32, columns=list(COLUMNS)):
            yield from batch.to_pylist()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{where}: unreadable parquet ({type(exc).__name__}: {exc})") from exc


def _image_size(data: bytes, where: str) -> tuple[int, int]:
    try:
        with Image.open(_io.BytesIO(data)) as im:
            im.load()
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: the embedded image does not decode ({exc})") from exc


def _sentence(text: str, sent_id: int) -> dict:
    tokens = [t for t in split_words(text) if t.isalnum()]
    return {"raw": text, "sent": " ".join(tokens), "sent_id": sent_id, "tokens": tokens}


def convert(paths: list[Path], folder: Path, names: dict[Path, str]) -> tuple[list, dict]:
    """Write the photos of the parquet ``paths`` into ``folder/images`` and return ``(refs, instances)``."""
    cat_ids = coco_categories.id_by_name()
    categories = coco_categories.categories()
    images, anns, refs, seen = [], [], [], set()
    sent_id = 0
    for path in paths:
        where = names.get(path, str(path))
        for row in _rows(path, where):
            iid, fname = row["image_id"], row["file_name"]
            at = f"{where}, image {iid}"
            if not fname or Path(fname).name != fname:
                raise DataError(f"{at}: file_name {fname!r} is not a plain file name")
            data = (row["image"] or {}).get("bytes")
            if not data:
                raise DataError(f"{at}: no embedded image bytes")
            w, h = _image_size(data, at)
            with atomic_path(folder / IMAGES / fname) as tmp:
                tmp.write_bytes(data)
            images.append({"id": iid, "file_name": fname, "width": w, "height": h})
            for s in row["samples"] or []:
                sid = s["id"]
                if sid in seen:
                    raise DataError(f"{at}: sample id {sid} appears twice")
                seen.add(sid)
                if s.get("image_id") not in (None, iid):
                    raise DataError(f"{at}: sample {sid} says image {s['image_id']}")
                m = s["mask"] or {}
                if list(m.get("size") or []) != [h, w]:
                    raise DataError(
                        f"{at}: sample {sid}'s mask is {m.get('size')} (h, w) but the image is {[h, w]}"
                    )
                rle = {"size": [h, w], "counts": m["counts"]}
                name = s.get("category")
                if name not in cat_ids:
                    cat_ids[name] = 1000 + len(cat_ids)
                    categories.append(
                        {"supercategory": s.get("supercategory"), "id": cat_ids[name], "name": name}
                    )
                anns.append(
                    {
                        "id": sid,
                        "image_id": iid,
                        "category_id": cat_ids[name],
                        "segmentation": rle,
                        "area": int(mask_utils.area({**rle, "counts": rle["counts"].encode("ascii")})),
                        "bbox": list(s.get("bbox") or []),
                        "iscrowd": 0,
                    }
                )
                sents = [_sentence(t, sent_id + i) for i, t in enumerate(s.get("sentences") or [])]
                sent_id += len(sents)
                refs.append(
                    {
                        "ref_id": sid,
                        "ann_id": sid,
                        "category_id": cat_ids[name],
                        "image_id": iid,
                        "file_name": fname,
                        "split": SPLIT,
                        "sent_ids": [x["sent_id"] for x in sents],
                        "sentences": sents,
                    }
                )
    return refs, {"images": images, "annotations": anns, "categories": categories}


def fetch_into(folder: Path, entry: dict, cache_dir=None) -> dict:
    """Download the parquet shards of ``entry`` (an ``hf_refcoco_m`` source) and write the layout."""
    got = hf.download_entry(entry, "the {key} shards", cache_dir)
    paths = [p for key in entry["files"] for p in got.paths[key]]
    refs, instances = convert(paths, folder, got.names)
    layout.write_dataset(folder, SPLIT_BY, refs, instances)
    return got.record


def pair_with_refcoco(m, coco, split: str = "val") -> list[tuple[dict, dict, float]]:
    """Each RefCOCO-M ref with the RefCOCO ref of the same image whose mask overlaps it most, and the IoU
    of the two masks: ``[(refcoco_m ref, refcoco ref, iou)]`` for pairs that overlap at all.

    ``m`` and ``coco`` are :class:`~refseg_core.data.refer.Refer` of ``refcoco_m`` and ``refcoco`` (unc).
    RefCOCO-M's sample ids are not assumed to be RefCOCO's ids: objects are matched by image and mask.
    """
    import numpy as np

    by_image: dict[int, list[dict]] = {}
    for r in coco.split_refs(split):
        by_image.setdefault(int(r["image_id"]), []).append(r)
    pairs = []
    for r in m.refs:
        cands = by_image.get(int(r["image_id"]), [])
        if not cands:
            continue
        a = m.ref_mask(r).astype(bool)
        best, best_iou = None, 0.0
        for c in cands:
            b = coco.ref_mask(c).astype(bool)
            if b.shape != a.shape:
                continue
            union = np.logical_or(a, b).sum()
            iou = float(np.logical_and(a, b).sum() / union) if union else 0.0
            if iou > best_iou:
                best, best_iou = c, iou
        if best is not None:
            pairs.append((r, best, best_iou))
    return pairs


__all__ = ["DATASET", "IMAGES", "convert", "fetch_into", "pair_with_refcoco"]
