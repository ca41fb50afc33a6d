"""The real sources' file forms, written from a REFER / G-REFER dataset on disk (the package's synthetic
data), for the stand-in server: the Hugging Face parquet copies of the refs (REFERENCE section 8
columns), the REFER zip archives, gRefCOCO's two files, RefCOCO-M's parquet, COCO's per-image and zip
addresses. Also :func:`serve`, which puts a whole dataset on a :class:`StandIn` and returns the overlay
of ``sources.yaml`` pointing the non-Hugging Face sources at it.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pycocotools import mask as mask_utils

from refseg_core.data.refer import Refer
from refseg_core.data.verify import counts_of

SENTENCE = pa.struct(
    [("raw", pa.string()), ("sent", pa.string()), ("sent_id", pa.int64()), ("tokens", pa.list_(pa.string()))]
)
REFS_SCHEMA = pa.schema(
    [
        ("ref_id", pa.int64()),
        ("ann_id", pa.int64()),
        ("image_id", pa.int64()),
        ("category_id", pa.int64()),
        ("split", pa.string()),
        ("sent_ids", pa.list_(pa.int64())),
        ("sentences", pa.list_(SENTENCE)),
        ("file_name", pa.string()),
        ("raw_anns", pa.string()),
        ("raw_image_info", pa.string()),
        ("raw_sentences", pa.string()),
        ("bbox", pa.list_(pa.float64())),
        ("captions", pa.list_(pa.string())),
        ("image_path", pa.string()),
        ("global_image_id", pa.string()),
        ("anns_id", pa.string()),
    ]
)
MASK = pa.struct([("counts", pa.string()), ("size", pa.list_(pa.int64()))])
SAMPLE = pa.struct(
    [
        ("id", pa.int64()),
        ("image_id", pa.int64()),
        ("category", pa.string()),
        ("supercategory", pa.string()),
        ("label", pa.string()),
        ("sentences", pa.list_(pa.string())),
        ("bbox", pa.list_(pa.float64())),
        ("mask", MASK),
    ]
)
REFCOCO_M_SCHEMA = pa.schema(
    [
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("image_id", pa.int64()),
        ("file_name", pa.string()),
        ("samples", pa.list_(SAMPLE)),
    ]
)
HF_SPLITS = {
    "refcoco": {"train": "train", "validation": "val", "test": "testA", "testB": "testB"},
    "refcocog": {"train": "train", "validation": "val", "test": "test"},
}


def parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return buf.getvalue()


def ref_rows(refer: Refer, split: str, hf_split: str | None = None) -> list[dict]:
    """One parquet row per ref of ``split``, in the column layout of the jxu124 copies."""
    rows = []
    for r in refer.split_refs(split):
        ann, img = refer.anns[r["ann_id"]], refer.images[r["image_id"]]
        rows.append(
            {
                "ref_id": r["ref_id"],
                "ann_id": r["ann_id"],
                "image_id": r["image_id"],
                "category_id": r["category_id"],
                "split": r["split"],
                "sent_ids": r["sent_ids"],
                "sentences": r["sentences"],
                "file_name": r["file_name"],
                "raw_anns": json.dumps(ann),
                "raw_image_info": json.dumps(img),
                "raw_sentences": json.dumps(r["sentences"]),
                "bbox": [float(v) for v in ann.get("bbox", [0, 0, 0, 0])],
                "captions": [s["sent"] for s in r["sentences"]],
                "image_path": f"coco/train2014/{img['file_name']}",
                "global_image_id": f"coco.{r['image_id']}",
                "anns_id": str(r["ann_id"]),
            }
        )
    return rows


def refs_repo(refer: Refer, hf_splits: dict[str, str], rows_hook=None) -> dict[str, bytes]:
    """``{repo file: parquet bytes}``, one file per Hub split (``data/<split>-00000-of-00001.parquet``)."""
    out = {}
    for hf_split, split in hf_splits.items():
        rows = ref_rows(refer, split)
        if rows_hook:
            rows = rows_hook(hf_split, rows)
        out[f"data/{hf_split}-00000-of-00001.parquet"] = parquet_bytes(rows, REFS_SCHEMA)
    out["README.md"] = b"---\nlicense: unknown\n---\n"
    return out


def refer_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def refcoco_m_rows(refer: Refer, split: str = "val") -> list[dict]:
    """RefCOCO-M's form: one row per image, its photo embedded, a sample per ref with a compressed RLE."""
    by_image: dict[int, list] = {}
    for r in refer.split_refs(split):
        by_image.setdefault(r["image_id"], []).append(r)
    rows = []
    for iid, refs in by_image.items():
        img = refer.images[iid]
        samples = []
        for r in refs:
            rle = mask_utils.encode(np.asfortranarray(refer.ref_mask(r)))
            samples.append(
                {
                    "id": r["ref_id"],
                    "image_id": iid,
                    "category": refer.cats.get(r["category_id"], "thing"),
                    "supercategory": "shape",
                    "label": refer.cats.get(r["category_id"], "thing"),
                    "sentences": [s["raw"] for s in r["sentences"]],
                    "bbox": [float(v) for v in refer.anns[r["ann_id"]].get("bbox", [0, 0, 1, 1])],
                    "mask": {"counts": rle["counts"].decode("ascii"), "size": [int(v) for v in rle["size"]]},
                }
            )
        data = (refer.image_dir / img["file_name"]).read_bytes()
        rows.append(
            {
                "image": {"bytes": data, "path": img["file_name"]},
                "image_id": iid,
                "file_name": img["file_name"],
                "samples": samples,
            }
        )
    return rows


