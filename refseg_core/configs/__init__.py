"""The run configurations and the published numbers, shipped as package data (as open_clip ships its
model configs): ``smoke_cris`` / ``smoke_lts`` (the book's CPU runs) and one file per paper-table cell
(``cris_r50_refcoco``, ``lts_grefcoco``, ...). Two files are data, not runs: ``published.yaml`` holds the
papers' numbers, ``official_cris_recipe.yaml`` the official CRIS recipe with its sources
(:mod:`refseg_core.official_recipe`).

A configuration is loaded by name with :func:`refseg_core.config.load_config` (``load_config("smoke_cris",
{"epochs": 2})``), by the CLI (``python -m refseg_core train --config smoke_cris``) and by a chapter's
parameters cell (``config = "smoke_cris"``): all three meet here, so each value has one home.
"""

from __future__ import annotations

from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent
PUBLISHED = "published"
OFFICIAL_CRIS_RECIPE = "official_cris_recipe"
DATA_FILES = (PUBLISHED, OFFICIAL_CRIS_RECIPE)  # package data beside the run configurations


def names() -> list[str]:
    """The shipped run configurations, sorted (the :data:`DATA_FILES` are data, not runs)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem not in DATA_FILES)


def path(name: str) -> Path:
    """The file of the shipped configuration ``name``; a clear error lists the valid names."""
    p = CONFIG_DIR / f"{name}.yaml"
    if name in DATA_FILES or not p.is_file():
        raise ValueError(
            f"unknown configuration {name!r}; shipped configurations: {', '.join(names())} "
            "(or give the path of a YAML file)"
        )
    return p


def published() -> dict:
    """The papers' numbers and the datasets' split sizes (``published.yaml``): ``{"datasets": ...,
    "results": [{method, source, metric, dataset, split, value}, ...]}``."""
    return yaml.safe_load((CONFIG_DIR / f"{PUBLISHED}.yaml").read_text())
