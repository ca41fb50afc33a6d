"""A run's folder (``output_dir``): who may write into it, and what may change when a run is resumed.

* :func:`claim` — before a run writes anything: ``output_dir`` must be a folder that can be written;
  one that already holds a run (``last.pt``, ``log.csv`` or ``metrics.json``) is refused unless the run
  resumes the checkpoint kept in that very folder, or ``overwrite=True`` (then that run's files are
  removed first). A lock file (``.refseg.lock``) is held while the run writes, so a second run in the
  same folder is refused instead of mixing its files in; temporary files left by killed runs are removed.
* :func:`check_resume` — the parameters a resumed run may change (:data:`RESUME_SAFE`); any other
  difference from the checkpoint's own configuration is an error naming the key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from refseg_core.config import make_config, parse_override

# Files that mark a folder as holding a run (config.yaml alone is written before anything is trained).
RUN_MARKERS = ("last.pt", "best.pt", "log.csv", "metrics.json")
LOCK_NAME = ".refseg.lock"

# Parameters that may differ from the checkpoint's when resuming: how long and how often, where the
# files go and how fast it runs. Anything else (model, data, optimiser, schedule, seed, batch) would
# either be silently ignored (the optimiser and schedule states are restored) or change the run.
RESUME_SAFE = frozenset(
    {
        "epochs",
        "time_limit_s",
        "log_every",
        "eval_every",
        "checkpoint_every",
        "tensorboard",
        "num_workers",
        "device",
        "precision",
        "compile",
        "channels_last",
        "eval_batch_size",
        "output_dir",
        "data_root",
        "init_from",
    }
)


def check_resume(ckpt: Mapping[str, Any], cfg, resume) -> None:
    """Raise ``ValueError`` naming the first parameter of ``cfg`` (a TrainConfig) that differs from the
    configuration saved in the checkpoint ``ckpt`` (loaded from ``resume``) and may not change on resume."""
    mcfg = ckpt.get("model_config") or {}
    if isinstance(mcfg, Mapping) and mcfg.get("name") not in (None, cfg.model):
        raise ValueError(
            f"--resume {resume} holds a {mcfg.get('name')} model, but parameter 'model' is "
            f"{cfg.model!r}; resume it with its own configuration (omit --config)"
        )
    saved = ckpt.get("config")
    if not isinstance(saved, Mapping):
        return
    now = cfg.to_dict()
    for key, value in now.items():
        if key in RESUME_SAFE or key not in saved:
            continue
        old = saved[key]
        if key == "milestones" and isinstance(old, list):
            old = sorted(old)
        if old != value:
            raise ValueError(
                f"parameter {key!r} is {value!r} but {old!r} in the checkpoint {resume}; a resumed "
                f"run may change only {', '.join(sorted(RESUME_SAFE - {'init_from'}))} "
                "(start a new run with init_from to change the others)"
            )


def _held(out: Path) -> list[str]:
    return [name for name in RUN_MARKERS if (out / name).exists()]


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _clear(out: Path) -> None:
    """Remove a previous run's files (and only those) from ``out``."""
    for name in (*RUN_MARKERS, "config.yaml"):
        (out / name).unlink(missing_ok=True)
    for pattern in ("eval_*.json", "predictions_*.json"):
        for f in out.glob(pattern):
            f.unlink(missing_ok=True)
    if (out / "tb").is_dir():
        shutil.rmtree(out / "tb")


def _remove_stale_temporaries(out: Path) -> list[str]:
    """Remove the temporary files of writes that a killed run never finished (we hold the lock: none is
    live); returns their names."""
    removed = []
    for name in (*RUN_MARKERS, "config.yaml"):  # refseg_core.io.temp_name: .<name>.tmp<pid>
        for f in out.glob(f".{name}.tmp*"):
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f.name)
    return removed


def describe(out: Path) -> str:
    """What a run folder holds, for messages: ``"config.yaml, log.csv, tb/"`` (or ``"nothing"``)."""
    names = [n for n in (*RUN_MARKERS, "config.yaml") if (out / n).is_file()]
    names += [f"{n}/" for n in ("tb",) if (out / n).is_dir()]
    return ", ".join(sorted(names)) or "nothing of a run"


