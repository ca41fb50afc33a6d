"""What a chapter needs around its subject, kept once here so that chapters call public API only: the
parameters-cell logic (:func:`resolve_config`, with ``dry_run``), showing the package's own code
(:func:`show_source`), showing Markdown (:func:`show_markdown`; tables come from
:mod:`refseg_core.tables`), and reusing a finished run
instead of training it again (:func:`trained_checkpoint`, :func:`trained_run`).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Mapping

from refseg_core.config import TrainConfig, load_config, make_config, to_yaml
from refseg_core.paths import readable


def in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def stop_here(message: str) -> None:
    """End the notebook's execution here, as a success: every later cell runs as an empty cell (an IPython
    input transformer), so papermill and nbval finish with status 0 and the output notebook shows
    ``message`` last. Outside IPython it raises ``SystemExit(0)`` after printing ``message``."""
    print(message)
    if not in_ipython():
        raise SystemExit(0)
    from IPython import get_ipython

    shell = get_ipython()
    shell.input_transformers_post.append(lambda lines: [])


def resolve_config(
    config: str | os.PathLike | None,
    overrides: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    label: str | None = None,
) -> TrainConfig:
    """A chapter's run: ``load_config(config, overrides)`` (the same function as ``train --config``).
    With ``dry_run`` the resolved configuration is printed as YAML (what ``train --dry-run`` prints; a
    ``label`` line first when a chapter resolves several) and the notebook stops before training."""
    cfg = load_config(config, dict(overrides or {}))
    if dry_run:
        if label:
            print(f"# {label}")
        print(to_yaml(cfg), end="")
    return cfg


def finish_dry_run(dry_run: bool) -> None:
    """After the chapter's :func:`resolve_config` calls: stop the notebook when ``dry_run`` is set."""
    if dry_run:
        stop_here("dry_run: the configuration(s) above were resolved; nothing was trained")


def show_markdown(text: str) -> None:
    """Display ``text`` (a table from :mod:`refseg_core.tables`, a verdict) as Markdown in a chapter."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def show_source(obj, methods=None) -> None:
    """Display the source of a refseg_core function, method or class: the book shows the package's code,
    it never keeps a second copy. With ``methods``, a class is shown with only those methods
    (:func:`refseg_core.listings.class_source`)."""
    from IPython.display import Code, display

    if methods is None:
        text = inspect.getsource(obj)
    else:
        from refseg_core.listings import class_source

        text = class_source(obj, methods)
    display(Code(text, language="python"))


def show_class(cls: type, methods=("__init__", "forward")) -> None:
    """A class as a chapter shows a module: its statement, docstring, ``__init__`` and ``forward``."""
    show_source(cls, methods)


def finished_run_matches(checkpoint: Path, cfg: TrainConfig) -> bool:
    """True when ``checkpoint`` is the end of a run of exactly ``cfg`` (same configuration, all epochs)."""
    from refseg_core.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    saved = ckpt.get("config")
    return (
        isinstance(saved, dict)
        and make_config(saved).to_dict() == cfg.to_dict()
        and int(ckpt["epoch"]) >= cfg.epochs
    )


def _finished(cfg: TrainConfig, retrain: bool) -> Path | None:
    """``output_dir/last.pt`` when it ends exactly the run ``cfg`` describes; None when there is none (or
    ``retrain``). A folder holding a *different* run is never replaced silently: an error unless ``retrain``."""
    ckpt = Path(cfg.output_dir) / "last.pt"
    if not ckpt.is_file() or retrain:
        return None
    if finished_run_matches(ckpt, cfg):
        print(f"reusing {readable(ckpt)} (a finished run of this configuration)")
        return ckpt
    raise ValueError(
        f"{ckpt} holds a run of another configuration; set retrain = True to replace it, or "
        "point output_dir elsewhere with overrides"
    )


def trained_checkpoint(cfg: TrainConfig, retrain: bool = False, progress: bool = True) -> Path:
    """The checkpoint of the finished run ``cfg`` describes: ``output_dir/last.pt`` when it already holds
    exactly that run (another chapter, or an earlier execution, trained it), else trained now."""
    ckpt = _finished(cfg, retrain)
    return ckpt if ckpt is not None else trained_run(cfg, retrain, progress).checkpoint


def trained_run(cfg: TrainConfig, retrain: bool = False, progress: bool = True):
    """The :class:`~refseg_core.engine.TrainResult` of the run ``cfg`` describes: read back from its folder
    (:func:`refseg_core.engine.finished.read_run`) when it already holds exactly that finished run, else
    trained now (``retrain`` replaces a folder that holds another run)."""
    from refseg_core import engine
    from refseg_core.engine.finished import read_run

    if _finished(cfg, retrain) is not None:
        return read_run(cfg.output_dir, cfg)
    print(f"training {cfg.model} into {cfg.output_dir} (no finished run of this configuration there)")
    return engine.train(cfg, progress=progress, overwrite=retrain)