def expected(refer: Refer) -> dict:
    return {refer.split_by: counts_of(refer)}


def derive_refcocog(syn_root: Path, out_root: Path) -> Path:
    """A RefCOCOg-shaped dataset (umd train / val / test, and a google copy) from synthetic refcoco."""
    refer = Refer(syn_root, "refcoco", "unc")
    folder = out_root / "refcocog"
    folder.mkdir(parents=True, exist_ok=True)
    refs = [
        dict(r, split={"testA": "test"}.get(r["split"], r["split"]))
        for r in refer.refs
        if r["split"] != "testB"
    ]
    for sb in ("umd", "google"):
        with open(folder / f"refs({sb}).p", "wb") as f:
            pickle.dump(refs, f, protocol=2)
    shutil.copyfile(syn_root / "refcoco" / "instances.json", folder / "instances.json")
    (out_root / "images").mkdir(exist_ok=True)
    if not (out_root / "images" / "train2014").exists():
        (out_root / "images" / "train2014").symlink_to(syn_root / "images" / "train2014")
    return out_root


def _serve_archive(stand, over: dict, name: str, folder: Path, members: dict[str, str]) -> None:
    zbytes = refer_zip({m: (folder / f).read_bytes() for m, f in members.items()})
    stand.files[f"/wayback/{folder.name}.zip"] = zbytes
    over["sources"][name] = {
        "url": f"{stand.url}/wayback/{folder.name}.zip",
        "size": len(zbytes),
        "sha256_prefix": hashlib.sha256(zbytes).hexdigest()[:8],
    }


