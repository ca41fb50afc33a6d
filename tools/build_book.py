"""`make book`: execute every notebook with papermill, then build the HTML book with Jupyter Book 1.x.

The committed ``notebooks/NN_topic.ipynb`` carry no outputs. Each is executed by papermill (its
``parameters`` cell names the smoke configurations; data and runs go to ``$REFSEG_HOME``, by default
``_build/home``) into a staging copy of the book sources,
``_build/src/``, which mirrors the repository layout so that Jupyter Book's "open in Colab" buttons point
at the committed notebooks. Jupyter Book then renders the staged, executed notebooks (it executes
nothing itself) into ``_build/html``. Sphinx warnings are errors (except with ``--only``, where the chapters staged without outputs lack their figures).

With ``--only``, the other chapters keep the executed copy an earlier build staged; a chapter never
executed is staged without outputs, so the book still builds whole.

Usage: python tools/build_book.py [--only 01_data,02_metrics] [--reuse] [-p name value ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
STAGE = BUILD / "src"
UNEXECUTED = "refseg_unexecuted"  # metadata of a staged chapter that --only left out (no outputs)


def execute_notebooks(only: set[str] | None, reuse: bool, parameters: dict) -> None:
    import jupytext
    import nbformat
    import papermill

    out_dir = STAGE / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    # The Jupytext .py file is the source; the paired .ipynb (for Colab) must match it (tests check).
    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        dst = out_dir / (src.stem + ".ipynb")
        if only and src.stem not in only:
            if not dst.exists() or _unexecuted(dst):
                # Not executed in this build and never before: the page is built without outputs, so
                # that the book (its table of contents, its links) is whole.
                nb = jupytext.read(src)
                nb.metadata[UNEXECUTED] = True
                nbformat.write(nb, dst)
                print(f"[book] {src.name}: not executed (staged without outputs)", flush=True)
            continue
        fresh = dst.exists() and dst.stat().st_mtime > max(src.stat().st_mtime, _package_mtime())
        if reuse and fresh and not _unexecuted(dst):
            print(f"[book] {src.name}: reusing {dst.relative_to(ROOT)}", flush=True)
            continue
        t0 = time.time()
        print(f"[book] executing {src.relative_to(ROOT)} ...", flush=True)
        for stale in out_dir.glob(src.stem + ".*.ipynb"):
            stale.unlink()
        tmp = dst.with_suffix(".partial.ipynb")
        source_nb = dst.with_suffix(".source.ipynb")
        jupytext.write(jupytext.read(src), source_nb)
        papermill.execute_notebook(
            str(source_nb),
            str(tmp),
            cwd=str(src.parent),
            kernel_name="python3",
            parameters=parameters,
            progress_bar=False,
            log_output=False,
        )
        tmp.replace(dst)
        source_nb.unlink()
        print(f"[book] {src.name}: {time.time() - t0:.0f} s", flush=True)


def _unexecuted(path: Path) -> bool:
    import nbformat

    return bool(nbformat.read(path, as_version=4).metadata.get(UNEXECUTED))


def _package_mtime() -> float:
    return max(p.stat().st_mtime for p in (ROOT / "refseg_core").rglob("*.py"))


def stage_sources() -> None:
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, STAGE / name)
    if (STAGE / "book").exists():
        shutil.rmtree(STAGE / "book")
    shutil.copytree(ROOT / "book", STAGE / "book")
    # MathJax 3 (SVG output: no web fonts) from the django-static-mathjax wheel, served with the book.
    import mathjax

    src = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg.js"
    if not src.exists():
        raise SystemExit(f"[book] MathJax not found at {src}; reinstall the 'book' extra")
    (STAGE / "_static" / "mathjax").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, STAGE / "_static" / "mathjax" / "tex-svg.js")


def build_html(strict: bool = True) -> None:
    """Jupyter Book over the staged sources; ``strict``: Sphinx warnings are errors (a whole build). A
    partial build (``--only``) is not strict: a chapter staged without outputs has no figures, so its
    references to them warn."""
    html = BUILD / "html"
    if html.exists():
        shutil.rmtree(html)
    cmd = [
        str(Path(sys.executable).with_name("jupyter-book")),
        "build",
        str(STAGE),
        "--path-output",
        str(ROOT),
        "--builder",
        "html",
        *(["-W"] if strict else []),
        "--keep-going",
    ]
    print("[book] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    index = html / "index.html"
    if not index.exists():
        raise SystemExit(f"[book] the build finished but {index} is missing")
    print(f"[book] wrote {index}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated notebook stems to execute (others are not executed)")
    ap.add_argument("--reuse", action="store_true", help="keep executed notebooks newer than their sources")
    ap.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="papermill parameter for every executed notebook (YAML value)",
    )
    args = ap.parse_args(argv)
    import yaml

    params = {k: yaml.safe_load(v) for k, v in args.p}
    # Data and runs of the executed chapters go to _build/home, not to the user's ~/refseg-book.
    os.environ.setdefault("REFSEG_HOME", str(BUILD / "home"))
    STAGE.mkdir(parents=True, exist_ok=True)
    execute_notebooks(set(args.only.split(",")) if args.only else None, args.reuse, params)
    stage_sources()
    build_html(strict=not args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
