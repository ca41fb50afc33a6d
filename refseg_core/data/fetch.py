"""``fetch(dataset, root)``: real data in the REFER layout, downloaded, converted and verified in one call.

The function behind ``python -m refseg_core data fetch`` and what a chapter or a Colab cell calls::

    from refseg_core.data.fetch import fetch
    fetch("refcoco", "/content/data", images="val")      # annotations + the 1,500 val images

Datasets: ``refcoco``, ``refcoco+``, ``refcocog`` (umd from Hugging Face; umd and google from the
archive), ``grefcoco`` and ``refcoco_m`` (RefCOCO-M: its photos come with it). Sources are listed in
``sources.yaml`` (:mod:`refseg_core.data.sources`); ``source="hf"`` or ``"archive"`` picks one, else the
first listed is used. Steps:

1. **Annotations** (skipped, without a single request, when ``<root>/<dataset>/`` already holds what its
   manifest records): built in a staging folder by the source's module (``hf_refs``, ``archive_refs``,
   ``grefcoco``, ``refcoco_m``), verified there by content (:mod:`refseg_core.data.verify`), the
   manifest written, then renamed into place (:mod:`refseg_core.data.layout`).
2. **Images** (``images``: ``"none"``, ``"all"`` or splits such as ``"val,testA"``): COCO train2014 per
   image or from the zip (:mod:`refseg_core.data.coco_images`); complete files are never fetched again.
   The manifest records which splits' images are in place.

Every failure is one :class:`~refseg_core.data.errors.DataError` sentence naming the culprit; an
unreachable source names the other sources to try; a full disk says so; nothing half-written is left
(an interrupted archive transfer is kept as ``.partial`` and resumed by the next call).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from refseg_core import paths
from refseg_core.data import (
    archive_refs,
    coco_images,
    grefcoco,
    hf_refs,
    layout,
    manifest,
    refcoco_m,
    sources,
    verify,
)
from refseg_core.data.errors import DataError, SourceUnreachable, disk_full_sentence
from refseg_core.data.refer import VALID_SPLITS_BY, Refer

DEFAULT_ROOT = "data"  # under the refseg home: where the shipped configurations' data_root points
IMAGE_ROUTES = ("per-image", "zip")


def default_root() -> Path:
    return Path(paths.under_home(DEFAULT_ROOT))


def parse_images(images) -> list[str] | None:
    """``"none"`` -> ``[]``, ``"all"`` -> ``None``, ``"val,testA"`` or a list -> the list."""
    if images is None or images == "all":
        return None
    if isinstance(images, str):
        images = [] if images in ("", "none") else [s.strip() for s in images.split(",") if s.strip()]
    return list(images)


def _tree(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != manifest.NAME
    )


def _build(built: Path, root: Path, entry: dict, keep_zip: bool, cache_dir, progress: bool) -> dict:
    kind = entry["kind"]
    if kind == "hf_refs":
        return hf_refs.fetch_into(built, entry, cache_dir)
    if kind == "archive":
        return archive_refs.fetch_into(built, entry, root / ".downloads", keep=keep_zip, progress=progress)
    if kind == "hf_files":
        return grefcoco.fetch_into(built, entry, cache_dir)
    if kind == "hf_refcoco_m":
        return refcoco_m.fetch_into(built, entry, cache_dir)
    raise DataError(f"sources.yaml: unknown source kind {kind!r}")


def present(root: Path, dataset: str, route: str | None) -> dict | None:
    """The manifest of ``root/<dataset>`` when its files are intact (and from ``route`` if given)."""
    folder = root / dataset
    man = manifest.read(folder) if folder.is_dir() else None
    if man is None or (route and man["source"].get("route") != route) or manifest.changed_files(folder, man):
        return None
    return man


def annotations(
    dataset, root: Path, source=None, *, overwrite=False, keep_zip=False, cache_dir=None, progress=True
):
    """Step 1: the dataset folder, fetched and verified unless intact already; returns its manifest."""
    data = sources.load()
    name, entry = sources.source_for(dataset, source, data)
    folder = root / dataset
    man = present(root, dataset, source)  # intact: nothing to fetch, with or without overwrite
    if man is not None:
        return man
    what = f"the {dataset} that {name} provides"
    layout.check_free(folder, overwrite, what)
    with layout.staging(root, dataset) as stage:
        built = stage / dataset
        built.mkdir()
        try:
            rec = _build(built, root, entry, keep_zip, cache_dir, progress)
        except SourceUnreachable as exc:
            others = sources.other_sources(dataset, name, data)
            hint = (
                f"other sources to try: {'; '.join(others)}" if others else "no other source is listed for it"
            )
            raise SourceUnreachable(f"{exc}; {hint}") from exc
        report = verify.verify_folder(stage, dataset, None if dataset == refcoco_m.DATASET else (), progress)
        own = refcoco_m.IMAGES if dataset == refcoco_m.DATASET else None
        man = {
            "dataset": dataset,
            "label": sources.label(dataset),
            "source": {
                "name": name,
                "kind": entry["kind"],
                "route": entry["route"],
                **rec,
                "verified_here": bool(entry.get("verified_here")),
                "licence": entry.get("licence"),
                "citation": entry.get("citation"),
                "overlay": sources.overlay_path(),
            },
            "files": manifest.file_records(built, _tree(built)),
            "counts": report.counts,
            "expected_from": report.expected_from,
            "warnings": report.warnings,
            "images": {"dir": f"{dataset}/{own}", "splits": "all", "count": report.images_checked}
            if own
            else {},
        }
        manifest.write(built, man)
        layout.commit(built, folder, overwrite, what)
    return manifest.read(folder)


def images_for(
    dataset,
    root: Path,
    man: dict,
    splits,
    *,
    route="per-image",
    keep_zip=False,
    overwrite=False,
    workers=8,
    progress=True,
) -> dict:
    """Step 2: the COCO images of ``splits`` (``None``: all); updates and returns the manifest."""
    if route not in IMAGE_ROUTES:
        raise DataError(f"--image-source must be one of {IMAGE_ROUTES}, got {route!r}")
    split_by = VALID_SPLITS_BY[dataset][0]  # unc, or umd for refcocog: the split_by of the papers' tables
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        refer = Refer(root, dataset, split_by)
    have = refer.splits()
    bad = [s for s in splits or [] if s not in have]
    if bad:
        raise DataError(
            f"--images names {bad}, not splits of {dataset} ({split_by}); its splits: {', '.join(have)}"
        )
    before = (man.get("images") or {}).get("splits") or []
    merged = None if splits is None or before == "all" else list(dict.fromkeys([*before, *splits]))
    items = coco_images.needed(refer, merged)
    todo = coco_images.needed(refer, splits)
    data = sources.load()
    if route == "zip":
        stats = coco_images.fetch_from_zip(
            todo,
            refer.image_dir,
            sources.coco("zip", data),
            root / ".downloads",
            keep=keep_zip,
            overwrite=overwrite,
            workers=workers,
            progress=progress,
        )
    else:
        stats = coco_images.fetch_per_image(
            todo,
            refer.image_dir,
            sources.coco("images", data)["url"],
            workers=workers,
            overwrite=overwrite,
            progress=progress,
        )
    man = {k: v for k, v in man.items() if k != "format"}
    man = dict(
        man,
        images={
            "dir": str(layout.IMAGE_DIR),
            "splits": "all" if merged is None else merged,
            "count": len(items),
            "route": route,
        },
    )
    manifest.write(root / dataset, man)
    return {**man, "fetched_images": stats}


def fetch(
    dataset: str,
    root: str | Path | None = None,
    source: str | None = None,
    images="none",
    *,
    image_source: str = "per-image",
    keep_zip: bool = False,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    workers: int = 8,
    progress: bool = True,
) -> dict:
    """Fetch ``dataset`` into ``root`` (default ``<refseg home>/data``, where the shipped configurations
    look) and verify it; returns the manifest (plus ``fetched_images`` when images were asked for).

    ``source``: ``"hf"`` / ``"archive"`` / ``None`` (the first listed). ``images``: ``"none"``,
    ``"all"`` or a list of splits (RefCOCO-M: its own photos always come with it). ``image_source``:
    ``"per-image"`` or ``"zip"``; ``keep_zip`` keeps the downloaded archives. ``overwrite`` replaces a
    dataset folder (or damaged images) that differ. ``cache_dir``: the ``huggingface_hub`` cache.
    """
    sources.check_dataset(dataset)
    if source is not None and source not in sources.ROUTES:
        raise DataError(f"--source must be one of {sources.ROUTES}, got {source!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    splits = parse_images(images)
    with disk_full_sentence(root):
        man = annotations(
            dataset,
            root,
            source,
            overwrite=overwrite,
            keep_zip=keep_zip,
            cache_dir=cache_dir,
            progress=progress,
        )
        if dataset != refcoco_m.DATASET and splits != []:
            man = images_for(
                dataset,
                root,
                man,
                splits,
                route=image_source,
                keep_zip=keep_zip,
                overwrite=overwrite,
                workers=workers,
                progress=progress,
            )
    return man


__all__ = ["default_root", "fetch", "parse_images"]
