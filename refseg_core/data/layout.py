"""The REFER layout on disk, written so that nothing is ever half there.

A fetch builds ``<root>/<dataset>/`` in a staging folder beside it (``<root>/.fetch-<dataset>-XXXX/``),
verifies it there, and only then renames it into place; a failure or an interruption removes the staging
folder, and an existing dataset folder is replaced only with ``overwrite`` (the old one is moved aside
first and removed after the rename). Files are written in the formats the official readers expect::

    <root>/<dataset>/refs(<split_by>).p     pickle protocol 2 (the Python-2 release's), plain containers
    <root>/<dataset>/instances.json         COCO: images, annotations, categories
    <root>/grefcoco/grefs(unc).json         as released
    <root>/images/train2014/<file_name>     COCO images (refcoco_m: <root>/refcoco_m/images/)
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from refseg_core.data.errors import DataError
from refseg_core.io import atomic_path

IMAGE_DIR = Path("images") / "train2014"


def refs_file(split_by: str) -> str:
    return f"refs({split_by}).p"


def write_refs(path: Path, refs: list[dict]) -> None:
    """A REFER refs pickle (protocol 2, as the released files; read by ``refer.safe_load_pickle``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(refs, fh, protocol=2)


def write_instances(path: Path, instances: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(instances, separators=(",", ":")))


def write_dataset(folder: Path, split_by: str, refs: list[dict], instances: dict) -> None:
    """The two files a REFER loader reads: ``refs(<split_by>).p`` and ``instances.json`` in ``folder``."""
    write_refs(folder / refs_file(split_by), refs)
    write_instances(folder / "instances.json", instances)


@contextlib.contextmanager
def staging(root: Path, dataset: str) -> Iterator[Path]:
    """A fresh folder ``<root>/.fetch-<dataset>-XXXX/`` (same file system as the target), removed when
    the block ends, whether it committed or failed."""
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".fetch-{dataset.replace('+', 'plus')}-", dir=root))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_free(target: Path, overwrite: bool, what: str) -> None:
    """An existing ``target`` is replaced only with ``overwrite``."""
    if target.exists() and not overwrite:
        raise DataError(
            f"{target} already exists and differs from {what}; pass --overwrite (overwrite=True) to "
            "replace it, or choose another --root"
        )


def commit(built: Path, target: Path, overwrite: bool, what: str) -> None:
    """Rename the finished folder ``built`` to ``target`` (moving an existing one aside with ``overwrite``)."""
    check_free(target, overwrite, what)
    trash = None
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=".old-", dir=target.parent))
        os.replace(target, trash / target.name)
    os.replace(built, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


__all__ = ["IMAGE_DIR", "check_free", "commit", "refs_file", "staging", "write_instances", "write_refs"]
