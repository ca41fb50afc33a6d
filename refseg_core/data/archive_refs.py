"""RefCOCO / RefCOCO+ / RefCOCOg from the original REFER archives, as the Wayback Machine kept them.

``refcoco.zip`` holds ``refcoco/refs(unc).p``, ``refs(google).p`` and ``instances.json``; ``refcoco+.zip``
``refs(unc).p`` and ``instances.json``; ``refcocog.zip`` ``refs(umd).p``, ``refs(google).p`` and
``instances.json`` (lichengunc/refer README; the only source of the google splits). The archive is
downloaded to ``<root>/.downloads/`` (resumable: an interrupted transfer is continued with an HTTP
``Range`` request by the next run), checked against the size and SHA-256 prefix in ``sources.yaml``
(reported by one third party: a mismatch is an error that says so), and its members are extracted into
the dataset folder under their released names.
"""

from __future__ import annotations

import shutil
import urllib.parse
import zipfile
from pathlib import Path

from refseg_core.data.download import DownloadError, TransferFailed, download, sha256_of
from refseg_core.data.errors import DataError
from refseg_core.io import atomic_path


def archive_path(downloads: Path, url: str) -> Path:
    return downloads / Path(urllib.parse.urlparse(url).path).name


def extract_members(archive: Path, members: list[str], folder: Path) -> list[str]:
    """Write each of ``members`` of ``archive`` to ``folder/<its base name>``; returns the names written."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DownloadError(
            f"{archive} is not a valid zip archive ({exc}); remove it and fetch again"
        ) from exc
    with zf:
        present = set(zf.namelist())
        missing = [m for m in members if m not in present]
        if missing:
            raise DataError(
                f"{archive} lacks {missing}; it holds {sorted(present)[:10]}: not the REFER release's archive"
            )
        written = []
        for m in members:
            name = Path(m).name
            try:
                with zf.open(m) as src, atomic_path(folder / name) as tmp, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, EOFError) as exc:  # a CRC error: the archive is corrupt
                raise DownloadError(
                    f"{archive}: member {m} is corrupt ({exc}); remove it and fetch again"
                ) from exc
            written.append(name)
    return written


def _wayback_timestamp(url: str) -> str:
    """``20220413011718`` of ``https://web.archive.org/web/20220413011718id_/...``; else ``as served``."""
    if "/web/" not in url:
        return "as served"
    return "wayback " + url.split("/web/", 1)[1].split("/", 1)[0].removesuffix("id_")


def fetch_into(folder: Path, entry: dict, downloads: Path, keep: bool = False, progress: bool = True) -> dict:
    """Download the archive of ``entry`` (an ``archive`` source), verify it and extract its members into
    ``folder``; returns the source record for the manifest."""
    url = entry["url"]
    archive = archive_path(downloads, url)
    try:
        download(
            url,
            archive,
            size=entry.get("size"),
            sha256=entry.get("sha256"),
            sha256_prefix=entry.get("sha256_prefix"),
            resume=True,
            progress=progress,
        )
    except TransferFailed:
        raise
    except DownloadError as exc:
        if entry.get("verified_here"):
            raise
        raise DownloadError(
            f"{exc} (the expected size and sum are reported by one third party and were not verified here; "
            "if you trust this copy, set them in a REFSEG_DATA_SOURCES overlay of sources.yaml)"
        ) from exc
    sha = sha256_of(archive)
    record = {archive.name: {"sha256": sha, "size": archive.stat().st_size}}
    extract_members(archive, entry["members"], folder)
    if not keep:
        archive.unlink(missing_ok=True)
    return {
        "address": url,
        "revision": _wayback_timestamp(url),
        "resolved_revision": sha,
        "downloaded": record,
    }


__all__ = ["archive_path", "extract_members", "fetch_into"]
