"""Result files of runs, written and read in one place.

* :func:`eval_meta` + :func:`write_eval`: the one writer of ``eval_<dataset>_<split>.json`` (the metrics
  of ``python -m refseg_core evaluate``, of chapter 6, of the GPU check), whose ``meta`` always records the
  checkpoint, model, data (``synthetic`` included) and post-processing;
* :func:`find_results`: every ``metrics.json`` (training's validation score) and ``eval_*.json`` under a
  runs folder, with its ``meta``;
* :func:`table`: those rows next to the papers' numbers (:mod:`refseg_core.published`), each labelled with
  its metric (mIoU vs oIoU vs cIoU) — what ``python -m refseg_core gather`` prints and chapter 7 shows.

Synthetic runs are listed without paper numbers (the papers did not use that data); so is a result whose
``meta`` does not say whether its data was synthetic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from refseg_core.io import write_json
from refseg_core.published import paper_numbers
from refseg_core.tables import markdown_table, percent

SHOWN = ("mIoU", "oIoU", "prec@0.5", "prec@0.9")
SHOWN_GRES = ("gIoU", "cIoU", "N-acc", "T-acc")


def data_is_synthetic(cfg) -> bool:
    """Whether ``cfg``'s data is generated: ``synthetic: true``, or a dataset folder the generator wrote
    (its ``synthetic.json`` manifest), whatever the configuration says."""
    from refseg_core.data.synthetic import read_manifest

    return bool(cfg.synthetic) or read_manifest(Path(cfg.data_root) / cfg.dataset) is not None


def eval_meta(cfg, split: str, checkpoint, model_name: str | None = None, **extra) -> dict:
    """The ``meta`` of an eval file: which checkpoint scored which data, and how. ``cfg`` is the
    :class:`~refseg_core.config.TrainConfig` the data and post-processing came from; ``synthetic`` is
    :func:`data_is_synthetic` (so that ``gather`` never sets a score on generated data next to a paper's)."""
    from refseg_core.data.sources import label

    return {
        "checkpoint": str(checkpoint),
        "model": model_name or cfg.model,
        "dataset": cfg.dataset,
        "dataset_label": label(cfg.dataset),  # RefCOCO-M is not RefCOCO: every printed score says which
        "split_by": cfg.split_by,
        "split": split,
        "synthetic": data_is_synthetic(cfg),
        "threshold": cfg.eval_threshold,
        "input_size": cfg.input_size,
        **extra,
    }


def eval_path(out_dir, dataset: str, split: str, kind: str = "eval") -> Path:
    """``<out_dir>/eval_<dataset>_<split>.json`` (``kind="predictions"`` for the per-sample file)."""
    return Path(out_dir) / f"{kind}_{dataset}_{split}.json"


def write_eval(out_dir, metrics: dict, meta: dict, records: list | None = None) -> Path:
    """Write ``eval_<dataset>_<split>.json`` (metrics + ``meta``) atomically, and with ``records`` the
    per-sample ``predictions_<dataset>_<split>.json``. Returns the eval file's path."""
    missing = {"checkpoint", "model", "dataset", "split", "synthetic"} - set(meta)
    if missing:
        raise ValueError(f"write_eval: meta lacks {sorted(missing)} (build it with eval_meta)")
    path = write_json(eval_path(out_dir, meta["dataset"], meta["split"]), {**metrics, "meta": meta})
    if records is not None:
        write_json(
            eval_path(out_dir, meta["dataset"], meta["split"], "predictions"),
            {"meta": meta, "predictions": records},
        )
    return path


def find_results(runs: Path) -> list[dict]:
    """One row per result file under ``runs``: run folder, file, model, dataset, split, synthetic (None
    when the file does not say), metrics and the file's whole ``meta``."""
    rows = []
    runs = Path(runs)
    for path in sorted(runs.rglob("*.json")):
        if path.name != "metrics.json" and not path.name.startswith("eval_"):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        meta = data.get("meta", {}) if isinstance(data, dict) else {}
        if "mIoU" not in data or "dataset" not in meta:
            print(f"skipping {path}: not a refseg_core result file", file=sys.stderr)
            continue
        run = path.parent.relative_to(runs).as_posix() if path.parent != runs else path.parent.name
        synthetic = meta.get("synthetic")
        rows.append(
            {
                "run": run,
                "file": path.name,
                "model": meta.get("model"),
                "dataset": meta["dataset"],
                "split": meta.get("split"),
                "synthetic": None if synthetic is None else bool(synthetic),
                "metrics": {k: v for k, v in data.items() if k not in ("meta", "baselines")},
                "meta": meta,
            }
        )
    return rows


def _paper_cell(row: dict, papers: list[dict]) -> str:
    if papers:
        return "; ".join(f"{p['value']:.2f} {p['metric']} ({p['source']})" for p in papers)
    if row["synthetic"]:
        return "– (synthetic data)"
    if row["synthetic"] is None:
        return "– (the file does not say whether its data was synthetic)"
    return "–"


def table(rows: list[dict], published: list[dict] | None = None) -> tuple[str, list[dict]]:
    """``(markdown, rows with their paper numbers)``: measured scores in percent next to the papers'."""
    gres = any(r["dataset"] == "grefcoco" for r in rows)
    cols = list(SHOWN) + (list(SHOWN_GRES) if gres else [])
    lines, out = [], []
    for r in rows:
        papers = paper_numbers(r, published)
        m = r["metrics"]
        scores = [
            percent(m.get(k)) if (r["dataset"] == "grefcoco" or k not in SHOWN_GRES) else None for k in cols
        ]
        lines.append(
            [
                f"{r['run']} ({r['file']})",
                r["model"],
                r["meta"].get("dataset_label", r["dataset"]),
                r["split"],
                m.get("n"),
                *scores,
                _paper_cell(r, papers),
            ]
        )
        out.append({**r, "paper": papers})
    md = markdown_table(
        lines, headers=["run", "model", "dataset", "split", "n", *cols, "paper (metric, source)"]
    )
    md += (
        "\n\nMeasured scores are percentages. mIoU = mean of per-sentence IoUs (what CRIS reports); "
        "oIoU = overall IoU (what LTS reports); on gRefCOCO cIoU / gIoU (GRES). Compare a paper "
        "number only with the measured column of the same metric."
    )
    return md, out
