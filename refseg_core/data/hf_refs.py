"""RefCOCO / RefCOCO+ / RefCOCOg from their Hugging Face parquet copies, rebuilt in the REFER layout.

The copies (``jxu124/refcoco``, ``jxu124/refcocoplus``, ``jxu124/refcocog``) hold one row per ref, one
parquet split per REFER split (for refcoco and refcoco+ the Hub's ``test`` is REFER's testA; refcocog is
the umd split). The columns used (the others - ``raw_sentences``, ``bbox``, ``captions``,
``image_path``, ``global_image_id``, ``anns_id`` - are derived and not needed)::

    ref_id, ann_id, image_id, category_id: int64     split: string        file_name: string
    sent_ids: list<int64>                            sentences: list<struct<raw, sent, sent_id, tokens>>
    raw_anns: string (JSON: the COCO annotation, polygons or crowd RLE)  raw_image_info: string (JSON)

From them: ``refs(<split_by>).p`` (a ref is ``{ref_id, ann_id, category_id, image_id, file_name, split,
sent_ids, sentences}``, sorted by ``ref_id``) and ``instances.json`` (the referred annotations and their
images, as recorded, and the 80 COCO categories). As the REFER format (lichengunc/refer ``refer.py``)
needs; unlike the released ``instances.json``, the COCO objects that no ref names are absent.

Checked while converting, each failure one sentence naming the file and ref: the columns exist; a row's
``split`` agrees with the parquet split it is in; ``sent_ids`` are the sentences' ids; the annotation and
image records carry the row's ids; a ref id, annotation id or image id never comes back different.
"""

from __future__ import annotations

import json
from pathlib import Path

from refseg_core.data import coco_categories, hf, layout
from refseg_core.data.errors import DataError

COLUMNS = (
    "ref_id",
    "ann_id",
    "image_id",
    "category_id",
    "split",
    "sent_ids",
    "sentences",
    "file_name",
    "raw_anns",
    "raw_image_info",
)
SENTENCE_KEYS = ("raw", "sent", "sent_id", "tokens")


def _read_rows(path: Path, where: str) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # the optional extra
        raise DataError("reading parquet needs pyarrow: pip install 'refseg_core[data]'") from exc
    try:
        schema = pq.read_schema(path)
        missing = [c for c in COLUMNS if c not in schema.names]
        if missing:
            raise DataError(f"{where} lacks the columns {missing} of a REFER parquet copy")
        return pq.read_table(path, columns=list(COLUMNS)).to_pylist()
    except DataError:
        raise
    except Exception as exc:  # ArrowInvalid, OSError of a truncated file, ...
        raise DataError(f"{where}: unreadable parquet ({type(exc).__name__}: {exc})") from exc


def _json(text, what: str, where: str):
    if isinstance(text, (dict, list)):
        return text
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {what} is not JSON ({exc})") from exc


def _ref_of(row: dict, split: str, hf_split: str, where: str) -> tuple[dict, dict, dict]:
    rid = row["ref_id"]
    at = f"{where}, ref {rid}"
    if row["split"] not in (split, hf_split):
        raise DataError(
            f"{at}: its split column says {row['split']!r} but the file is the {hf_split!r} split "
            f"(REFER {split!r}); the copy is inconsistent"
        )
    sentences = []
    for s in row["sentences"] or []:
        if not isinstance(s, dict) or "sent_id" not in s:
            raise DataError(f"{at}: a sentence lacks sent_id ({s!r})")
        sentences.append({k: s[k] for k in SENTENCE_KEYS if k in s})
    if [s["sent_id"] for s in sentences] != list(row["sent_ids"] or []):
        raise DataError(f"{at}: sent_ids {row['sent_ids']} differ from its sentences' ids")
    ann = _json(row["raw_anns"], "raw_anns", at)
    if isinstance(ann, list) and len(ann) == 1:
        ann = ann[0]
    img = _json(row["raw_image_info"], "raw_image_info", at)
    if not isinstance(ann, dict) or ann.get("id") != row["ann_id"] or ann.get("image_id") != row["image_id"]:
        raise DataError(f"{at}: raw_anns is not annotation {row['ann_id']} of image {row['image_id']}")
    if not isinstance(img, dict) or img.get("id") != row["image_id"]:
        raise DataError(f"{at}: raw_image_info is not image {row['image_id']}")
    ref = {
        "ref_id": rid,
        "ann_id": row["ann_id"],
        "category_id": row["category_id"],
        "image_id": row["image_id"],
        "file_name": row["file_name"],
        "split": split,
        "sent_ids": list(row["sent_ids"]),
        "sentences": sentences,
    }
    return ref, ann, img


def convert(
    files: dict[str, list[Path]], splits: dict[str, str], names: dict[Path, str]
) -> tuple[list, dict]:
    """``(refs, instances)`` from parquet ``files`` per Hub split; ``splits`` maps a Hub split to its
    REFER split, ``names`` a path to how errors name it."""
    refs, anns, imgs = {}, {}, {}
    for hf_split, paths in files.items():
        for path in paths:
            where = names.get(path, str(path))
            for row in _read_rows(path, where):
                ref, ann, img = _ref_of(row, splits[hf_split], hf_split, where)
                for table, key, rec, what in (
                    (refs, ref["ref_id"], ref, "ref"),
                    (anns, ann["id"], ann, "annotation"),
                    (imgs, img["id"], img, "image"),
                ):
                    if key in table and table[key] != rec:
                        raise DataError(f"{where}: {what} {key} appears twice with different content")
                    table[key] = rec
    instances = {
        "images": [imgs[k] for k in sorted(imgs)],
        "annotations": [anns[k] for k in sorted(anns)],
        "categories": coco_categories.categories(),
    }
    return [refs[k] for k in sorted(refs)], instances


def fetch_into(folder: Path, entry: dict, cache_dir=None) -> dict:
    """Download the parquet files of ``entry`` (a ``hf_refs`` source) and write ``refs(<split_by>).p`` and
    ``instances.json`` into ``folder``; returns the source record for the manifest."""
    got = hf.download_entry(entry, "the {key} split", cache_dir)
    refs, instances = convert(got.paths, entry["splits"], got.names)
    layout.write_dataset(folder, entry["split_by"], refs, instances)
    return got.record


__all__ = ["COLUMNS", "convert", "fetch_into"]
