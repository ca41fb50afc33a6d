"""The embedded synthetic dataset, written in exactly the REFER / G-REFER on-disk formats.

Over 350 lines on purpose: the writer of every on-disk form (COCO, REFER pickle, G-REFER JSON, manifest)
and its CLI stay with the format rules they must obey.

``generate(out, flavour)`` renders coloured shapes (``synthetic_scenes``), describes them with
referring expressions checked for uniqueness (``synthetic_language``) and writes::

    <out>/images/train2014/COCO_train2014_%012d.jpg      JPEG, quality 95, sizes vary, not square
    <out>/<dataset>/instances.json                        COCO: images, annotations, categories
    <out>/<dataset>/refs(unc).p                           refcoco / refcoco+: pickle (protocol 2)
    <out>/grefcoco/grefs(unc).json                        grefcoco: JSON, ann_id / category_id lists
    <out>/<dataset>/synthetic.json                        manifest, written last

Format choices (checked against lichengunc/refer ``refer.py`` and henghuiding/gRefCOCO ``grefer.py``):
- Only the annotation forms the real files use (as ReLA's ``gres_model/data/datasets/grefer.py`` reads
  them): every object is non-crowd (``iscrowd`` 0) and its ``segmentation`` is a list of flat polygons, like COCO's: the shape's outline,
  or, for an object partly hidden by another, one polygon per visible part traced from its mask (several
  parts when an occluder cuts it in two). A hole (a ring's, or an occluder inside an object) is cut open
  with a zero-width slit, as COCO annotators do, since a polygon list cannot express one. Real crowd
  regions (a bare RLE dict with uncompressed list ``counts``) are never referred to and none is written;
  the loader tests cover them with fixtures. Version 1 wrote some objects as a list holding one compressed
  RLE, a form no real file has and on which ReLA's loaders drop or fail.
- A ref's ``file_name`` carries an extra ``_<ann_id>`` suffix like the REFER release's
  (``COCO_train2014_000000581857_16.jpg``); REFER never reads it (images come from
  ``instances.json``), so neither should a loader.
- G-REFER: ``ann_id`` and ``category_id`` are always lists (one category per annotation); a no-target
  ref has ``ann_id == [-1]`` and ``category_id == [-1]`` (the -1 for the category is our choice; the
  public grefer.py only tests ``ann_id == [-1]``). Every ref carries the boolean ``no_target`` of the real
  ``grefs(unc).json`` (True exactly when ``ann_id == [-1]``).

Image ids: each flavour owns a disjoint id range (refcoco 1,000,001+, refcoco+ 2,000,001+,
grefcoco 3,000,001+), so flavours share ``images/train2014`` without ever overwriting each other.
Scenes depend only on (seed, flavour, image index), never on the number of workers.
Splits are by image: 70 % train, 10 % val, 10 % testA, 10 % testB (testA and testB are simply
disjoint random image sets; they carry no people/objects meaning).
G-REFER ref mix (targets per ref, drawn per ref slot): ~60 % one object, ~30 % several, ~10 % none
(gRefCOCO has about 29 % multi-target and 11 % no-target expressions); measured counts are in the
manifest.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from refseg_core.words import split_words

from . import synthetic_language as lang
from . import synthetic_scenes as scenes

VERSION = 2  # 2: only polygon segmentations (no RLE), G-REFER refs carry no_target
DATASET_NAME = {"refcoco": "refcoco", "refcoco+": "refcoco+", "grefcoco": "grefcoco"}
ID_BASE = {"refcoco": 1_000_000, "refcoco+": 2_000_000, "grefcoco": 3_000_000}
MAX_IMAGES = 999_999
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "testA": 0.1, "testB": 0.1}
GREF_MIX = {"single": 0.6, "multi": 0.3, "none": 0.1}
IMAGE_DIR = Path("images") / "train2014"


def image_file_name(image_id: int) -> str:
    return "COCO_train2014_%012d.jpg" % image_id


def ref_file_name(dataset: str) -> str:
    return "grefs(unc).json" if dataset == "grefcoco" else "refs(unc).p"


def _check_args(flavour, seed, num_images, image_size, num_workers):
    if flavour not in DATASET_NAME:
        raise ValueError(f"flavour must be one of {sorted(DATASET_NAME)}, got {flavour!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(num_images, (int, np.integer)) or not 4 <= num_images <= MAX_IMAGES:
        raise ValueError(
            f"num_images must be an int in [4, {MAX_IMAGES}] (one image per split at least), "
            f"got {num_images!r}"
        )
    if not isinstance(image_size, (int, np.integer)) or not 48 <= image_size <= 2048:
        raise ValueError(f"image_size must be an int in [48, 2048], got {image_size!r}")
    if not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")


def split_of_images(seed: int, num_images: int) -> list[str]:
    """Split name of each image index: a seeded permutation cut 70/10/10/10 (val/testA/testB >= 1)."""
    n_small = max(1, round(SPLIT_FRACTIONS["val"] * num_images))
    order = np.random.default_rng([seed, 7919]).permutation(num_images)
    out = ["train"] * num_images
    for k, name in enumerate(("val", "testA", "testB")):
        for idx in order[k * n_small : (k + 1) * n_small]:
            out[int(idx)] = name
    return out


# ------------------------------------------------------------------------------------------ one image
def plan_image(seed: int, flavour: str, index: int, image_size: int) -> dict:
    """Scene, annotations and refs (without global ids) of image ``index``; pure function of its args.

    Returns ``{"w", "h", "objs", "full", "seg": [segmentation per object], "refs": [{"targets":
    [object indices], "sentences": [(text, form)]}], "rng_render": Generator}``.
    """
    fl = list(DATASET_NAME).index(flavour)
    rng = np.random.default_rng([seed, fl, index, 1])
    w = int(round(image_size * rng.uniform(0.75, 1.25)))
    h = int(round(image_size * rng.uniform(0.75, 1.25)))
    objs, full = scenes.make_scene(rng, w, h)
    vis = scenes.visible_masks(full)
    seg = []
    for o, f, v in zip(objs, full, vis):
        if o.shape != "ring":
            rng.random()  # version 1 drew polygon-or-RLE here; drawing still keeps its scenes and refs
        occluded = bool((f & ~v).any())
        seg.append(scenes.mask_polygons(v) if occluded else scenes.shape_polygons(o))
    refs = []
    for i in range(len(objs)):
        kind = "single"
        if flavour == "grefcoco":
            kind = str(rng.choice(list(GREF_MIX), p=list(GREF_MIX.values())))
        if kind == "multi":
            groups = lang.plural_forms(objs, full, w, h)
            used = {tuple(r["targets"]) for r in refs}
            groups = [g for g in groups if tuple(sorted(g[0])) not in used]
            if groups:
                targets = sorted(groups[int(rng.integers(len(groups)))][0])
                forms = [f for s, f in lang.plural_forms(objs, full, w, h) if sorted(s) == targets]
                sents = _distinct_sentences(rng, forms)
                refs.append({"targets": targets, "sentences": sents})
                continue
        if kind == "none":
            forms = lang.no_target_forms(rng, objs)
            if forms:
                chosen = [forms[int(k)] for k in rng.permutation(len(forms))[: int(rng.integers(1, 3))]]
                refs.append({"targets": [], "sentences": _distinct_sentences(rng, chosen)})
                continue
        cands = lang.candidate_forms(i, objs, full, w, h, flavour)
        sents = lang.pick_sentences(rng, cands, flavour)
        if sents:
            refs.append({"targets": [i], "sentences": sents})
    return {
        "w": w,
        "h": h,
        "objs": objs,
        "full": full,
        "seg": seg,
        "refs": refs,
        "rng_render": np.random.default_rng([seed, fl, index, 2]),
    }


def _distinct_sentences(rng, forms: list[dict]) -> list[tuple[str, dict]]:
    n = int(rng.integers(1, 4))
    out, seen = [], set()
    for _ in range(4 * n):
        if len(out) == n:
            break
        f = forms[int(rng.integers(len(forms)))]
        text = lang.realise(rng, f)
        if text not in seen:
            seen.add(text)
            out.append((text, f))
    return out


def _sentence_record(rng, text: str) -> dict:
    """REFER sentence fields: ``raw`` as typed (sometimes capitalised / with a period), ``sent``
    lower-cased without punctuation, ``tokens`` its words."""
    raw = text
    if rng.random() < 0.3:
        raw = raw[0].upper() + raw[1:]
    if rng.random() < 0.15:
        raw = raw + "."
    tokens = [t for t in split_words(raw) if t.isalnum()]
    return {"raw": raw, "sent": " ".join(tokens), "tokens": tokens}


def _make_image(job):
    """Worker: plan, render and save one image; returns its annotation material (picklable)."""
    seed, flavour, index, image_size, img_dir = job
    plan = plan_image(seed, flavour, index, image_size)
    w, h = plan["w"], plan["h"]
    # Paint each object with its *annotated* mask so pixels and annotations agree.
    paint = [scenes.raster(seg, h, w) for seg in plan["seg"]]
    img = scenes.render(plan["rng_render"], plan["objs"], paint, w, h)
    image_id = ID_BASE[flavour] + index + 1
    path = os.path.join(img_dir, image_file_name(image_id))
    img.save(path, format="JPEG", quality=95)
    anns = []
    for o, seg in zip(plan["objs"], plan["seg"]):
        merged = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        anns.append(
            {
                "category_id": o.category_id,
                "segmentation": seg,
                "area": float(mask_utils.area(merged)),
                "bbox": [round(float(v), 2) for v in mask_utils.toBbox(merged)],
                "iscrowd": 0,
            }
        )
    srng = np.random.default_rng([seed, index, 3])
    refs = [
        {"targets": r["targets"], "sentences": [_sentence_record(srng, t) for t, _ in r["sentences"]]}
        for r in plan["refs"]
    ]
    return {
        "image": {"id": image_id, "file_name": image_file_name(image_id), "height": h, "width": w},
        "anns": anns,
        "refs": refs,
    }


# ------------------------------------------------------------------------------------------ writing
def _manifest_key(m: dict) -> tuple:
    return tuple(m.get(k) for k in ("flavour", "seed", "num_images", "image_size", "version"))


def read_manifest(dataset_dir: Path) -> dict | None:
    p = Path(dataset_dir) / "synthetic.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def generate(
    out_dir,
    flavour: str = "refcoco",
    seed: int = 0,
    num_images: int = 200,
    image_size: int = 160,
    num_workers: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a synthetic dataset under ``out_dir`` (the REFER ``data_root``); returns its manifest.

    Deterministic: the same arguments give byte-identical annotation files and images, for any
    ``num_workers`` (0 = in this process). Atomic: everything is built in a temporary directory inside
    ``out_dir`` and moved into place at the end; the dataset directory appears (with its manifest)
    only once complete. Refuses to replace an existing, different dataset of the same flavour unless
    ``overwrite=True``.
    """
    _check_args(flavour, seed, num_images, image_size, num_workers)
    out = Path(out_dir)
    dataset = DATASET_NAME[flavour]
    target = out / dataset
    manifest_wanted = {
        "flavour": flavour,
        "seed": int(seed),
        "num_images": int(num_images),
        "image_size": int(image_size),
        "version": VERSION,
    }
    if target.exists() and not overwrite:
        old = read_manifest(target)
        if old is None or _manifest_key(old) != _manifest_key(manifest_wanted):
            raise FileExistsError(
                f"{target} already holds a different dataset "
                f"({'no synthetic.json' if old is None else _manifest_key(old)}); "
                f"pass overwrite=True (CLI: --overwrite) to replace it"
            )
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".synth-{dataset}-", dir=out))
    try:
        img_tmp = tmp / IMAGE_DIR
        img_tmp.mkdir(parents=True)
        (tmp / dataset).mkdir()
        jobs = [(int(seed), flavour, i, int(image_size), str(img_tmp)) for i in range(num_images)]
        results = _run_jobs(jobs, num_workers, progress)
        manifest = _write_annotations(
            tmp / dataset, dataset, results, split_of_images(seed, num_images), manifest_wanted
        )
        _commit(tmp, out, dataset, flavour, num_images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**manifest, "data_root": str(out), "dataset": dataset}


