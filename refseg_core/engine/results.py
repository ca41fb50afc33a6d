"""Gather every ``metrics.json`` (training's validation score) and ``eval_<dataset>_<split>.json``
(``python -m refseg_core evaluate``) under a runs folder into one comparison table, next to the
published numbers (:func:`refseg_core.configs.published`), each labelled with its metric (mIoU vs oIoU vs
cIoU). Chapter 7 shows this table; from a terminal:

    python -m refseg_core gather [RUNS_DIR] [--published FILE] [--out STEM]

Writes ``<out>.md`` (markdown) and ``<out>.json`` and prints the markdown. Scores are percentages.
Synthetic runs are listed without paper numbers (the papers did not use that data).
"""

from __future__ import annotations

import json
import math
import os
import sys
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
SHOWN = ("mIoU", "oIoU", "prec@0.5", "prec@0.9")
SHOWN_GRES = ("gIoU", "cIoU", "N-acc", "T-acc")


def _paper_method(model: str, dataset: str) -> str | None:
    m = METHODS.get(model)
    if m is None:
        return None
    return m.split("-")[0] if dataset == "grefcoco" and m.startswith("CRIS") else m


def find_results(runs: Path) -> list[dict]:
    """One row per result file: run folder, model, dataset, split, source file, metrics."""
    rows = []
    for path in sorted(runs.rglob("*.json")):
        if path.name != "metrics.json" and not (path.name.startswith("eval_") and path.suffix == ".json"):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        meta = data.get("meta", {})
        if "mIoU" not in data or "dataset" not in meta:
            print(f"skipping {path}: not a refseg_core result file", file=sys.stderr)
            continue
        run = path.parent.relative_to(runs).as_posix() if path.parent != runs else path.parent.name
        cfg_model = meta.get("model")
        rows.append(
            {
                "run": run,
                "file": path.name,
                "model": cfg_model,
                "dataset": meta["dataset"],
                "split": meta.get("split"),
                "synthetic": bool(meta.get("synthetic", False)),
                "metrics": {k: v for k, v in data.items() if k not in ("meta", "baselines")},
            }
        )
    return rows


def load_published(path: str | os.PathLike | None = None) -> list[dict]:
    """The published results: the shipped ``published.yaml`` (``path=None``) or another file of its form."""
    if path is None:
        from refseg_core import configs

        return list(configs.published().get("results", []))
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"published numbers {path} do not exist")
    data = yaml.safe_load(path.read_text()) or {}
    return list(data.get("results", []))


def paper_numbers(row: dict, published: list[dict]) -> list[dict]:
    if row["synthetic"]:
        return []
    method = _paper_method(row["model"] or "", row["dataset"])
    return [
        p
        for p in published
        if p["method"] == method and p["dataset"] == row["dataset"] and p["split"] == row["split"]
    ]


def _pct(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def table(rows: list[dict], published: list[dict]) -> tuple[str, list[dict]]:
    out, lines = [], []
    gres = any(r["dataset"] == "grefcoco" for r in rows)
    cols = list(SHOWN) + (list(SHOWN_GRES) if gres else [])
    lines.append("| run | model | dataset | split | n | " + " | ".join(cols) + " | paper (metric, source) |")
    lines.append("|" + "---|" * (6 + len(cols)))
    for r in rows:
        papers = paper_numbers(r, published)
        paper = "; ".join(f"{p['value']:.2f} {p['metric']} ({p['source']})" for p in papers) or (
            "— (synthetic data)" if r["synthetic"] else "—"
        )
        m = r["metrics"]
        cells = [_pct(m.get(k)) if (r["dataset"] == "grefcoco" or k not in SHOWN_GRES) else "—" for k in cols]
        lines.append(
            f"| {r['run']} ({r['file']}) | {r['model']} | {r['dataset']} | {r['split']} | {m.get('n', '')} | "
            + " | ".join(cells)
            + f" | {paper} |"
        )
        out.append({**r, "paper": papers})
    lines.append("")
    lines.append(
        "Measured scores are percentages. mIoU = mean of per-sentence IoUs (what CRIS reports); "
        "oIoU = overall IoU (what LTS reports); on gRefCOCO cIoU / gIoU (GRES). Compare a paper "
        "number only with the measured column of the same metric."
    )
    return "\n".join(lines), out
