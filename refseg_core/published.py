"""The papers' numbers, looked up in one place: :func:`lookup` filters the shipped ``published.yaml``
(:func:`refseg_core.configs.published`) by method, dataset, split, metric or source, and
:func:`paper_numbers` finds the numbers a measured result may be set next to (same method, dataset and
split; never for synthetic data, which no paper used).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

# model name in refseg_core -> method name in published.yaml (gRefCOCO numbers carry no backbone)
METHODS = {
    "cris_r50": "CRIS-R50",
    "cris_r101": "CRIS-R101",
    "cris_tiny": "CRIS-tiny",
    "lts": "LTS",
    "lts_tiny": "LTS-tiny",
}


def load(path: str | os.PathLike | None = None) -> list[dict]:
    """The published results: the shipped ``published.yaml`` (``path=None``) or another file of its form."""
    if path is None:
        from refseg_core import configs

        return list(configs.published().get("results", []))
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"published numbers {path} do not exist")
    data = yaml.safe_load(path.read_text()) or {}
    return list(data.get("results", []))


def lookup(results: list[dict] | None = None, **where) -> list[dict]:
    """The published rows whose fields equal every ``where`` item (``method``, ``dataset``, ``split``,
    ``metric``, ``source``); a ``method`` ending in ``*`` matches by prefix (``method="CRIS*"``)."""
    rows = load() if results is None else results
    unknown = set(where) - {"method", "dataset", "split", "metric", "source"}
    if unknown:
        raise ValueError(f"lookup: unknown field(s) {sorted(unknown)}")
    out = []
    for r in rows:
        ok = True
        for k, v in where.items():
            have = r.get(k)
            if isinstance(v, str) and v.endswith("*"):
                ok = ok and isinstance(have, str) and have.startswith(v[:-1])
            else:
                ok = ok and have == v
        if ok:
            out.append(r)
    return out


def paper_method(model: str, dataset: str) -> str | None:
    """The method name ``published.yaml`` uses for a refseg_core model on ``dataset``."""
    m = METHODS.get(model)
    if m is None:
        return None
    return m.split("-")[0] if dataset == "grefcoco" and m.startswith("CRIS") else m


def paper_numbers(row: dict, results: list[dict] | None = None) -> list[dict]:
    """Published numbers for a measured result ``row`` (``model``, ``dataset``, ``split``, ``synthetic``)."""
    if row.get("synthetic") is not False:  # synthetic, or not known to be real data
        return []
    method = paper_method(row.get("model") or "", row["dataset"])
    return lookup(results, method=method, dataset=row["dataset"], split=row["split"])
