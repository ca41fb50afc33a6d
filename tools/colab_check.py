"""`make test`'s notebook pass: every chapter run the way a Colab reader runs it, under nbval.

For each committed ``notebooks/NN_topic.ipynb``:

1. a wheel of this repository is built and installed into a clean virtual environment
   (``_build/colab/venv``); the heavy dependencies (torch, open_clip, jupyter, nbval ...) come from the
   project's ``.venv`` through a ``.pth`` file, but ``refseg_core`` itself only from the wheel;
2. the ``.ipynb`` alone is written into an empty temporary folder, with the short training of
   ``tests/nbval_quick.yaml`` injected by papermill after its parameters cell (prepared, not executed);
3. ``pytest --nbval-lax`` runs every cell with that environment's kernel, the working directory being
   the lone notebook's folder and ``REFSEG_HOME`` an empty folder of its own: nothing of the repository
   and no other chapter's output is reachable.

``make book`` executes the chapters with their own parameters (the smoke budgets) and ``make test-book``
checks those runs; this pass checks that every cell runs wherever a reader opens the chapter.

Usage: python tools/colab_check.py [--params tests/nbval_quick.yaml] [--only 01_data,05_training] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLAB = ROOT / "_build" / "colab"


def notebook_parameters(src: Path) -> dict:
    """The values the chapter's ``parameters`` cell assigns (the cell is executed on its own)."""
    import jupytext

    nb = jupytext.read(src)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise SystemExit(f"[colab] {src.name}: expected one cell tagged 'parameters', found {len(cells)}")
    scope: dict = {}
    exec(compile(cells[0].source, f"{src.name}:parameters", "exec"), {}, scope)
    return {k: v for k, v in scope.items() if not k.startswith("_")}


def load_quick_parameters(path: Path, sources: list[Path]) -> dict[str, dict]:
    """``{chapter stem: {name: value}}`` from ``path``; unknown chapters or names are errors."""
    import yaml

    try:
        quick = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"[colab] cannot read {path}: {e}") from e
    if not isinstance(quick, dict):
        raise SystemExit(
            f"[colab] {path.name} must map chapter names to parameters, got {type(quick).__name__}"
        )
    stems = {s.stem: s for s in sources}
    for chapter, params in quick.items():
        if chapter not in stems:
            raise SystemExit(
                f"[colab] {path.name}: unknown chapter {chapter!r}; chapters: {', '.join(stems)}"
            )
        if not isinstance(params, dict):
            raise SystemExit(f"[colab] {path.name}: {chapter} must map parameter names to values")
        unknown = set(params) - set(notebook_parameters(stems[chapter]))
        if unknown:
            raise SystemExit(f"[colab] {path.name}: {chapter} has no parameter(s) {sorted(unknown)}")
    return quick


def prepare_lone_copy(ipynb: Path, folder: Path, parameters: dict) -> Path:
    """``folder/<name>.ipynb``: the committed notebook with ``parameters`` injected (not executed)."""
    import papermill

    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / ipynb.name
    papermill.execute_notebook(
        str(ipynb),
        str(dst),
        parameters=parameters,
        prepare_only=True,
        kernel_name="python3",
        progress_bar=False,
    )
    return dst


def build_environment(venv: Path) -> Path:
    """A clean venv with the project's wheel; returns its python. Dependencies come from this
    interpreter's site-packages through a ``.pth`` file (only paths: no editable finder is activated)."""
    dist = venv.parent / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
    )
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' scratch tree of that build
    wheels = sorted(dist.glob("refseg_core-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"[colab] expected one refseg_core wheel in {dist}, found {wheels}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    Path(purelib, "_refseg_project_deps.pth").write_text(deps + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheels[0])],
        check=True,
    )
    where = subprocess.run(
        [str(python), "-c", "import refseg_core; print(refseg_core.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env=_clean_env(),
    ).stdout.strip()
    if not where.startswith(str(venv)):
        raise SystemExit(f"[colab] refseg_core is imported from {where}, not from the wheel in {venv}")
    print(f"[colab] {wheels[0].name} installed into {venv}", flush=True)
    return python


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REFSEG_HOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def run_chapter(python: Path, ipynb: Path, parameters: dict, keep: bool) -> tuple[bool, float]:
    """Run one lone chapter under nbval; ``(passed, seconds)``."""
    scratch = Path(tempfile.mkdtemp(prefix=f"colab_{ipynb.stem}_"))
    try:
        lone = prepare_lone_copy(ipynb, scratch / "content", parameters)
        ini = scratch / "pytest.ini"
        ini.write_text("[pytest]\n")
        t0 = time.time()
        r = subprocess.run(
            [
                str(python),
                "-m",
                "pytest",
                "-c",
                str(ini),
                "--rootdir",
                str(scratch),
                "-q",
                "-p",
                "no:cacheprovider",
                "--nbval-lax",
                "--nbval-cell-timeout=900",
                lone.name,
            ],
            cwd=lone.parent,
            env=_clean_env(REFSEG_HOME=str(scratch / "home")),
        )
        return r.returncode == 0, time.time() - t0
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=ROOT / "tests" / "nbval_quick.yaml")
    ap.add_argument("--only", help="comma-separated chapter stems (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args(argv)
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    quick = load_quick_parameters(args.params, sources)
    only = set(args.only.split(",")) if args.only else None
    python = build_environment(COLAB / "venv")
    failed = []
    for src in sources:
        if only and src.stem not in only:
            continue
        ok, seconds = run_chapter(python, src.with_suffix(".ipynb"), quick.get(src.stem, {}), args.keep)
        print(f"[colab] {src.stem}: {'passed' if ok else 'FAILED'} in {seconds:.0f} s", flush=True)
        if not ok:
            failed.append(src.stem)
    if failed:
        print(f"[colab] chapters failing alone: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
