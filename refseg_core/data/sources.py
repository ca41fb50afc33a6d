"""The real data's sources as data: ``sources.yaml`` (shipped with the package), optionally overlaid.

``REFSEG_DATA_SOURCES=/path/to/file.yaml`` names a YAML file merged over the shipped one key by key
(mappings merge, everything else is replaced): a user whose mirror or revision differs changes one
address, and the tests point every source at a stand-in server on 127.0.0.1 the same way. Such a file
may also hold ``expected_counts`` (same form as ``published.yaml``'s ``datasets``), which then replace
the published counts the verification compares with, for a mirror that serves a subset or a stand-in;
the verification says so whenever it uses them. Hugging Face addresses are resolved through
``HF_ENDPOINT`` as ``huggingface_hub`` does.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

SHIPPED = Path(__file__).resolve().parent / "sources.yaml"
ENV_VAR = "REFSEG_DATA_SOURCES"
DATASETS = ("refcoco", "refcoco+", "refcocog", "grefcoco", "refcoco_m")
ROUTES = ("hf", "archive")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def shipped() -> dict:
    """The shipped ``sources.yaml`` alone (no overlay)."""
    return yaml.safe_load(SHIPPED.read_text())


def load() -> dict:
    """``sources.yaml`` with the ``REFSEG_DATA_SOURCES`` overlay (if set) merged over it."""
    data = shipped()
    over_path = os.environ.get(ENV_VAR)
    if over_path:
        p = Path(over_path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"{ENV_VAR}={over_path}: no such file (a YAML overlay of sources.yaml)")
        over = yaml.safe_load(p.read_text()) or {}
        if not isinstance(over, dict):
            raise ValueError(f"{ENV_VAR}={over_path}: expected a YAML mapping like sources.yaml")
        data = _merge(data, over)
        data["overlay"] = str(p)
    return data


def overlay_path() -> str | None:
    return os.environ.get(ENV_VAR) or None


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; data fetch knows {', '.join(DATASETS)}")
    return dataset


def label(dataset: str) -> str:
    """How a dataset is named wherever a number is printed (RefCOCO-M says it is not RefCOCO val)."""
    entry = shipped()["datasets"].get(dataset)
    return entry["label"] if entry else dataset


def source_for(dataset: str, route: str | None = None, data: dict | None = None) -> tuple[str, dict]:
    """``(name, entry)`` of the source of ``dataset`` for ``route`` (``hf`` / ``archive``; ``None``: the
    first listed). A route the dataset has no source for is an error naming the routes it has."""
    data = copy.deepcopy(data or load())
    check_dataset(dataset)
    names = data["datasets"][dataset]["sources"]
    for name in names:
        entry = data["sources"][name]
        if route is None or entry.get("route") == route:
            return name, entry
    have = sorted({data["sources"][n].get("route") for n in names})
    raise ValueError(f"dataset {dataset} has no {route!r} source; its sources: {', '.join(have)}")


def other_sources(dataset: str, name: str, data: dict | None = None) -> list[str]:
    """The other sources of ``dataset`` a user can try when ``name`` fails, as ``--source`` hints."""
    data = data or load()
    out = []
    for n in data["datasets"][dataset]["sources"]:
        if n != name:
            e = data["sources"][n]
            out.append(f"--source {e['route']} ({e.get('url') or e.get('repo')})")
    return out


def coco(kind: str, data: dict | None = None) -> dict:
    """The COCO train2014 source: ``kind`` is ``images`` (one per file) or ``zip``."""
    data = data or load()
    return data["sources"]["coco-train2014-images" if kind == "images" else "coco-train2014-zip"]


def expected_counts(dataset: str, data: dict | None = None) -> tuple[dict | None, str]:
    """The counts a fetched dataset must have, ``({split_by: {split: {refs, sentences, images}}}``,
    where they come from)``: ``published.yaml`` unless the overlay replaces them; ``None`` when no
    count is recorded for the dataset (gRefCOCO: none is published per split here)."""
    data = data or load()
    over = (data.get("expected_counts") or {}).get(dataset)
    if over is not None:
        return over, f"expected_counts of {data.get('overlay')} ({ENV_VAR}), not the published counts"
    from refseg_core import configs

    pub = configs.published()["datasets"].get(dataset)
    if pub is None:
        return None, "no published per-split counts are recorded for this dataset"
    table = {
        split: {
            what: pub[what][split] for what in ("refs", "sentences", "images") if split in pub.get(what, {})
        }
        for split in pub["refs"]
    }
    return {pub["splitBy"]: table}, "published.yaml (" + "; ".join(
        f"{k}: {v}" for k, v in pub.get("source", {}).items()
    ) + ")"


__all__ = [
    "DATASETS",
    "ENV_VAR",
    "check_dataset",
    "coco",
    "expected_counts",
    "label",
    "load",
    "other_sources",
    "shipped",
    "source_for",
]
