"""`make test`'s notebook pass: copies of the chapters, with short training, for nbval.

Each ``notebooks/NN_topic.py`` (the Jupytext source) is written by papermill, *without executing it*,
to ``_build/nbval/notebooks/NN_topic.ipynb`` with the parameters of ``tests/nbval_quick.yaml``
injected after its parameters cell. ``pytest --nbval-lax _build/nbval/notebooks`` then runs every cell.

The copies keep the chapters' relative paths working: ``_build/nbval`` mirrors the repository root, with
``params``, ``benchmarks``, ``results`` and ``tools`` linked to the real folders and
``_build/nbval/_build/data`` linked to ``_build/data`` (the generated dataset is shared). Runs and
evaluations go to ``_build/nbval/_build/runs``, so the short runs never replace the book's.

Why: ``make book`` executes every chapter with its own (smoke) parameters and ``make test-book`` checks
those runs; running the same budgets a second time under nbval doubled CI time.

Usage: python tools/prepare_nbval.py [--params tests/nbval_quick.yaml]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBVAL = ROOT / "_build" / "nbval"
LINKED = ("params", "benchmarks", "results", "tools")


def notebook_parameters(src: Path) -> dict:
    """The values the chapter's ``parameters`` cell assigns (the cell is executed on its own)."""
    import jupytext

    nb = jupytext.read(src)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise SystemExit(f"[nbval] {src.name}: expected one cell tagged 'parameters', found {len(cells)}")
    scope: dict = {}
    exec(compile(cells[0].source, f"{src.name}:parameters", "exec"), {}, scope)
    return {k: v for k, v in scope.items() if not k.startswith("_")}


def load_quick_parameters(path: Path, sources: list[Path]) -> dict[str, dict]:
    """``{chapter stem: {name: value}}`` from ``path``; unknown chapters or names are errors."""
    import yaml

    try:
        quick = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"[nbval] cannot read {path}: {e}") from e
    if not isinstance(quick, dict):
        raise SystemExit(f"[nbval] {path.name} must map chapter names to parameters, got {type(quick).__name__}")
    stems = {s.stem: s for s in sources}
    for chapter, params in quick.items():
        if chapter not in stems:
            raise SystemExit(f"[nbval] {path.name}: unknown chapter {chapter!r}; chapters: {', '.join(stems)}")
        if not isinstance(params, dict):
            raise SystemExit(f"[nbval] {path.name}: {chapter} must map parameter names to values")
        unknown = set(params) - set(notebook_parameters(stems[chapter]))
        if unknown:
            raise SystemExit(f"[nbval] {path.name}: {chapter} has no parameter(s) {sorted(unknown)}")
    return quick


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


def prepare(params_file: Path) -> list[Path]:
    import jupytext
    import papermill

    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    quick = load_quick_parameters(params_file, sources)
    out_dir = NBVAL / "notebooks"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for name in LINKED:
        _link(NBVAL / name, ROOT / name)
    (ROOT / "_build" / "data").mkdir(parents=True, exist_ok=True)
    _link(NBVAL / "_build" / "data", ROOT / "_build" / "data")
    written = []
    for src in sources:
        dst = out_dir / (src.stem + ".ipynb")
        plain = out_dir / (src.stem + ".source.ipynb")
        jupytext.write(jupytext.read(src), plain)
        papermill.execute_notebook(str(plain), str(dst), parameters=quick.get(src.stem, {}), prepare_only=True,
                                   kernel_name="python3", progress_bar=False)
        plain.unlink()
        written.append(dst)
        print(f"[nbval] {os.path.relpath(dst, ROOT)}" + (f"  {quick[src.stem]}" if src.stem in quick else ""), flush=True)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=ROOT / "tests" / "nbval_quick.yaml")
    args = ap.parse_args(argv)
    prepare(args.params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