def serve(stand, roots: dict[str, Path]) -> dict:
    """Serve synthetic data in every source form: ``roots`` maps ``refcoco`` (required), ``refcoco+``,
    ``grefcoco`` and ``refcocog`` (from :func:`derive_refcocog`) to their data roots. Returns the overlay
    of sources.yaml (addresses of the non-Hub sources, their sizes and sums, and the counts to expect)."""
    over = {"sources": {}, "expected_counts": {}}
    coco = Refer(roots["refcoco"], "refcoco", "unc")
    blobs: dict[str, bytes] = {}
    for ds, root in roots.items():
        r = Refer(root, ds, {"refcocog": "umd"}.get(ds, "unc"))
        for im in r.images.values():
            blobs[im["file_name"]] = (r.image_dir / im["file_name"]).read_bytes()
    for n, data in blobs.items():
        stand.files[f"/coco/train2014/{n}"] = data
    zdata = refer_zip({f"train2014/{n}": blobs[n] for n in sorted(blobs)})
    stand.files["/coco/zips/train2014.zip"] = zdata
    over["sources"]["coco-train2014-images"] = {"url": stand.url + "/coco/train2014/{file_name}"}
    over["sources"]["coco-train2014-zip"] = {
        "url": stand.url + "/coco/zips/train2014.zip",
        "size": len(zdata),
        "sha256": hashlib.sha256(zdata).hexdigest(),
    }
    f = roots["refcoco"] / "refcoco"
    stand.add_repo("jxu124/refcoco", refs_repo(coco, HF_SPLITS["refcoco"]))
    _serve_archive(
        stand,
        over,
        "archive-refcoco",
        f,
        {
            "refcoco/refs(unc).p": "refs(unc).p",
            "refcoco/refs(google).p": "refs(unc).p",
            "refcoco/instances.json": "instances.json",
        },
    )
    over["expected_counts"]["refcoco"] = expected(coco)
    stand.add_repo(
        "moondream/refcoco-m",
        {"data/val-00000-of-00001.parquet": parquet_bytes(refcoco_m_rows(coco), REFCOCO_M_SCHEMA)},
    )
    over["expected_counts"]["refcoco_m"] = {"unc": {"val": counts_of(coco)["val"]}}
    if "refcoco+" in roots:
        plus = Refer(roots["refcoco+"], "refcoco+", "unc")
        stand.add_repo("jxu124/refcocoplus", refs_repo(plus, HF_SPLITS["refcoco"]))
        f = roots["refcoco+"] / "refcoco+"
        _serve_archive(
            stand,
            over,
            "archive-refcocoplus",
            f,
            {"refcoco+/refs(unc).p": "refs(unc).p", "refcoco+/instances.json": "instances.json"},
        )
        over["expected_counts"]["refcoco+"] = expected(plus)
    if "refcocog" in roots:
        g = Refer(roots["refcocog"], "refcocog", "umd")
        stand.add_repo("jxu124/refcocog", refs_repo(g, HF_SPLITS["refcocog"]))
        f = roots["refcocog"] / "refcocog"
        _serve_archive(
            stand,
            over,
            "archive-refcocog",
            f,
            {
                "refcocog/refs(umd).p": "refs(umd).p",
                "refcocog/refs(google).p": "refs(google).p",
                "refcocog/instances.json": "instances.json",
            },
        )
        over["expected_counts"]["refcocog"] = expected(g)
    if "grefcoco" in roots:
        f = roots["grefcoco"] / "grefcoco"
        stand.add_repo(
            "FudanCVL/gRefCOCO",
            {
                "grefs(unc).json": (f / "grefs(unc).json").read_bytes(),
                "instances.json": (f / "instances.json").read_bytes(),
                "README.md": b"gRefCOCO",
            },
        )
    return over


def synthetic_roots(base: Path) -> dict[str, Path]:
    """Small synthetic refcoco, refcoco+ and grefcoco (20 images of 64 px) and the derived refcocog."""
    from refseg_core.data.synthetic import ensure_synthetic

    roots = {
        fl: Path(ensure_synthetic(base / fl, fl, seed=0, num_images=20, image_size=64))
        for fl in ("refcoco", "refcoco+", "grefcoco")
    }
    roots["refcocog"] = derive_refcocog(roots["refcoco"], base / "refcocog")
    return roots


def standin_env(stand, base: Path) -> dict:
    """Everything served; returns the environment that points ``data fetch`` at the stand-in."""
    over = serve(stand, synthetic_roots(base / "sources"))
    path = base / "sources_overlay.yaml"
    path.write_text(yaml.safe_dump(over))
    return {"HF_ENDPOINT": stand.url, "REFSEG_DATA_SOURCES": str(path), "HF_HOME": str(base / "hf_home")}
