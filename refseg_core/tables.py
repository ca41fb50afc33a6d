"""Markdown tables, the one formatter of the book, the logs and ``gather``: :func:`markdown_table` for
rows of any values, :func:`metrics_table` for named metric dicts (scores as percentages).

A chapter shows a table with ``refseg_core.notebook.show_markdown(markdown_table(...))``; Jupyter Book
renders it as HTML, a terminal prints it as plain text that still reads as a table.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

MISSING = "–"


def cell(value: Any, digits: int = 2, missing: str = MISSING) -> str:
    """One cell: ``None`` and NaN print as ``missing``, floats with ``digits`` decimals, the rest as str."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Iterable[Mapping[str, Any] | Sequence[Any]],
    columns: Sequence[str] | None = None,
    headers: Sequence[str] | None = None,
    digits: int = 2,
    missing: str = MISSING,
) -> str:
    """A Markdown table, one line per row: a mapping read by ``columns`` (default: the first row's keys)
    or a sequence in column order. ``headers`` default to the column names."""
    rows = list(rows)
    if columns is None:
        if rows and isinstance(rows[0], Mapping):
            columns = list(rows[0])
        elif headers is not None:
            columns = list(headers)
        else:
            raise ValueError("markdown_table: give columns (or headers) for rows that are sequences")
    headers = list(headers or columns)
    if len(headers) != len(columns):
        raise ValueError(f"markdown_table: {len(headers)} headers for {len(columns)} columns")
    lines = ["| " + " | ".join(cell(h, digits, missing) for h in headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [r.get(c) for c in columns] if isinstance(r, Mapping) else list(r)
        if len(cells) != len(headers):
            raise ValueError(f"markdown_table: a row has {len(cells)} cells for {len(headers)} columns")
        lines.append("| " + " | ".join(cell(v, digits, missing) for v in cells) + " |")
    return "\n".join(lines)


def percent(value: Any, digits: int = 2) -> float | None:
    """A score in [0, 1] as a percentage (None and NaN stay missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return 100.0 * float(value)


def metrics_table(
    named: Mapping[str, Mapping[str, float]],
    keys: Sequence[str] = ("mIoU", "oIoU", "prec@0.5", "prec@0.9"),
    label: str = "",
    digits: int = 2,
) -> str:
    """Named metric dicts (``{"CRIS": {"mIoU": 0.41, ...}, "whole image": {...}}``) as one table, one row
    per name, each score in percent."""
    rows = [[name] + [percent(m.get(k)) for k in keys] for name, m in named.items()]
    return markdown_table(rows, headers=[label, *keys], digits=digits)
