"""HTTP downloads and zip extraction: the helpers under :mod:`refseg_core.data.fetch`.

``download`` streams one URL to a ``.partial`` file (resumable with HTTP ``Range`` when asked), checks
its size and SHA-256 (or a reported prefix of it) when known, and only then renames it into place;
``extract_zip`` extracts into a temporary folder beside the destination and moves the members into
place, refusing unsafe paths. Nothing here runs at import time or in tests against the internet; the
tests serve files on 127.0.0.1.

The one-command route to real data is ``python -m refseg_core data fetch`` (:func:`refseg_core.data.fetch.fetch`);
:func:`prepare_refer_data` remains for a user with their own mirror of the REFER archives
(``refer_base_url``). The original REFER server (``bvisionweb1.cs.unc.edu``) is down; its archives are
kept by the Wayback Machine (addresses in ``sources.yaml``). COCO's own server still hosts train2014.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm  # plain text bars: no ipywidgets needed in notebooks

from refseg_core.data import sources as _sources
from refseg_core.data.errors import DataError, SourceUnreachable, is_disk_full

# COCO's train2014.zip as served by images.cocodataset.org (13,510,573,713 bytes): its address and
# SHA-256 live in sources.yaml (the same sum is published by torchvision's dataset code and reported by
# users who checked their copies).
_COCO_ZIP = _sources.shipped()["sources"]["coco-train2014-zip"]
COCO_TRAIN2014_URL = _COCO_ZIP["url"]
COCO_TRAIN2014_SHA256 = _COCO_ZIP["sha256"]
# Known sums by archive name, used when the caller gives none. The REFER archives (refcoco.zip, ...)
# have no published checksum, and the mirrors that host them now may repackage them: those downloads
# cannot be verified, and prepare_refer_data says so.
KNOWN_SHA256 = {"train2014.zip": COCO_TRAIN2014_SHA256}
REFER_ORIGINAL_BASE_URL = "https://bvisionweb1.cs.unc.edu/licheng/referit/data"  # down; kept for reference
REFER_ARCHIVES = ("refcoco.zip", "refcoco+.zip", "refcocog.zip")


class DownloadError(DataError):
    """A download or an archive failed; the message names the URL or the file."""


class TransferFailed(DownloadError, SourceUnreachable):
    """The server did not answer, answered with an error, or the connection was cut."""


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_sum(url: str, path: Path, size: int | None, sha256: str | None, sha256_prefix: str | None) -> None:
    """Raise DownloadError (naming the URL, expected and found) when ``path`` differs from what is known."""
    got_size = path.stat().st_size
    if size is not None and got_size != size:
        raise DownloadError(f"size mismatch for {url}: expected {size:,} bytes, got {got_size:,}")
    if sha256 or sha256_prefix:
        got = sha256_of(path)
        if sha256 and got != sha256:
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}")
        if sha256_prefix and not got.startswith(sha256_prefix):
            raise DownloadError(
                f"checksum mismatch for {url}: expected a sha256 starting {sha256_prefix}, got {got}"
            )


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    *,
    size: int | None = None,
    sha256_prefix: str | None = None,
    resume: bool = False,
) -> Path:
    """Stream ``url`` to ``dest``; check ``size``, ``sha256`` or ``sha256_prefix`` when given. Returns
    ``dest``.

    An existing ``dest`` with the right checksum is kept (no request is made). The bytes go to
    ``<dest>.partial`` first and are renamed into place only once checked. Without ``resume`` any
    failure removes the partial file. With ``resume``, an interrupted transfer keeps it and the next
    call asks for the rest with an HTTP ``Range`` request (a server that answers 200 instead of 206
    sends the whole file again, which then replaces the partial one); only a file whose size or sum is
    wrong is removed. Every failure is :class:`DownloadError` naming the URL.
    """
    dest = Path(dest)
    if dest.exists() and (sha256 or sha256_prefix):
        try:
            _check_sum(url, dest, size, sha256, sha256_prefix)
            return dest
        except DownloadError:
            pass
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    have = partial.stat().st_size if resume and partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()
        have = 0
    try:
        if size is None or have < size:
            _transfer(url, partial, have, size, timeout, progress, dest.name)
    except Exception as exc:
        if not resume:
            partial.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise
        kept = partial.stat().st_size if partial.exists() else 0
        hint = f"; {kept:,} bytes are kept in {partial}: run the same command again to resume" if kept else ""
        raise TransferFailed(f"could not download {url}: {exc}{hint}") from exc
    try:
        _check_sum(url, partial, size, sha256, sha256_prefix)
    except DownloadError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)
    return dest


def _transfer(url, partial: Path, have: int, size, timeout, progress, name) -> None:
    """One HTTP GET into ``partial``, from byte ``have`` on (Range) when ``have`` > 0."""
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        status = getattr(resp, "status", 200)
        if have and status != 206:  # the server ignored the range: start again from byte 0
            have = 0
        length = int(resp.headers.get("Content-Length") or 0) or None
        total = (have + length) if length is not None else size
        got = have
        with (
            open(partial, "ab" if have else "wb") as out,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=name, disable=not progress
            ) as bar,
        ):
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
