"""The manifest beside fetched data: ``<root>/<dataset>/refseg_manifest.json``.

It records where the data came from (source name, kind, address, the revision asked for and the one
resolved, each downloaded file's SHA-256), each written file's SHA-256 and size, the counts per split
as verified, the warnings of that verification, and which splits' images were fetched. ``data fetch``
treats a dataset whose files still match it as present (no request at all); ``data verify`` re-checks
everything against it.
"""

from __future__ import annotations

import json
from pathlib import Path

from refseg_core.data.download import sha256_of
from refseg_core.data.errors import DataError
from refseg_core.io import write_json

NAME = "refseg_manifest.json"
FORMAT = 1


def file_records(folder: Path, names: list[str]) -> dict:
    """``{name: {"sha256", "size"}}`` of files in ``folder``."""
    return {n: {"sha256": sha256_of(folder / n), "size": (folder / n).stat().st_size} for n in sorted(names)}


def read(folder: Path) -> dict | None:
    p = folder / NAME
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: unreadable manifest ({exc}); fetch again with --overwrite") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise DataError(f"{p}: not a manifest of this version; fetch again with --overwrite")
    return m


def write(folder: Path, manifest: dict) -> Path:
    return write_json(folder / NAME, {"format": FORMAT, **manifest})


def changed_files(folder: Path, manifest: dict) -> list[str]:
    """Sentences for each recorded file that is missing or whose size or SHA-256 changed."""
    out = []
    for name, rec in manifest.get("files", {}).items():
        p = folder / name
        if not p.is_file():
            out.append(f"{p} is missing")
        elif p.stat().st_size != rec["size"]:
            out.append(f"{p} has {p.stat().st_size:,} bytes, the manifest records {rec['size']:,}")
        elif sha256_of(p) != rec["sha256"]:
            out.append(f"{p} has sha256 {sha256_of(p)}, the manifest records {rec['sha256']}")
    return out


__all__ = ["NAME", "changed_files", "file_records", "read", "sha256_of", "write"]
