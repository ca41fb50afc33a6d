"""Files from a Hugging Face dataset repository, through ``huggingface_hub`` (its cache, resume, tokens).

``resolve(repo, revision)`` asks the Hub once for the commit a revision names and the repository's
files with their sums (``HfApi.dataset_info(files_metadata=True)``: ``GET /api/datasets/<repo>/revision/
<rev>?blobs=True``); ``download`` fetches one file at that commit with ``hf_hub_download`` (``HEAD`` then
``GET /datasets/<repo>/resolve/<sha>/<file>``) and checks its SHA-256 against the Hub's LFS record (or
its git blob id for a small file). The endpoint is ``HF_ENDPOINT`` read at call time (not at import, as
``huggingface_hub.constants`` does), so a test or a user can point it at a mirror.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from refseg_core.data.errors import DataError, SourceUnreachable, is_disk_full

DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@dataclass
class RepoFiles:
    """A repository at one commit: ``sha`` and ``files`` (path -> ``{"size", "sha256" or "git_sha1"}``)."""

    repo: str
    revision: str
    sha: str
    files: dict

    @property
    def address(self) -> str:
        return f"{endpoint()}/datasets/{self.repo}"

    def match(self, patterns: list[str], what: str) -> list[str]:
        """The files matching any of ``patterns`` (fnmatch; ``*`` crosses folders), sorted; none is an
        error naming the patterns and listing what the repository holds."""
        hits = sorted({f for f in self.files for p in patterns if fnmatch.fnmatchcase(f, p)})
        if not hits:
            shown = ", ".join(sorted(self.files)[:12]) + (" ..." if len(self.files) > 12 else "")
            raise DataError(
                f"no file of {self.repo} at {self.sha[:12]} matches {patterns} ({what}); it holds: "
                f"{shown or 'nothing'}; correct the patterns in a REFSEG_DATA_SOURCES overlay of sources.yaml"
            )
        return hits


def resolve(repo: str, revision: str) -> RepoFiles:
    """The commit ``revision`` names in dataset ``repo`` and its files (one request)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).dataset_info(repo, revision=revision, files_metadata=True)
    except Exception as exc:  # network errors, HTTP errors, a missing repository or revision
        raise SourceUnreachable(
            f"could not reach Hugging Face dataset {repo} at revision {revision} via {endpoint()} "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    files = {}
    for s in info.siblings or []:
        rec = {"size": s.size}
        if s.lfs is not None:
            rec.update(size=s.lfs.size, sha256=s.lfs.sha256)
        elif s.blob_id:
            rec["git_sha1"] = s.blob_id
        files[s.rfilename] = rec
    if not info.sha:
        raise SourceUnreachable(f"{endpoint()} named no commit for {repo} at revision {revision}")
    return RepoFiles(repo=repo, revision=revision, sha=info.sha, files=files)


def download(repo: RepoFiles, filename: str, cache_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``filename`` of ``repo`` at its resolved commit, from the ``huggingface_hub`` cache or the Hub,
    checked against the Hub's sum; returns the cached path and its SHA-256."""
    from huggingface_hub import hf_hub_download

    try:
        path = Path(
            hf_hub_download(
                repo.repo,
                filename,
                repo_type="dataset",
                revision=repo.sha,
                cache_dir=cache_dir,
                endpoint=endpoint(),
            )
        )
    except Exception as exc:
        if is_disk_full(exc):
            raise
        raise SourceUnreachable(
            f"could not download {filename} of Hugging Face dataset {repo.repo} at {repo.sha[:12]} "
            f"via {endpoint()} ({type(exc).__name__}: {_first_line(exc)}); run the same command again to "
            "resume"
        ) from exc
    try:
        return path, check(path, repo.files.get(filename, {}), f"{repo.address}/blob/{repo.sha}/{filename}")
    except DataError as exc:
        # a wrong copy must not stay in the cache, where the next run would find it again
        path.resolve().unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise DataError(f"{exc}; the cached copy was removed") from exc


@dataclass
class Fetched:
    """The files one ``sources.yaml`` entry named, downloaded: ``paths`` per key of ``entry["files"]``,
    ``names`` (path -> ``<repo>/<file>``, for errors) and the manifest's ``record`` of the source."""

    paths: dict[str, list[Path]]
    names: dict[Path, str]
    record: dict


def download_entry(entry: dict, what: str, cache_dir: str | os.PathLike | None = None) -> Fetched:
    """Resolve ``entry["repo"]`` at its revision and download every file matching each pattern list of
    ``entry["files"]`` (``what`` names one in errors: "the {key} split"); the record holds the address,
    the revision and its resolved commit, and each file's SHA-256 and size."""
    repo = resolve(entry["repo"], entry.get("revision", "main"))
    paths, names, downloaded = {}, {}, {}
    for key, patterns in entry["files"].items():
        paths[key] = []
        for name in repo.match(patterns, what.format(key=key)):
            path, sha = download(repo, name, cache_dir)
            paths[key].append(path)
            names[path] = f"{entry['repo']}/{name}"
            downloaded[name] = {"sha256": sha, "size": path.stat().st_size}
    record = {
        "address": repo.address,
        "revision": repo.revision,
        "resolved_revision": repo.sha,
        "downloaded": downloaded,
    }
    return Fetched(paths=paths, names=names, record=record)


def check(path: Path, rec: dict, where: str) -> str:
    """Check ``path`` against the Hub's record (size, LFS SHA-256 or git blob id); returns its SHA-256."""
    size = path.stat().st_size
    if rec.get("size") is not None and size != rec["size"]:
        raise DataError(f"size mismatch for {where}: the Hub records {rec['size']:,} bytes, got {size:,}")
    h, g = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            g.update(block)
    sha = h.hexdigest()
    if rec.get("sha256") and sha != rec["sha256"]:
        raise DataError(f"checksum mismatch for {where}: the Hub records sha256 {rec['sha256']}, got {sha}")
    if rec.get("git_sha1") and g.hexdigest() != rec["git_sha1"]:
        raise DataError(
            f"checksum mismatch for {where}: the Hub records git blob {rec['git_sha1']}, got {g.hexdigest()}"
        )
    return sha


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "no message"


__all__ = ["RepoFiles", "check", "download", "endpoint", "resolve"]
