"""Measurements committed with the package, so that a chapter opened alone (in Colab, say) shows them:
the CRIS equivalence checks against the official code (``cris_equivalence_*.json``), the speed and memory
rows of ``make bench`` (``cpu_*.json``) and of the GPU check (``<GPU>_check.json``), each row naming its
device, torch version and date. ``benchmarks/`` writes here; chapters 4 and 8 read through :func:`rows`.

Full reproduction runs (real data, GPU) are committed under ``runs/<configuration name>/`` (``config.yaml``,
``metrics.json``, ``eval_<dataset>_<split>.json``; see ``runs/README.md``); chapter 7 reads them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

EVIDENCE_DIR = Path(__file__).resolve().parent
RUNS_DIR = EVIDENCE_DIR / "runs"


def files(pattern: str = "*.json", directory: str | Path | None = None) -> list[Path]:
    """The committed result files matching ``pattern`` (in ``directory`` instead when given), sorted."""
    return sorted(Path(directory or EVIDENCE_DIR).glob(pattern))


def rows(name: str, directory: str | Path | None = None) -> list | dict:
    """The content of ``<name>.json`` (a list of rows, or one record), from the committed evidence or from
    ``directory`` (a folder ``benchmarks/`` wrote elsewhere); a clear error names what exists."""
    folder = Path(directory or EVIDENCE_DIR)
    p = folder / f"{name}.json"
    if not p.is_file():
        have = ", ".join(f.stem for f in files(directory=folder)) or "none"
        raise FileNotFoundError(f"no evidence {name!r} in {folder}; available: {have}")
    return json.loads(p.read_text())


def cpu_cores(row: dict) -> int | None:
    """The logical core count of the machine a row was measured on (``cores``, or the count its
    ``device`` names, "CPU ... (2 logical cores, ...)"); None when the row does not say."""
    if row.get("cores") is not None:
        return int(row["cores"])
    m = re.search(r"\((\d+) logical cores", str(row.get("device", "")))
    return int(m.group(1)) if m else None