def _make_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"parameter 'output_dir' {str(out)!r} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise ValueError(
            f"parameter 'output_dir' {str(out)!r} lies under a regular file; choose a folder path"
        ) from None
    except OSError as exc:
        raise ValueError(
            f"parameter 'output_dir' {str(out)!r} cannot be created ({exc.strerror or exc})"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"parameter 'output_dir' {str(out)!r} is not writable")


class _Lock:
    """An exclusive ``flock`` on ``<out>/.refseg.lock`` (released by the kernel if the process dies)."""

    def __init__(self, out: Path):
        self.path = out / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): an exclusive create is the lock
            fcntl = None
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o644)
            except FileExistsError:
                raise ValueError(self._busy_message()) from None
            except OSError as exc:
                raise ValueError(
                    f"parameter 'output_dir' {str(self.path.parent)!r} is not writable "
                    f"({exc.strerror or exc})"
                ) from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise ValueError(self._busy_message()) from None
                try:  # the holder before us may have removed the file after we opened it: lock the new one
                    if os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                        os.close(fd)
                        continue
                except FileNotFoundError:
                    os.close(fd)
                    continue
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            self.fd = fd
            return
        raise ValueError(self._busy_message())

    def _busy_message(self) -> str:
        try:
            who = self.path.read_text().strip() or "another process"
        except OSError:
            who = "another process"
        return (
            f"parameter 'output_dir' {str(self.path.parent)!r} is in use by another run ({who}); wait for "
            f"it to finish or choose another output_dir"
        )

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)  # closing drops the flock
        self.fd = None


@contextlib.contextmanager
def claim(output_dir, *, resume=None, overwrite: bool = False, enabled: bool = True) -> Iterator[Path]:
    """Hold ``output_dir`` for one run (see the module docstring); ``enabled=False`` (non-main DDP
    ranks) checks nothing and holds nothing. Errors are ``ValueError`` naming the folder."""
    out = Path(output_dir)
    if not enabled:
        yield out
        return
    _make_folder(out)
    lock = _Lock(out)
    lock.acquire()
    try:
        stale = _remove_stale_temporaries(out)
        held = _held(out)
        if held:
            own = resume is not None and _same_folder(Path(resume).parent, out)
            if overwrite and not own:
                _clear(out)
            elif not own and not (out / "last.pt").is_file():  # killed before its first checkpoint
                partial = f"; removed the partial checkpoint {', '.join(stale)}" if stale else ""
                raise ValueError(
                    f"parameter 'output_dir' {str(out)!r} holds a run that stopped before its first "
                    f"checkpoint ({describe(out)}; no last.pt to resume{partial}); start it again with "
                    "--overwrite (overwrite=True), or choose another output_dir"
                )
            elif not own:
                how = f"resuming {resume} into it would mix two runs; " if resume is not None else ""
                raise ValueError(
                    f"parameter 'output_dir' {str(out)!r} already holds a run ({', '.join(held)}); "
                    f"{how}choose another output_dir, continue that run with --resume "
                    f"{out / 'last.pt'}, or replace it with --overwrite (overwrite=True)"
                )
        yield out
    finally:
        lock.release()


def resume_config(ckpt: Mapping[str, Any], ckpt_path, overrides: Sequence[str] = ()):
    """The configuration of a resumed run given no ``--config``: the checkpoint's own, in the checkpoint's
    folder, plus ``overrides``."""
    saved = ckpt.get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"checkpoint {ckpt_path} holds no configuration; pass the run's --config")
    values = dict(saved, output_dir=str(Path(ckpt_path).parent))
    for item in overrides:
        k, v = parse_override(item)
        values[k] = v
    try:
        return make_config(values)
    except ValueError as exc:
        raise ValueError(
            f"{exc} (from --set)" if overrides else f"{exc} (in checkpoint {ckpt_path})"
        ) from None


__all__ = ["LOCK_NAME", "RESUME_SAFE", "RUN_MARKERS", "check_resume", "claim", "describe", "resume_config"]
