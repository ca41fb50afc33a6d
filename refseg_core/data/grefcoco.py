"""gRefCOCO (Liu, Ding, Jiang, CVPR 2023) from Hugging Face ``FudanCVL/gRefCOCO``: the released files as is.

The repository holds ``grefs(unc).json`` (about 59 MB) and ``instances.json`` (about 120 MB), the files the
G_REFER API (henghuiding/gRefCOCO ``grefer.py``) and :class:`refseg_core.data.refer.Refer` read from
``<root>/grefcoco/``. Their place inside the repository was not seen from here, so ``sources.yaml`` gives
patterns and exactly one file must match each. They are downloaded through ``huggingface_hub`` (checked
against the Hub's SHA-256) and copied into the dataset folder byte for byte.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from refseg_core.data import hf
from refseg_core.data.errors import DataError
from refseg_core.io import atomic_path


def fetch_into(folder: Path, entry: dict, cache_dir=None) -> dict:
    """Copy the files of ``entry`` (an ``hf_files`` source) into ``folder``; returns the source record."""
    got = hf.download_entry(entry, "{key}", cache_dir)
    for target, paths in got.paths.items():
        if len(paths) != 1:
            hits = [got.names[p] for p in paths]
            raise DataError(
                f"{len(paths)} files of {entry['repo']} match {entry['files'][target]} for {target} "
                f"({hits}); name the one to use in a REFSEG_DATA_SOURCES overlay of sources.yaml"
            )
        with atomic_path(folder / target) as tmp:
            shutil.copyfile(paths[0], tmp)
    return got.record


__all__ = ["fetch_into"]
