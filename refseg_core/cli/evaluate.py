"""``python -m refseg_core evaluate --checkpoint CKPT --split S [--config FILE] [--save-predictions]``.

``--checkpoint`` is a checkpoint file, a run folder, or ``best`` / ``last`` (in the ``output_dir`` of
``--config``); a folder, or no ``--checkpoint`` with a ``--config``, scores the run's ``best.pt`` when it
kept one (``select_best``: the official protocol, :mod:`refseg_core.engine.selection`) and ``last.pt``
otherwise, and says which.

Scores every sentence of every ref of a split with the official CRIS post-processing and writes
``<output_dir>/eval_<dataset>_<split>.json`` (metrics) and, with ``--save-predictions``,
``predictions_<dataset>_<split>.json`` (per sample: ref_id, sent_id, iou, mask as COCO RLE).
``--dataset refcoco_m --data-root DIR`` scores the checkpoint on a dataset fetched by ``data fetch``
instead (RefCOCO-M's scores are printed and stored labelled RefCOCO-M: it is not RefCOCO val).
Data, input size and threshold come from ``--config`` (plus ``--set``) or else from the checkpoint's
own config; a ``--config`` for another model, or for other synthetic data than the checkpoint was
trained on, is refused. The files go to ``--out`` or else beside the checkpoint; an eval file there that
scores another checkpoint is not replaced without ``--overwrite``. Runs under torchrun too (each rank
scores a shard).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument(
        "--checkpoint",
        help="a checkpoint file, a run folder, or best / last (in --config's output_dir); default: the "
        "run's best.pt when it kept one, else last.pt",
    )
    parser.add_argument("--config", help="YAML parameter file (default: the config saved in the checkpoint)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    from refseg_core.data.sources import DATASETS

    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        help="score on this fetched real dataset instead of the config's (e.g. refcoco_m; sets dataset, "
        "its split_by and synthetic: false)",
    )
    parser.add_argument(
        "--data-root", help="the data_root that holds --dataset (python -m refseg_core data fetch)"
    )
    parser.add_argument("--split", action="append", help="split to score (repeatable; default: val_split)")
    parser.add_argument(
        "--save-predictions", action="store_true", help="also write per-sample RLE predictions"
    )
    parser.add_argument(
        "--first-sentence-only", action="store_true", help="score only each ref's first sentence"
    )
    parser.add_argument("--out", help="output folder (default: the checkpoint's folder)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace eval files in --out that score another checkpoint"
    )


def run(args) -> int:
    import torch

    from refseg_core import engine
    from refseg_core.config import load_config
    from refseg_core.engine import distributed as distu
    from refseg_core.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from refseg_core.engine.results import eval_meta, write_eval

    args.overrides = dataset_overrides(args) + list(args.overrides)
    try:
        args.checkpoint = str(choose_checkpoint(args.checkpoint, args.config, args.overrides))
        ckpt = load_checkpoint(args.checkpoint)
        if args.config:
            cfg = load_config(args.config, args.overrides)
        else:
            from refseg_core.engine.run_dir import resume_config

            cfg = resume_config(ckpt, args.checkpoint, args.overrides)
        check_same_model_and_data(ckpt, cfg, args.checkpoint)
        out_dir = Path(args.out) if args.out else Path(args.checkpoint).parent
        for split in args.split or [cfg.val_split]:
            check_eval_file(out_dir / f"eval_{cfg.dataset}_{split}.json", args.checkpoint, args.overwrite)
        info = distu.env_info()
        device = distu.resolve_device(cfg.device, info)
        info = distu.setup(device)
        refer = engine.prepare_data(cfg, info)
        model = model_from_checkpoint(ckpt, map_location=device, source=args.checkpoint)
        results = {}
        for split in args.split or [cfg.val_split]:
            res = engine.evaluate(
                model,
                refer,
                split=split,
                input_size=cfg.input_size,
                batch_size=cfg.eval_batch_size or max(1, cfg.batch_size // info.world_size),
                threshold=cfg.eval_threshold,
                device=device,
                max_items=cfg.max_eval_items,
                first_sentence_only=args.first_sentence_only,
                precision=cfg.precision,
                num_workers=cfg.num_workers,
                return_records=args.save_predictions,
            )
            metrics, records = res if args.save_predictions else (res, None)
            results[split] = metrics
            if info.is_main:
                meta = eval_meta(
                    cfg, split, args.checkpoint, model.config.get("name"), checkpoint_epoch=ckpt.get("epoch")
                )
                write_eval(out_dir, metrics, meta, records)
                print(f"{split_label(cfg.dataset, split)}: " + json.dumps(metrics))
    except (ValueError, OSError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError as exc:
        print(f"evaluate: error: CUDA out of memory; lower eval_batch_size ({exc})", file=sys.stderr)
        return 4
    finally:
        distu.cleanup()
    return 0


def dataset_overrides(args) -> list[str]:
    """``--dataset`` / ``--data-root`` as ``--set`` items (placed before the user's own ``--set``)."""
    from refseg_core.data.refer import VALID_SPLITS_BY

    out = []
    if getattr(args, "dataset", None):
        out += [f"dataset={args.dataset}", f"split_by={VALID_SPLITS_BY[args.dataset][0]}", "synthetic=false"]
    if getattr(args, "data_root", None):
        out.append(f"data_root={json.dumps(str(Path(args.data_root).expanduser()))}")
    return out


def split_label(dataset: str, split: str) -> str:
    """How a score is labelled: the split, and for RefCOCO-M the benchmark too (it is not RefCOCO val)."""
    from refseg_core.data.sources import label

    return f"{label(dataset)} {split}" if dataset == "refcoco_m" else split


def choose_checkpoint(checkpoint, config, overrides) -> Path:
    """The file to score: ``checkpoint`` when it is a file; else the best or last checkpoint of a run folder
    (``checkpoint`` itself, or the ``output_dir`` of ``config``), the choice printed."""
    from refseg_core.engine.selection import pick_checkpoint

    which = checkpoint if checkpoint in ("best", "last") else "auto"
    if checkpoint is not None and which == "auto" and not Path(checkpoint).is_dir():
        return Path(checkpoint)  # a file (load_checkpoint names it when it is missing)
    if checkpoint is None or which != "auto":
        if not config:
            raise ValueError(
                "give --checkpoint (a checkpoint file or a run folder), or --config to score that run's "
                f"{'best.pt or last.pt' if checkpoint is None else checkpoint + '.pt'}"
            )
        from refseg_core.config import load_config

        folder = Path(load_config(config, overrides).output_dir)
    else:
        folder = Path(checkpoint)
    path, why = pick_checkpoint(folder, which)
    print(f"evaluate: {why}")
    return path


SYNTHETIC_KEYS = ("synthetic_seed", "synthetic_num_images", "synthetic_image_size")


def check_same_model_and_data(ckpt: dict, cfg, where) -> None:
    """Refuse a config for another model, or for other synthetic data of the checkpoint's dataset."""
    name = (ckpt.get("model_config") or {}).get("name")
    saved = ckpt.get("config") or {}
    if name is not None and saved and cfg.model != name:
        raise ValueError(f"parameter 'model' is {cfg.model!r} but checkpoint {where} holds a {name} model")
    if saved.get("synthetic") and cfg.synthetic and cfg.dataset == saved.get("dataset"):
        for key in SYNTHETIC_KEYS:
            if key in saved and getattr(cfg, key) != saved[key]:
                raise ValueError(
                    f"parameter {key!r} is {getattr(cfg, key)!r} but checkpoint {where} was trained "
                    f"on synthetic data with {key} {saved[key]!r}; evaluate on the data it was "
                    f"trained on (omit --config, or set {key}={saved[key]!r})"
                )


def check_eval_file(path: Path, checkpoint, overwrite: bool) -> None:
    """An eval file that scores another checkpoint is not replaced unless ``overwrite``."""
    if overwrite or not path.is_file():
        return
    try:
        other = json.loads(path.read_text()).get("meta", {}).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        other = None
    if other is None or not _same_file(other, checkpoint):
        raise ValueError(
            f"{path} already holds the scores of {other or 'another run'}; choose another --out "
            "or pass --overwrite"
        )


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False
