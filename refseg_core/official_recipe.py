"""The official CRIS training recipe as data, set next to a configuration of this package.

The recipe (CRIS, Wang et al., CVPR 2022, Sec. 4.1, as DerrickWang005/CRIS.pytorch runs it) is package
data, ``refseg_core/configs/official_cris_recipe.yaml``: one entry per :class:`~refseg_core.config.TrainConfig`
field, with the official file it was read from and, where this package's paper-cell configuration
departs from it, why. :func:`compare` lines the two up; chapter 5 shows :func:`table`, and
``tests/test_official_recipe.py`` checks that a value differs exactly where a reason is written.
"""

from __future__ import annotations

from typing import Any

import yaml

from refseg_core import configs
from refseg_core.config import TrainConfig, field_names, load_config
from refseg_core.tables import markdown_table


def load() -> dict:
    """The recipe file: ``{"repository", "commit", "compare_with", "values": {field: {value, source,
    official, [differs]}}}``. Every key of ``values`` is a TrainConfig field (a clear error otherwise)."""
    recipe = yaml.safe_load((configs.CONFIG_DIR / f"{configs.OFFICIAL_CRIS_RECIPE}.yaml").read_text())
    unknown = sorted(set(recipe["values"]) - set(field_names()))
    if unknown:
        raise ValueError(f"{configs.OFFICIAL_CRIS_RECIPE}.yaml: {unknown} are not TrainConfig fields")
    return recipe


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def compare(config: str | TrainConfig | None = None) -> list[dict]:
    """One row per recipe entry: ``field``, ``official`` (the value), ``ours`` (``config``'s value;
    default the recipe's ``compare_with``), ``same`` (bool), ``source`` (the official file), ``how``
    (how the official code spells it) and ``why`` (the written reason for a departure, or None)."""
    recipe = load()
    cfg = config if isinstance(config, TrainConfig) else load_config(config or recipe["compare_with"])
    rows = []
    for key, entry in recipe["values"].items():
        ours = getattr(cfg, key)
        rows.append(
            {
                "field": key,
                "official": entry["value"],
                "ours": ours,
                "same": _same(entry["value"], ours),
                "source": entry["source"],
                "how": entry.get("official"),
                "why": entry.get("differs"),
            }
        )
    return rows


def table(config: str | TrainConfig | None = None) -> str:
    """:func:`compare` as a Markdown table: field, official value, ours, and the official file (or, for a
    departure, the reason)."""
    rows = compare(config)

    def show(v):
        return "none" if v is None else yaml.safe_dump(v, default_flow_style=True).strip().strip(".").strip()

    lines = [
        (
            f"`{r['field']}`",
            show(r["official"]),
            show(r["ours"]),
            f"`{r['source']}`" if r["same"] else f"**changed**: {r['why'] or 'no reason written'}",
        )
        for r in rows
    ]
    return markdown_table(lines, headers=["field", "official", "this book", "official file / why changed"])
