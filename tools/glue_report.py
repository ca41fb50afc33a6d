"""How much of each chapter's code is glue: the Colab install cell, imports, and lines that only display,
format or handle files (``display``, ``Markdown``, ``show_markdown``, ``Path``, ``json``, ``open``,
``read_text`` / ``write_text``, table strings). The rest shows or exercises the papers' ideas.

Usage: python tools/glue_report.py [--max 0.2]   (exit 1 when a chapter's share exceeds --max)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLUE = re.compile(
    r"^\s*(import |from \S+ import |display\(|show_markdown\(|Markdown\(|.*\bPath\(|.*\bjson\.|.*\bopen\(|"
    r".*\.(read_text|write_text|mkdir|glob|rglob|unlink)\(|.*[\"']\| |.*\"\|---|.*'\|---|.*IPython)"
)


def glue_counts(path: Path) -> tuple[int, int]:
    """``(glue lines, code lines)`` of a Jupytext percent chapter (blank lines and comments excluded)."""
    import jupytext

    nb = jupytext.read(path)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    glue = total = 0
    for i, cell in enumerate(code_cells):
        lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        total += len(lines)
        if i == 0:  # the Colab install cell
            glue += len(lines)
            continue
        glue += sum(1 for ln in lines if GLUE.match(ln))
    return glue, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=float, default=None, help="fail when a chapter's glue share exceeds this")
    args = ap.parse_args()
    worst = 0.0
    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        g, t = glue_counts(src)
        share = g / t if t else 0.0
        worst = max(worst, share)
        print(f"{src.stem:18s} glue {g:4d} of {t:4d} code lines = {100 * share:5.1f} %")
    return 1 if args.max is not None and worst > args.max else 0


if __name__ == "__main__":
    sys.exit(main())
