"""``python -m refseg_core train --config FILE [--set key=value ...] [--resume CKPT]`` (torchrun-ready).

Exit status: 0 done; 2 bad parameters or missing data; 3 non-finite loss; 4 CUDA out of memory;
128 + signal number after SIGINT / SIGTERM (a checkpoint was written first).
"""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--config", help="YAML parameter file (params/*.yaml); keys are TrainConfig fields")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter (YAML value syntax); repeatable")
    parser.add_argument("--resume", help="checkpoint to continue from (output_dir/last.pt)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args) -> int:
    from refseg_core import distributed as distu
    from refseg_core import engine
    from refseg_core.config import load_config

    try:
        cfg = load_config(args.config, args.overrides)
        result = engine.train(cfg, progress=not args.quiet, resume=args.resume)
    except engine.TrainingInterrupted as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 128 + int(exc.signum)
    except engine.NonFiniteLossError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 3
    except engine.OutOfMemory as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 4
    except (ValueError, FileNotFoundError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        distu.cleanup()
    if distu.env_info().is_main:
        print(json.dumps({k: v for k, v in result.metrics.items()}, indent=None))
        print(f"wrote {result.output_dir / 'metrics.json'} and {result.checkpoint}")
    return 0
