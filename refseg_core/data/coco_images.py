"""COCO train2014 images for the chosen splits, fetched so that none is ever downloaded twice.

Two routes, both into ``<root>/images/train2014/<file_name>`` (the REFER layout):

* **per image** (default): ``http://images.cocodataset.org/train2014/<file_name>`` (the ``coco_url`` of
  COCO's own annotations), a bounded thread pool, retries with exponential back-off on connection errors,
  5xx and cut transfers. RefCOCO val + testA + testB need 3,000 images, about 0.5 GB.
* **the zip** (13,510,573,713 bytes, SHA-256 in ``sources.yaml``) downloaded with HTTP ``Range`` resume,
  only the needed members extracted, the zip kept or removed as asked.

Resume is by content: an image already in place that decodes at the width and height ``instances.json``
records is complete and never requested again, so a rerun with everything present makes no request. An
image is written to a temporary name and renamed into place only once it decodes at its recorded size.
A file in place that fails that check did not come from here (ours are renamed only once checked): it is
an error naming it, replaced only with ``overwrite``. No per-image sums are published, so decoding at the
recorded size is the check.
"""

from __future__ import annotations

import http.client
import io as _io
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from refseg_core.data.download import download
from refseg_core.data.errors import DataError, SourceUnreachable, is_disk_full
from refseg_core.io import atomic_path

RETRIES = 4  # more tries per image after the first
BACKOFF_S = 1.0  # the wait before the first retry; doubled before each next one


def needed(refer, splits: list[str] | None) -> list[dict]:
    """The image records (``file_name``, ``width``, ``height``) of the refs of ``splits`` (all: None)."""
    ids = dict.fromkeys(r["image_id"] for s in (splits or [None]) for r in refer.split_refs(s))
    return [refer.images[int(i)] for i in ids]


def problem(data_or_path, width: int, height: int) -> str | None:
    """Why an image (bytes or a path) is not a complete image of ``width`` x ``height``; None when it is."""
    src = _io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    try:
        with Image.open(src) as im:
            im.load()  # decodes every pixel: a truncated file fails here
            size = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"does not decode ({exc})"
    if size != (int(width), int(height)):
        return f"is {size[0]}x{size[1]} (WxH) but instances.json records {width}x{height}"
    return None


def _scan(items: list[dict], image_dir: Path, workers: int, progress: bool) -> tuple[list[dict], list[tuple]]:
    """``(missing, bad)``: items without a file, and ``(item, reason)`` for files in place that fail."""

    def one(it):
        p = image_dir / it["file_name"]
        return None if not p.is_file() else problem(p, it["width"], it["height"]) or ""

    with ThreadPoolExecutor(max(1, workers)) as pool:
        found = list(
            tqdm(
                pool.map(one, items),
                total=len(items),
                desc="checking images",
                unit="img",
                disable=not progress,
            )
        )
    missing = [it for it, f in zip(items, found) if f is None]
    bad = [(it, f) for it, f in zip(items, found) if f]
    return missing, bad


def _refuse_bad(bad: list[tuple], image_dir: Path, overwrite: bool) -> list[dict]:
    if bad and not overwrite:
        it, why = bad[0]
        others = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(
            f"{image_dir / it['file_name']} is present but {why}{others}; remove it to fetch it again, or "
            "pass --overwrite"
        )
    return [it for it, _ in bad]


def _fetch_one(url: str, it: dict, dest: Path, retries: int, backoff: float, timeout: float) -> str | None:
    """Download one image with retries; None on success, else the last reason."""
    reason = "not tried"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data = resp.read()
                length = resp.headers.get("Content-Length")
            if length is not None and len(data) != int(length):
                reason = f"the transfer ended after {len(data)} of {length} bytes"
                continue
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
            if exc.code in (404, 410, 403):
                return reason  # not there: retrying will not help
            continue
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
            continue
        reason = problem(data, it["width"], it["height"])
        if reason is None:
            with atomic_path(dest) as tmp:
                tmp.write_bytes(data)
            return None
        reason = f"the image {reason}"
    return reason


def fetch_per_image(
    items: list[dict],
    image_dir: Path,
    url_template: str,
    *,
    workers: int = 8,
    retries: int | None = None,
    backoff: float | None = None,
    timeout: float = 60.0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Fetch the images of ``items`` not yet complete in ``image_dir``; returns ``{present, fetched}``.
    ``retries`` (default :data:`RETRIES`) more tries per image, waiting ``backoff`` (default
    :data:`BACKOFF_S`) seconds, then twice that, and so on."""
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF_S if backoff is None else backoff
    missing, bad = _scan(items, image_dir, workers, progress)
    todo = missing + _refuse_bad(bad, image_dir, overwrite)
    if not todo:
        return {"present": len(items), "fetched": 0}
    image_dir.mkdir(parents=True, exist_ok=True)

    def one(it):
        url = url_template.format(file_name=it["file_name"])
        try:
            return url, _fetch_one(url, it, image_dir / it["file_name"], retries, backoff, timeout)
        except OSError as exc:
            if is_disk_full(exc):
                raise
            return url, str(exc)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(
            tqdm(pool.map(one, todo), total=len(todo), desc="COCO images", unit="img", disable=not progress)
        )
    failed = [(u, r) for u, r in results if r is not None]
    if failed:
        url, why = failed[0]
        kept = len(todo) - len(failed)
        cls = SourceUnreachable if len(failed) == len(todo) else DataError
        raise cls(
            f"{len(failed)} of {len(todo)} images could not be fetched (first: {url}: {why}); the {kept} "
            "fetched are kept: run the same command again to resume, or try --image-source zip"
        )
    return {"present": len(items) - len(todo), "fetched": len(todo)}


def fetch_from_zip(
    items: list[dict],
    image_dir: Path,
    entry: dict,
    downloads: Path,
    *,
    keep: bool = False,
    overwrite: bool = False,
    workers: int = 8,
    progress: bool = True,
) -> dict:
    """Extract the images of ``items`` not yet complete from COCO's train2014.zip (downloaded with
    resume into ``downloads`` when needed); returns ``{present, fetched}``."""
    missing, bad = _scan(items, image_dir, workers, progress)
    todo = missing + _refuse_bad(bad, image_dir, overwrite)
    if not todo:
        return {"present": len(items), "fetched": 0}
    archive = downloads / "train2014.zip"
    download(
        entry["url"],
        archive,
        sha256=entry.get("sha256"),
        size=entry.get("size"),
        resume=True,
        progress=progress,
    )
    try:
        with zipfile.ZipFile(archive) as zf:
            present = set(zf.namelist())
            for it in tqdm(todo, desc="extracting images", unit="img", disable=not progress):
                member = f"train2014/{it['file_name']}"
                if member not in present:
                    raise DataError(f"{archive} has no {member}; not COCO's train2014.zip")
                data = zf.read(member)
                why = problem(data, it["width"], it["height"])
                if why:
                    raise DataError(f"{archive}: {member} {why}")
                with atomic_path(image_dir / it["file_name"]) as tmp:
                    tmp.write_bytes(data)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive} is not a valid zip archive ({exc}); remove it and fetch again") from exc
    if not keep:
        archive.unlink(missing_ok=True)
    return {"present": len(items) - len(todo), "fetched": len(todo)}


__all__ = ["fetch_from_zip", "fetch_per_image", "needed", "problem"]
