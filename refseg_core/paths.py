"""Where the book's data and runs live, from any working directory: the *refseg home*.

``$REFSEG_HOME`` when set, else ``~/refseg-book``. The shipped configurations name their data and run
folders relative to it (``data/synthetic``, ``runs/smoke_cris``), so a chapter executed from
``notebooks/``, a lone notebook in Colab and ``python -m refseg_core train`` from anywhere all find the
same dataset and write the same run. ``make book`` and ``make test`` point it into ``_build/``.

Paths a user gives (an override, ``--set``, their own YAML file) are taken as given: absolute, or
relative to the working directory, as usual on a command line.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "REFSEG_HOME"
DEFAULT = "~/refseg-book"
CONFIG_PATH_KEYS = ("data_root", "output_dir")  # the keys of a shipped configuration resolved against home()


def home() -> Path:
    """The refseg home (absolute; not created here)."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT).expanduser().resolve()


def under_home(value: str | os.PathLike) -> str:
    """``value`` unchanged when absolute, else ``home() / value``."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else home() / p)


def readable(value: str | os.PathLike) -> str:
    """``value`` as a reader should see it: under the refseg home, written from ``$REFSEG_HOME`` (when the
    variable is set) or ``~/refseg-book`` (its default), so that a page built on another machine shows no
    path of that machine; any other path unchanged."""
    p = Path(value).expanduser()
    try:
        rel = p.resolve().relative_to(home())
    except ValueError:
        return str(value)
    root = "$" + ENV_VAR if os.environ.get(ENV_VAR) else DEFAULT
    return root if rel == Path(".") else f"{root}/{rel.as_posix()}"
