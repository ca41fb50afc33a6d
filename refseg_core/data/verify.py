"""Verification of fetched data by content, after every fetch and by ``data verify``.

No sum is published for most of these files, so the content is the check:

* **counts** per split: refs and images must equal the expected counts (``published.yaml``'s
  ``datasets``, each number with its source; :func:`refseg_core.data.sources.expected_counts`), else an
  error names the dataset, split, expected and found; sentences differing is a warning naming both
  numbers (that table has one third-party source). A split present but not expected, or expected but
  absent, is an error.
* **masks**: every ref's annotations exist in ``instances.json`` and decode (pycocotools); a targeted ref
  whose mask is empty is a warning listing the ref ids, not an error, because a few real REFER
  annotations are degenerate (the loader keeps them for evaluation: ``Refer.empty_mask_refs``).
* **images**: every image of the checked splits decodes at the width and height ``instances.json``
  records (``coco_images.problem``).
* **the manifest** (``data verify``): every recorded file still has its SHA-256, and the counts are those
  recorded. A folder without one (a copy from elsewhere) gets the content checks, without its images.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from refseg_core.data import coco_images, manifest, sources
from refseg_core.data.errors import DataError
from refseg_core.data.refer import AnnotationError, Refer

WHAT = ("refs", "images", "sentences")


@dataclass
class Report:
    """What a verification found: ``counts[split_by][split] = {refs, sentences, images}``, the warnings,
    where the expected counts came from, and how many images decoded."""

    dataset: str
    counts: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    expected_from: str = ""
    images_checked: int = 0
    manifest: bool = False  # whether the files were compared with a manifest


def split_bys(folder: Path, dataset: str) -> list[str]:
    """The split_by files present in ``folder`` (``refs(unc).p`` -> ``unc``; gRefCOCO: ``unc``)."""
    if dataset == "grefcoco":
        return ["unc"] if list(folder.glob("grefs(unc).*")) else []
    return sorted(p.name[5:-3] for p in folder.glob("refs(*).p"))


def counts_of(refer: Refer) -> dict:
    out = {}
    for s in refer.splits():
        st = refer.stats(s)
        out[s] = {k: st[k] for k in WHAT}
    return out


def check_counts(dataset: str, split_by: str, found: dict, expected: dict, source: str, where) -> list[str]:
    """Compare ``found`` ``{split: {refs, sentences, images}}`` with ``expected`` of the same form.

    Raises :class:`DataError` for a ref or image count that differs, a missing or an unexpected split;
    returns warnings for sentence counts that differ."""
    name = f"{dataset} ({split_by})"
    extra = [s for s in found if s not in expected]
    if extra:
        raise DataError(
            f"{name}: {where} has the split(s) {extra}, not among the expected {list(expected)} ({source})"
        )
    out = []
    for split, exp in expected.items():
        got = found.get(split, {"refs": 0, "images": 0, "sentences": 0})
        for what in ("refs", "images"):
            if what in exp and got[what] != exp[what]:
                raise DataError(
                    f"{name} {split}: {exp[what]:,} {what} expected ({source}), {got[what]:,} found in {where}"
                )
        if "sentences" in exp and got["sentences"] != exp["sentences"]:
            out.append(
                f"{name} {split}: {exp['sentences']:,} sentences expected ({source}), "
                f"{got['sentences']:,} found in {where}"
            )
    return out


def check_masks(refer: Refer) -> list[str]:
    """Every ref's annotations exist and decode; warnings for targeted refs with empty masks."""
    try:
        empty = refer.empty_mask_refs(None)
    except (AnnotationError, ValueError) as exc:
        raise DataError(str(exc)) from exc
    if not empty:
        return []
    ids = [r["ref_id"] for r in empty]
    return [
        f"{refer.dataset} ({refer.split_by}): {len(ids)} refs have an empty mask (degenerate annotations; "
        f"kept, as the loader does): ref ids {ids[:10]}{' ...' if len(ids) > 10 else ''}"
    ]


def check_images(refer: Refer, splits: list[str] | None, workers: int = 8, progress: bool = True) -> int:
    """Every image of ``splits`` decodes at its recorded size; returns how many were checked."""
    items = coco_images.needed(refer, splits)

    def one(it):
        p = refer.image_dir / it["file_name"]
        return p, ("is missing" if not p.is_file() else coco_images.problem(p, it["width"], it["height"]))

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for p, why in tqdm(
            pool.map(one, items), total=len(items), desc="verifying images", unit="img", disable=not progress
        ):
            if why:
                raise DataError(f"{p} {why} (image of {refer.dataset} {'/'.join(splits or ['all splits'])})")
    return len(items)


def verify_folder(
    root: Path, dataset: str, image_splits: list[str] | None = (), progress: bool = True
) -> Report:
    """Verify ``root/<dataset>/`` by content (counts, masks; images of ``image_splits``: ``()`` none,
    ``None`` all)."""
    folder = root / dataset
    found_by = split_bys(folder, dataset)
    if not found_by:
        raise DataError(f"{folder} holds no refs file (refs(<split_by>).p or grefs(unc).json)")
    expected, source = sources.expected_counts(dataset)
    report = Report(dataset=dataset, expected_from=source)
    for i, sb in enumerate(found_by):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                refer = Refer(root, dataset, sb)
        except (AnnotationError, ValueError, FileNotFoundError) as exc:
            raise DataError(str(exc)) from exc
        report.counts[sb] = counts_of(refer)
        if expected and sb in expected:
            report.warnings += check_counts(
                dataset, sb, report.counts[sb], expected[sb], source, refer.refs_file
            )
        report.warnings += check_masks(refer)
        if i == 0 and image_splits != ():
            report.images_checked = check_images(refer, image_splits, progress=progress)
    if expected and not any(sb in expected for sb in found_by):
        raise DataError(f"{folder} has refs for {found_by} but the expected counts are for {list(expected)}")
    return report


def verify(dataset: str, root, progress: bool = True) -> Report:
    """``data verify``: the manifest's files and counts, then everything :func:`verify_folder` checks,
    with the images of the splits the manifest says were fetched."""
    sources.check_dataset(dataset)
    root = Path(root).expanduser()
    folder = root / dataset
    if not folder.is_dir():
        raise DataError(
            f"{folder} does not exist; fetch it with: python -m refseg_core data fetch {dataset} --root {root}"
        )
    man = manifest.read(folder)
    if man is None:  # a copy from elsewhere: its content can still be checked, not its files' sums
        report = verify_folder(root, dataset, (), progress)
        report.warnings.append(
            f"{folder} has no {manifest.NAME} (not fetched by data fetch): its files' sums and its images "
            "were not checked"
        )
        return report
    changed = manifest.changed_files(folder, man)
    if changed:
        raise DataError(
            f"{changed[0]}{' (and more)' if len(changed) > 1 else ''}; fetch again with --overwrite"
        )
    img = man.get("images") or {}
    splits = img.get("splits") if img.get("count") else ()
    report = verify_folder(root, dataset, None if splits == "all" else splits, progress)
    report.manifest = True
    if report.counts != man.get("counts"):
        raise DataError(
            f"{folder}: the counts {report.counts} differ from those the manifest records {man.get('counts')}"
        )
    return report


__all__ = ["Report", "check_counts", "check_images", "check_masks", "counts_of", "verify", "verify_folder"]
