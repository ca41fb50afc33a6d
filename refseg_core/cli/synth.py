"""``python -m refseg_core synth --out DIR``: write the synthetic dataset in REFER / G-REFER format
(:func:`refseg_core.data.synthetic.generate`) and print its counts per split."""

from __future__ import annotations

from refseg_core.data.synthetic import DATASET_NAME, generate


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="data_root to write (images/ and <dataset>/ inside)")
    parser.add_argument("--flavour", default="refcoco", choices=sorted(DATASET_NAME))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument(
        "--image-size", type=int, default=160, help="mean image side; each side x U(0.75, 1.25)"
    )
    parser.add_argument("--workers", type=int, default=0, help="rendering processes (0 = this process)")
    parser.add_argument("--overwrite", action="store_true", help="replace a different existing dataset")


def run(args) -> int:
    try:
        m = generate(
            args.out,
            args.flavour,
            args.seed,
            args.num_images,
            args.image_size,
            num_workers=args.workers,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as exc:
        print(f"synth: error: {exc}")
        return 2
    c = m["counts"]
    print(
        f"wrote {m['dataset']} to {m['data_root']}: {c['images']} images, {c['annotations']} objects, "
        f"{c['refs']} refs, {c['sentences']} sentences"
    )
    for s, v in c["splits"].items():
        print(f"  {s:6s} images {v['images']:6d}  refs {v['refs']:6d}  sentences {v['sentences']:6d}")
    if "no_target_refs" in c:
        print(f"  multi-target refs {c['multi_target_refs']}, no-target refs {c['no_target_refs']}")
    return 0
