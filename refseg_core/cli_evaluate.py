"""``python -m refseg_core evaluate --checkpoint CKPT --split S [--config FILE] [--save-predictions]``.

Scores every sentence of every ref of a split with the official CRIS post-processing and writes
``<output_dir>/eval_<dataset>_<split>.json`` (metrics) and, with ``--save-predictions``,
``predictions_<dataset>_<split>.json`` (per sample: ref_id, sent_id, iou, mask as COCO RLE).
Data, input size and threshold come from ``--config`` (plus ``--set``) or else from the checkpoint's
own config. Runs under torchrun too (each rank scores a shard).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by train (last.pt)")
    parser.add_argument("--config", help="YAML parameter file (default: the config saved in the checkpoint)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--split", action="append", help="split to score (repeatable; default: val_split)")
    parser.add_argument("--save-predictions", action="store_true", help="also write per-sample RLE predictions")
    parser.add_argument("--first-sentence-only", action="store_true", help="score only each ref's first sentence")
    parser.add_argument("--out", help="output folder (default: the config's output_dir)")


def run(args) -> int:
    import torch

    from refseg_core import distributed as distu
    from refseg_core import engine
    from refseg_core.checkpoint import load_checkpoint, model_from_checkpoint
    from refseg_core.config import load_config, make_config

    try:
        ckpt = load_checkpoint(args.checkpoint)
        if args.config:
            cfg = load_config(args.config, args.overrides)
        else:
            cfg = make_config(ckpt.get("config", {}))
            if args.overrides:
                cfg = load_config(None, {**cfg.to_dict(), **dict(_kv(o) for o in args.overrides)})
        info = distu.env_info()
        device = distu.resolve_device(cfg.device, info)
        info = distu.setup(device)
        refer = engine.prepare_data(cfg, info)
        model = model_from_checkpoint(ckpt, map_location=device)
        out_dir = Path(args.out or cfg.output_dir)
        results = {}
        for split in args.split or [cfg.val_split]:
            res = engine.evaluate(model, refer, split=split, input_size=cfg.input_size,
                                  batch_size=cfg.eval_batch_size or max(1, cfg.batch_size // info.world_size),
                                  threshold=cfg.eval_threshold, device=device, max_items=cfg.max_eval_items,
                                  first_sentence_only=args.first_sentence_only, precision=cfg.precision,
                                  num_workers=cfg.num_workers, return_records=args.save_predictions)
            metrics, records = res if args.save_predictions else (res, None)
            results[split] = metrics
            if info.is_main:
                out_dir.mkdir(parents=True, exist_ok=True)
                meta = {"checkpoint": str(args.checkpoint), "dataset": cfg.dataset, "split_by": cfg.split_by,
                        "split": split, "threshold": cfg.eval_threshold, "input_size": cfg.input_size,
                        "model": model.config.get("name")}
                engine._write_json(out_dir / f"eval_{cfg.dataset}_{split}.json", {**metrics, "meta": meta})
                if records is not None:
                    engine._write_json(out_dir / f"predictions_{cfg.dataset}_{split}.json",
                                       {"meta": meta, "predictions": records})
                print(f"{split}: " + json.dumps(metrics))
    except (ValueError, FileNotFoundError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError as exc:
        print(f"evaluate: error: CUDA out of memory; lower eval_batch_size ({exc})", file=sys.stderr)
        return 4
    finally:
        distu.cleanup()
    return 0


def _kv(item: str):
    from refseg_core.config import _parse_override

    return _parse_override(item)
