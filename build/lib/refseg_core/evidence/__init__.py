"""Measurements committed with the package, so that a chapter opened alone (in Colab, say) shows them:
the CRIS equivalence checks against the official code (``cris_equivalence_*.json``), the speed and memory
rows of ``make bench`` (``cpu_*.json``) and of the GPU check (``<GPU>_check.json``), each row naming its
device, torch version and date. ``benchmarks/`` writes here; chapters 4 and 8 read through :func:`rows`.

Full reproduction runs (real data, GPU) are committed under ``runs/<configuration name>/`` (``config.yaml``,
``metrics.json``, ``eval_<dataset>_<split>.json``; see ``runs/README.md``); chapter 7 reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

EVIDENCE_DIR = Path(__file__).resolve().parent
RUNS_DIR = EVIDENCE_DIR / "runs"


def files(pattern: str = "*.json") -> list[Path]:
    """The committed result files matching ``pattern``, sorted."""
    return sorted(EVIDENCE_DIR.glob(pattern))


def rows(name: str) -> list | dict:
    """The content of ``<name>.json`` (a list of rows, or one record); a clear error names what exists."""
    p = EVIDENCE_DIR / f"{name}.json"
    if not p.is_file():
        have = ", ".join(f.stem for f in files()) or "none"
        raise FileNotFoundError(f"no committed evidence {name!r}; available: {have}")
    return json.loads(p.read_text())
