"""``python -m refseg_core predict --checkpoint CKPT --image IMG --text "..." [--out DIR]``.

Writes ``mask.png`` (0 / 255, the image's size), ``prob.png`` (probability x 255) and ``overlay.png``
(the image with the mask drawn by :func:`refseg_core.viz.overlay`) into ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from refseg_core.io import atomic_path


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--image", required=True, help="an image file (any mode PIL reads; converted to RGB)")
    parser.add_argument("--text", required=True, help="the referring expression")
    parser.add_argument("--out", default="prediction", help="output folder")
    parser.add_argument("--threshold", type=float, help="default: the checkpoint's eval_threshold (0.35)")
    parser.add_argument("--input-size", type=int, help="default: the checkpoint's input_size")
    parser.add_argument("--device", default="cpu")


def run(args) -> int:
    from PIL import Image, UnidentifiedImageError

    from refseg_core import engine
    from refseg_core.engine.checkpoint import load_checkpoint, model_from_checkpoint

    try:
        if args.threshold is not None and not 0 < args.threshold < 1:
            raise ValueError(f"--threshold must be in (0, 1), got {args.threshold}")
        if args.input_size is not None and (args.input_size < 32 or args.input_size % 32):
            raise ValueError(
                f"--input-size must be a positive multiple of 32 (the encoders' stride), "
                f"got {args.input_size}"
            )
        out = _output_folder(args.out)
        ckpt = load_checkpoint(args.checkpoint)
        cfg = ckpt.get("config", {})
        size = args.input_size or int(cfg.get("input_size", 416))
        threshold = args.threshold if args.threshold is not None else float(cfg.get("eval_threshold", 0.35))
        path = Path(args.image)
        if path.is_dir():
            raise ValueError(f"image {path} is a directory, not an image file")
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        try:
            with Image.open(path) as im:
                im.load()
                image = im.copy()
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"image {path} cannot be read: {exc}") from exc
        from refseg_core.engine import distributed as distu

        device = distu.resolve_device(args.device, distu.DistInfo())
        model = model_from_checkpoint(ckpt, map_location=device, source=args.checkpoint)
        from refseg_core.data.refer import to_rgb
        from refseg_core.text import expression_notes

        for note in expression_notes(model.tokenizer, args.text):
            print(f"predict: warning: {note}", file=sys.stderr)

        image = to_rgb(image)
        prob, mask = engine.predict(model, image, args.text, input_size=size, threshold=threshold)
    except (ValueError, OSError, TypeError) as exc:
        print(f"predict: error: {exc}", file=sys.stderr)
        return 2
    try:
        _write_outputs(out, image, prob, mask, args.text)
    except OSError as exc:  # disk full, permissions: nothing half-written (atomic files)
        print(
            f"predict: error: cannot write into --out {str(out)!r} ({exc.strerror or exc})", file=sys.stderr
        )
        return 2
    print(
        f"mask area {int(mask.sum())} of {mask.size} pixels; wrote {out / 'mask.png'}, {out / 'overlay.png'}"
    )
    return 0


def _output_folder(out) -> Path:
    """``--out`` as a folder path that can be made (checked before anything runs; created when writing)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    first = next((p for p in out.absolute().parents if p.exists()), None)
    if first is not None and not first.is_dir():
        raise ValueError(
            f"--out {str(out)!r} lies under the regular file {str(first)!r}; choose a folder path"
        )
    return out


def _write_outputs(out: Path, image, prob, mask, text: str) -> None:
    """``mask.png``, ``prob.png`` and ``overlay.png`` into ``out`` (created), each atomically."""
    import matplotlib
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    _save_png(Image.fromarray((mask * 255).astype(np.uint8)), out / "mask.png")
    _save_png(Image.fromarray((prob * 255).round().astype(np.uint8)), out / "prob.png")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refseg_core.viz import overlay

    fig, ax = plt.subplots(figsize=(5, 5 * image.height / image.width))
    try:
        overlay(ax, image, mask, title=text)
        fig.tight_layout()
        with atomic_path(out / "overlay.png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def _save_png(img, path: Path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
