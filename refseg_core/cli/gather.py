"""``python -m refseg_core gather [RUNS_DIR] [--published FILE] [--out STEM]``: every result file of the
runs under a folder in one table next to the papers' numbers (:mod:`refseg_core.engine.results`).

Writes ``<out>.md`` and ``<out>.json`` (default stem ``<runs>/results``) and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from refseg_core.engine.results import find_results, table
from refseg_core.io import write_text
from refseg_core.published import load as load_published


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("runs", nargs="?", default="runs", help="folder searched for metrics.json / eval_*.json")
    ap.add_argument(
        "--published", default=None, help="published numbers (default: the shipped published.yaml)"
    )
    ap.add_argument("--out", help="output stem (default: <runs>/results)")


def run(args) -> int:
    runs = Path(args.runs)
    if not runs.is_dir():
        print(f"gather: error: runs folder {runs} does not exist", file=sys.stderr)
        return 2
    rows = find_results(runs)
    md, data = table(rows, load_published(args.published))
    stem = Path(args.out) if args.out else runs / "results"
    write_text(stem.with_name(stem.name + ".md"), md + "\n")
    write_text(stem.with_name(stem.name + ".json"), json.dumps(data, indent=2, default=str))
    print(md)
    return 0
