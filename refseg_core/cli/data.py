"""``python -m refseg_core data fetch|verify <dataset> [--root DIR]``: real data in the REFER layout.

``data fetch refcoco --root DIR --images val`` downloads the annotations (Hugging Face by default,
``--source archive`` for the Wayback copies of the REFER archives), converts them, verifies them by
content and fetches the COCO images of the named splits; ``data verify`` re-checks a fetched folder
against its manifest. ``--root`` defaults to ``<refseg home>/data``, where the shipped configurations
look. Sources: ``refseg_core/data/sources.yaml``; a ``REFSEG_DATA_SOURCES=file.yaml`` overlay changes
them (a mirror, or a stand-in server) and ``HF_ENDPOINT`` the Hugging Face endpoint.
"""

from __future__ import annotations

import sys

from refseg_core.data.sources import DATASETS, ROUTES, label


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    f = sub.add_parser("fetch", help="download, convert and verify a dataset")
    f.add_argument("dataset", choices=DATASETS)
    f.add_argument("--root", help="data_root to write (default: <refseg home>/data)")
    f.add_argument(
        "--source",
        choices=ROUTES,
        help="hf (Hugging Face) or archive (the REFER zips); default: the first listed",
    )
    f.add_argument(
        "--images", default="none", help="COCO images: none, all, or splits such as val,testA,testB"
    )
    f.add_argument("--image-source", default="per-image", choices=("per-image", "zip"))
    f.add_argument(
        "--keep-zip", action="store_true", help="keep downloaded archives (train2014.zip, refcoco.zip)"
    )
    f.add_argument(
        "--overwrite", action="store_true", help="replace a dataset folder or damaged images that differ"
    )
    f.add_argument("--workers", type=int, default=8, help="parallel image downloads")
    f.add_argument("--cache-dir", help="the huggingface_hub cache (default: its own)")
    v = sub.add_parser("verify", help="re-check a fetched dataset against its manifest")
    v.add_argument("dataset", choices=DATASETS)
    v.add_argument("--root", help="data_root (default: <refseg home>/data)")


def _print_counts(counts: dict, label: str) -> None:
    for sb, splits in counts.items():
        for s, c in splits.items():
            print(
                f"  {label} {sb:6s} {s:6s} refs {c['refs']:7,d}  sentences {c['sentences']:8,d}  images {c['images']:7,d}"
            )


def run(args) -> int:
    from refseg_core.data.errors import DataError
    from refseg_core.data.fetch import default_root, fetch
    from refseg_core.data.verify import verify

    root = args.root or str(default_root())
    try:
        if args.action == "fetch":
            man = fetch(
                args.dataset,
                root,
                args.source,
                args.images,
                image_source=args.image_source,
                keep_zip=args.keep_zip,
                overwrite=args.overwrite,
                cache_dir=args.cache_dir,
                workers=args.workers,
            )
            src = man["source"]
            print(
                f"{man['label']} in {root}/{args.dataset}, from {src['name']} ({src['address']}, revision "
                f"{src['revision']} = {src['resolved_revision']}); verified:"
            )
            _print_counts(man["counts"], man["label"].split()[0])
            img = man.get("images") or {}
            if "fetched_images" in man:
                st = man["fetched_images"]
                print(
                    f"  images: {st['fetched']:,} fetched, {st['present']:,} already in place; "
                    f"{img['count']:,} for {img['splits']} in {root}/{img['dir']}"
                )
            elif img:
                print(f"  images: {img['count']:,} in {root}/{img['dir']}")
            print(f"  expected counts from {man['expected_from']}")
            warns = man.get("warnings", [])
        else:
            rep = verify(args.dataset, root)
            how = "the files match the manifest" if rep.manifest else "no manifest to compare the files with"
            print(f"{args.dataset} in {root}/{args.dataset}: {how}; verified by content:")
            _print_counts(rep.counts, label(rep.dataset).split()[0])  # RefCOCO-M named as such
            print(f"  {rep.images_checked:,} images decode at their recorded size")
            print(f"  expected counts from {rep.expected_from}")
            warns = rep.warnings
    except (DataError, ValueError, OSError) as exc:
        print(f"data {args.action}: error: {exc}", file=sys.stderr)
        return 2
    for w in warns:
        print(f"  warning: {w}")
    return 0
