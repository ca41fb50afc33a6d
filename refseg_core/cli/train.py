"""``python -m refseg_core train --config NAME_OR_FILE [--set key=value ...] [--resume CKPT] [--overwrite]
[--dry-run]`` (torchrun-ready).

``--config`` names a shipped configuration (``smoke_cris``, ``cris_r50_refcoco``, ...) or a YAML file;
``--dry-run`` prints the resolved configuration as YAML and stops, exactly what a chapter prints with
``dry_run = True`` for the same ``config`` and ``overrides``.

``--resume CKPT`` alone continues the checkpoint's own run (its saved configuration, in the checkpoint's
folder); ``--set`` (or ``--config``) may then change only what is safe to change on resume
(:data:`refseg_core.engine.run_dir.RESUME_SAFE`: epochs, time limit, logging, device, ...). A new run into an
``output_dir`` that already holds one is refused unless ``--overwrite``.

Exit status: 0 done; 2 bad parameters, missing data or an unusable output_dir; 3 non-finite loss;
4 CUDA out of memory; 128 + signal number after SIGINT / SIGTERM (a checkpoint was written first).
"""

from __future__ import annotations

import json
import signal
import sys


def add_arguments(parser) -> None:
    parser.add_argument(
        "--config",
        help="a shipped configuration's name (smoke_cris, cris_r50_refcoco, ...; see "
        "refseg_core/configs/) or a YAML file; keys are TrainConfig fields",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter (YAML value syntax); repeatable",
    )
    parser.add_argument(
        "--resume",
        help="checkpoint to continue from (output_dir/last.pt); without --config "
        "the checkpoint's own configuration is used",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in output_dir (its last.pt, logs and metrics are removed)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved configuration as YAML and stop before training",
    )


def run(args) -> int:
    from refseg_core import engine
    from refseg_core.config import load_config, to_yaml
    from refseg_core.engine import distributed as distu

    try:
        own_config = args.resume and not args.config  # the checkpoint's configuration, read by train
        if args.dry_run:
            if own_config:
                from refseg_core.engine.checkpoint import load_checkpoint
                from refseg_core.engine.run_dir import resume_config

                cfg = resume_config(load_checkpoint(args.resume), args.resume, args.overrides)
            else:
                cfg = load_config(args.config, args.overrides)
            print(to_yaml(cfg), end="")
            return 0
        result = engine.train(
            None if own_config else load_config(args.config, args.overrides),
            progress=not args.quiet,
            resume=args.resume,
            overwrite=args.overwrite,
            overrides=args.overrides if own_config else (),
        )
    except engine.TrainingInterrupted as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 128 + int(exc.signum)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, without a traceback
        print(
            "train: stopped by a second Ctrl-C; the last checkpoint written (if any) is in the run's "
            "output_dir",
            file=sys.stderr,
        )
        return 128 + int(signal.SIGINT)
    except engine.NonFiniteLossError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 3
    except engine.OutOfMemory as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 4
    except (ValueError, OSError) as exc:  # FileNotFoundError, no space left, permissions
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        distu.cleanup()
    if distu.env_info().is_main:
        print(json.dumps({k: v for k, v in result.metrics.items()}, indent=None))
        print(f"wrote {result.output_dir / 'metrics.json'} and {result.checkpoint}")
        if result.best is not None:
            print(
                f"best {result.best['split']} mIoU {100 * result.best['mIoU']:.2f} at epoch "
                f"{result.best['epoch']}: {result.output_dir / result.best['checkpoint']} (what evaluate scores)"
            )
    return 0