def _run_jobs(jobs, num_workers, progress):
    if num_workers <= 0:
        it = map(_make_image, jobs)
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn" if os.name == "nt" else "fork").Pool(num_workers)
        it = pool.imap(_make_image, jobs, chunksize=max(1, min(64, len(jobs) // (8 * num_workers) or 1)))
    try:
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(jobs), desc="synth", unit="img")
        return list(it)
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def _write_annotations(ddir: Path, dataset: str, results, splits, manifest: dict) -> dict:
    images, annotations, refs = [], [], []
    ann_id = ID_BASE[DATASET_NAME[manifest["flavour"]]]
    ref_id = sent_id = 0
    per_split = {s: {"images": 0, "refs": 0, "sentences": 0} for s in SPLIT_FRACTIONS}
    n_multi = n_none = 0
    gref = dataset == "grefcoco"
    for res, split in zip(results, splits):
        img = res["image"]
        images.append(img)
        per_split[split]["images"] += 1
        ids = []
        for a in res["anns"]:
            ann_id += 1
            ids.append(ann_id)
            annotations.append({"id": ann_id, "image_id": img["id"], **a})
        for r in res["refs"]:
            t_ann = [ids[k] for k in r["targets"]]
            t_cat = [res["anns"][k]["category_id"] for k in r["targets"]]
            sents = []
            for s in r["sentences"]:
                sents.append({"tokens": s["tokens"], "raw": s["raw"], "sent_id": sent_id, "sent": s["sent"]})
                sent_id += 1
            suffix = t_ann[0] if t_ann else -1
            rec = {
                "sent_ids": [s["sent_id"] for s in sents],
                "file_name": img["file_name"][:-4] + f"_{suffix}.jpg",
                "ann_id": (t_ann or [-1]) if gref else t_ann[0],
                "ref_id": ref_id,
                "image_id": img["id"],
                "split": split,
                "sentences": sents,
                "category_id": (t_cat or [-1]) if gref else t_cat[0],
            }
            if gref:
                rec["no_target"] = not t_ann
            refs.append(rec)
            ref_id += 1
            per_split[split]["refs"] += 1
            per_split[split]["sentences"] += len(sents)
            n_multi += len(t_ann) > 1
            n_none += not t_ann
    instances = {"images": images, "annotations": annotations, "categories": scenes.categories()}
    (ddir / "instances.json").write_text(json.dumps(instances, separators=(",", ":")))
    rf = ddir / ref_file_name(dataset)
    if gref:
        rf.write_text(json.dumps(refs, separators=(",", ":")))
    else:
        with open(rf, "wb") as fh:
            pickle.dump(refs, fh, protocol=2)
    counts = {
        "images": len(images),
        "annotations": len(annotations),
        "refs": len(refs),
        "sentences": sent_id,
        "splits": per_split,
    }
    if gref:
        counts.update(multi_target_refs=int(n_multi), no_target_refs=int(n_none))
    manifest = {**manifest, "counts": counts}
    (ddir / "synthetic.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")  # last
    return manifest


def _commit(tmp: Path, out: Path, dataset: str, flavour: str, num_images: int) -> None:
    """Move a finished build into place: old dataset dir out first (its manifest goes with it, so a
    crash in between leaves *no* dataset rather than a mixed one), then images, then the new dir."""
    target = out / dataset
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".old-{dataset}-", dir=out))
        os.replace(target, trash / dataset)
        shutil.rmtree(trash, ignore_errors=True)
    img_dir = out / IMAGE_DIR
    img_dir.mkdir(parents=True, exist_ok=True)
    new_names = set()
    for f in sorted((tmp / IMAGE_DIR).iterdir()):
        os.replace(f, img_dir / f.name)
        new_names.add(f.name)
    # images of this flavour left over from a larger, replaced dataset
    lo, hi = ID_BASE[flavour], ID_BASE[flavour] + MAX_IMAGES
    for f in img_dir.glob("COCO_train2014_*.jpg"):
        try:
            iid = int(f.stem.rsplit("_", 1)[1])
        except ValueError:
            continue
        if lo < iid <= hi and f.name not in new_names:
            f.unlink()
    os.replace(tmp / dataset, target)


