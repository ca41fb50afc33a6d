"""Explicit downloads for full-size runs: COCO train2014 images and the REFER annotation archives.

Nothing here runs at import time or in tests against the internet; the tests serve archives on
127.0.0.1. Every download is streamed to a ``.partial`` file, checked against its SHA-256 when one is
given, and only then renamed into place; archives are extracted into a temporary folder beside the
destination and moved into place member by member, so an interrupted run never leaves a half file
that looks finished.

The original REFER server (``bvisionweb1.cs.unc.edu``, named in lichengunc/refer's README) is down;
users rely on archived copies, whose address they pass as ``refer_base_url``. COCO's own server still
hosts train2014.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm  # plain text bars: no ipywidgets needed in notebooks

COCO_TRAIN2014_URL = "http://images.cocodataset.org/zips/train2014.zip"
# SHA-256 and size of COCO's train2014.zip as served by images.cocodataset.org (13,510,573,713 bytes); the
# same sum is published by torchvision's dataset code and reported by users who checked their copies.
COCO_TRAIN2014_SHA256 = "ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775"
# Known sums by archive name, used when the caller gives none. The REFER archives (refcoco.zip, ...)
# have no published checksum, and the mirrors that host them now may repackage them: those downloads
# cannot be verified, and prepare_refer_data says so.
KNOWN_SHA256 = {"train2014.zip": COCO_TRAIN2014_SHA256}
REFER_ORIGINAL_BASE_URL = "https://bvisionweb1.cs.unc.edu/licheng/referit/data"  # down; kept for reference
REFER_ARCHIVES = ("refcoco.zip", "refcoco+.zip", "refcocog.zip")


class DownloadError(RuntimeError):
    """A download or an archive failed; the message names the URL or the file."""


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(
    url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Stream ``url`` to ``dest``; verify ``sha256`` when given. Returns ``dest``.

    An existing ``dest`` with the right checksum is kept (no request is made). On any failure the
    partial file is removed and :class:`DownloadError` names the URL.
    """
    dest = Path(dest)
    if dest.exists() and sha256 and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(partial, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            got = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
            # http.client ends a cut-off body quietly (an empty read); the announced length is the check.
            if total is not None and got != total:
                raise DownloadError(
                    f"the transfer ended after {got} of the {total} bytes announced "
                    "(Content-Length); the connection was cut"
                )
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {exc}") from exc
    if sha256:
        got = sha256_of(partial)
        if got != sha256:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}")
    os.replace(partial, dest)
    return dest


def extract_zip(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> list[Path]:
    """Extract ``archive`` into ``dest_dir`` safely (no absolute paths or ``..``); returns the new paths."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive} is not a valid zip archive: {exc}") from exc
    with zf, tempfile.TemporaryDirectory(dir=dest_dir, prefix=".extract-") as tmp:
        for name in zf.namelist():
            target = (Path(tmp) / name).resolve()
            if (
                not str(target).startswith(str(Path(tmp).resolve()) + os.sep)
                and target != Path(tmp).resolve()
            ):
                raise DownloadError(f"{archive} contains an unsafe path {name!r}; refusing to extract")
        try:
            zf.extractall(tmp)
        except Exception as exc:
            raise DownloadError(f"{archive} could not be extracted: {exc}") from exc
        moved = []
        for src in sorted(Path(tmp).rglob("*")):
            if src.is_file():
                dst = dest_dir / src.relative_to(tmp)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                moved.append(dst)
    return moved


def download_and_extract(
    url: str,
    dest_dir: str | os.PathLike,
    sha256: str | None = None,
    keep_archive: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Download a zip archive from ``url`` and extract it into ``dest_dir``."""
    dest_dir = Path(dest_dir)
    archive = dest_dir / Path(urllib.request.urlparse(url).path).name
    download(url, archive, sha256=sha256, progress=progress)
    try:
        return extract_zip(archive, dest_dir)
    finally:
        if not keep_archive:
            archive.unlink(missing_ok=True)


def prepare_refer_data(
    data_root: str | os.PathLike,
    refer_base_url: str,
    datasets=REFER_ARCHIVES,
    coco_url: str | None = COCO_TRAIN2014_URL,
    checksums: dict | None = None,
    progress: bool = True,
) -> Path:
    """Lay out ``data_root`` as the REFER loader expects: ``<root>/<dataset>/refs(*).p``,
    ``instances.json`` and ``<root>/images/train2014/``.

    ``refer_base_url``: where the ``refcoco.zip``-style archives are served (an archived mirror).
    ``coco_url``: the COCO train2014 zip (13 GB), or None to skip the images.
    ``checksums``: optional ``{archive name: sha256}``; COCO's ``train2014.zip`` is checked against
    :data:`COCO_TRAIN2014_SHA256` unless given another sum. The REFER archives have no published sum:
    without ``checksums`` they are downloaded unverified, and a warning says so.
    """
    import warnings

    root = Path(data_root)
    checksums = {**KNOWN_SHA256, **(checksums or {})}
    unverified = [name for name in datasets if not checksums.get(name)]
    if unverified:
        warnings.warn(
            f"no SHA-256 is known for {', '.join(unverified)} (the REFER server is down and its "
            "archives were never published with checksums): they are downloaded unverified; pass "
            "checksums={name: sha256} to check your mirror's copies",
            stacklevel=2,
        )
    for name in datasets:
        download_and_extract(
            f"{refer_base_url.rstrip('/')}/{name}", root, checksums.get(name), progress=progress
        )
    if coco_url:
        images = root / "images"
        download_and_extract(coco_url, images, checksums.get(Path(coco_url).name), progress=progress)
        if not (images / "train2014").is_dir():
            raise DownloadError(f"{coco_url} did not contain a train2014/ folder")
    return root