def ensure_synthetic(
    out_dir,
    flavour: str = "refcoco",
    seed: int = 0,
    num_images: int = 200,
    image_size: int = 160,
    num_workers: int = 0,
    regenerate: bool = False,
) -> Path:
    """Return the data_root ``out_dir``, generating the dataset when it is missing (or when its manifest
    matches but an image is missing: the same, deterministic data is written again).

    A dataset already there that differs from the arguments (another seed, size or image count, or
    one without a ``synthetic.json``, such as real data) is never replaced silently: that is a
    ``ValueError`` saying what is there, unless ``regenerate=True``.
    """
    _check_args(flavour, seed, num_images, image_size, num_workers)
    out = Path(out_dir)
    dataset = DATASET_NAME[flavour]
    m = read_manifest(out / dataset)
    want = {
        "flavour": flavour,
        "seed": seed,
        "num_images": num_images,
        "image_size": image_size,
        "version": VERSION,
    }
    first, last = (out / IMAGE_DIR / image_file_name(ID_BASE[flavour] + k) for k in (1, num_images))
    same = m is not None and _manifest_key(m) == _manifest_key(want)
    if (out / dataset).exists() and not same and not regenerate:
        there = (
            "a dataset without synthetic.json (real or unfinished data)"
            if m is None
            else f"synthetic {flavour} data with seed {m.get('seed')}, {m.get('num_images')} images of size "
            f"{m.get('image_size')} (version {m.get('version')})"
        )
        raise ValueError(
            f"data_root {str(out)!r} already holds {there}, not the seed {seed}, {num_images} images of size "
            f"{image_size} (version {VERSION}) asked for; it is not replaced silently: set the synthetic_* "
            f"parameters to match it, point data_root elsewhere, or replace it with python -m refseg_core "
            f"synth --out {out} --flavour {flavour} --seed {seed} --num-images {num_images} --image-size "
            f"{image_size} --overwrite"
        )
    if not same or not first.is_file() or not last.is_file():
        generate(out, flavour, seed, num_images, image_size, num_workers=num_workers, overwrite=True)
    return out
