"""REFER and G-REFER annotation loading: refs, COCO instances, target masks and images.

Over 350 lines on purpose: REFER and G-REFER share every reader and differ only in a few fields.

On-disk layout (lichengunc/refer; gRefCOCO of Liu et al., CVPR 2023)::

    <data_root>/<dataset>/refs(<split_by>).p     REFER: a pickle of a list of ref dicts
    <data_root>/grefcoco/grefs(unc).p            G-REFER: a pickle of a list of ref dicts, read when present
    <data_root>/grefcoco/grefs(unc).json         G-REFER: the same list as JSON, read otherwise
    <data_root>/<dataset>/instances.json         COCO: images, annotations, categories
    <data_root>/images/train2014/<file_name>     COCO train2014 images
    <data_root>/refcoco_m/images/<file_name>     RefCOCO-M's own photos (written from its parquet)

A ref is ``{ref_id, ann_id, category_id, image_id, file_name, split, sent_ids, sentences}`` and a
sentence is ``{raw, sent, sent_id, tokens}``. In G-REFER, ``ann_id`` and ``category_id`` may be
lists (multi-target) and ``ann_id == [-1]`` marks a no-target expression.

Pickles are loaded with :func:`safe_load_pickle`, which builds only plain containers and scalars, so a
downloaded annotation file cannot run code.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from refseg_core.paths import readable

# The letterbox border colour (CLIP mean) in 8-bit; transparent pixels are composited on it too, so that
# after CLIP normalisation they become 0, the same "no information" value as the letterbox border.
_CLIP_MEAN_RGB8 = (123, 117, 104)  # round(255 * (0.48145466, 0.4578275, 0.40821073))

VALID_SPLITS_BY = {
    "refcoco": ("unc", "google"),
    "refcoco+": ("unc",),
    "refcocog": ("umd", "google"),
    "grefcoco": ("unc",),
    "refcoco_m": ("unc",),
}
"""The dataset / split_by combinations released with REFER and gRefCOCO, and RefCOCO-M (RefCOCO unc val
re-segmented, converted by :mod:`refseg_core.data.refcoco_m`; a different benchmark from RefCOCO val)."""

OWN_IMAGES = {"refcoco_m": "images"}
"""Datasets whose photos ship with them: ``<data_root>/<dataset>/<folder>/`` instead of images/train2014."""


class AnnotationError(ValueError):
    """An annotation or image file is malformed, inconsistent, or refused (names the file / ref id)."""


# ----------------------------------------------------------------------------------------------------
# Safe file loading
# ----------------------------------------------------------------------------------------------------


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global: only dict, list, tuple, str, bytes, numbers, bool, None.

    Every route by which a pickle can call code (REDUCE, BUILD, INST, OBJ, NEWOBJ, extension codes)
    must first fetch a callable through ``find_class``; refusing it here means nothing is ever called.
    """

    def __init__(self, file, path: Path):
        # REFER's pickles were written by Python 2: their ``str`` objects arrive as bytes; decode as
        # UTF-8 (replacing the rare invalid byte) instead of the default ASCII, which would fail.
        super().__init__(file, encoding="utf-8", errors="replace")
        self._path = path

    def find_class(self, module: str, name: str):
        raise AnnotationError(
            f"{self._path}: refused to load global '{module}.{name}'; annotation pickles may contain only "
            "plain containers and scalars (a pickle that names a class or callable could run code)"
        )

    def persistent_load(self, pid):
        raise AnnotationError(f"{self._path}: refused persistent id {pid!r} in an annotation pickle")


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected {what} there")


def safe_load_pickle(path: str | Path, what: str = "an annotation pickle") -> Any:
    """Load a pickle that may contain only plain containers and scalars.

    Raises ``FileNotFoundError`` (naming the path and ``what`` belongs there) for a missing file and
    :class:`AnnotationError` naming the file for a refused global or a corrupt / truncated pickle.
    """
    path = Path(path)
    _require(path, what)
    with open(path, "rb") as f:
        try:
            return _PlainUnpickler(f, path).load()
        except AnnotationError:
            raise
        except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... all mean "corrupt"
            raise AnnotationError(
                f"{path}: corrupt or truncated pickle ({type(exc).__name__}: {exc})"
            ) from exc


def _load_json(path: Path, what: str) -> Any:
    _require(path, what)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: corrupt JSON ({exc})") from exc


# ----------------------------------------------------------------------------------------------------
# Image decoding to RGB
# ----------------------------------------------------------------------------------------------------


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a PIL image of any common mode to 8-bit RGB.

    - ``RGB``: unchanged. ``L``, ``1``, ``CMYK``, ``YCbCr``: Pillow's conversion.
    - With transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent index, ``La``, ``RGBa``):
      alpha-composited on the CLIP mean colour (123, 117, 104), the letterbox border colour, so that
      transparent areas normalise to 0 like the border.
    - 16-bit ``I;16*`` and ``I`` (Pillow opens 16-bit PNG/TIFF as one of these): scaled by the maximum
      of the 16-bit range, ``v * 255 / 65535`` (values clipped to [0, 65535]) and not by the image's own
      maximum, so that a dark 16-bit image stays dark.
    - ``F`` (float): Pillow's convention of an 8-bit scale, values clipped to [0, 255] and rounded.

    Different on purpose from the official pipeline (official CRIS.pytorch ``utils/dataset.py``; issue
    15): OpenCV's colour decoding, which the official CRIS code uses, drops the alpha channel and keeps
    whatever colour is stored under transparent pixels; here they take the letterbox colour instead. COCO
    images are JPEGs without alpha, so this matters only for custom images.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img).astype(np.float64)
        a = np.clip(a, 0, 65535) * (255.0 / 65535.0)
        return Image.fromarray(np.rint(a).astype(np.uint8)).convert("RGB")
    if mode == "F":
        a = np.clip(np.asarray(img, dtype=np.float64), 0, 255)
        return Image.fromarray(np.rint(a).astype(np.uint8)).convert("RGB")
    if (mode == "P" and "transparency" in img.info) or mode in ("PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGBA", img.size, _CLIP_MEAN_RGB8 + (255,))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


# ----------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------


class Refer:
    """REFER (RefCOCO, RefCOCO+, RefCOCOg) or G-REFER (gRefCOCO) annotations of one ``split_by``.

    Args:
        data_root: folder holding ``<dataset>/`` and ``images/train2014/``.
        dataset: ``refcoco``, ``refcoco+``, ``refcocog``, ``grefcoco`` or ``refcoco_m``.
        split_by: ``unc`` / ``google`` (refcoco), ``unc`` (refcoco+, grefcoco), ``umd`` / ``google``
            (refcocog).
        image_dir: where the COCO images are, if not ``<data_root>/images/train2014`` (RefCOCO-M:
            ``<data_root>/refcoco_m/images``).

    Attributes: ``refs`` (list of ref dicts, file order), ``images`` (image id -> COCO image dict),
    ``anns`` (annotation id -> COCO annotation), ``cats`` (category id -> name), ``image_dir`` and
    ``generalized`` (True for G-REFER).

    Target masks (:meth:`ref_mask`) are ``uint8 (H, W)`` in {0, 1} at the image's original size: the
    union of the referred instances (polygon parts merged, RLE compressed or not); all zeros for a
    G-REFER no-target ref. As in the gRefCOCO reference loader (ReLA), crowd annotations are left out
    of a G-REFER union unless all its instances are crowds; a REFER ref always uses its annotation.

    Zero-area masks: a few REFER annotations are degenerate and decode to an empty mask. Such refs are
    kept (evaluation scores every sentence); :meth:`empty_mask_refs` lists them, and the training
    Dataset skips them with a warning that counts them. G-REFER no-target refs are not degenerate and
    are never listed there.
    """

    def __init__(
        self,
        data_root: str | Path,
        dataset: str = "refcoco",
        split_by: str = "unc",
        *,
        image_dir: str | Path | None = None,
    ):
        if dataset not in VALID_SPLITS_BY or split_by not in VALID_SPLITS_BY[dataset]:
            valid = ", ".join(f"{d} ({'/'.join(s)})" for d, s in VALID_SPLITS_BY.items())
            raise ValueError(
                f"no REFER release for dataset={dataset!r}, split_by={split_by!r}; valid: {valid}"
            )
        self.data_root = Path(data_root)
        self.dataset, self.split_by = dataset, split_by
        self.generalized = dataset == "grefcoco"
        folder = self.data_root / dataset
        default_dir = (
            folder / OWN_IMAGES[dataset] if dataset in OWN_IMAGES else self.data_root / "images" / "train2014"
        )
        self.image_dir = Path(image_dir) if image_dir is not None else default_dir

        if self.generalized:
            # The G_REFER API (gRefCOCO ``grefer.py``) reads the pickle when it exists, else the JSON.
            json_file, pickle_file = folder / f"grefs({split_by}).json", folder / f"grefs({split_by}).p"
            if pickle_file.is_file():
                self.refs_file = pickle_file
                refs = safe_load_pickle(pickle_file, f"grefs({split_by}).p from the gRefCOCO release")
            else:
                self.refs_file = json_file
                refs = _load_json(json_file, f"grefs({split_by}).json (or .p) from the gRefCOCO release")
        else:
            self.refs_file = folder / f"refs({split_by}).p"
            refs = safe_load_pickle(self.refs_file, f"refs({split_by}).p from the REFER release")
        self.instances_file = folder / "instances.json"
        instances = _load_json(
            self.instances_file, f"instances.json (COCO format) from the {dataset} release"
        )

        self.refs: list[dict] = self._check_refs(refs)
        self.images, self.anns, self.cats = self._index_instances(instances)
        self._area_cache: dict[tuple, int] = {}

    # -- parsing ---------------------------------------------------------------------------------

    def _check_refs(self, refs: Any) -> list[dict]:
        if not isinstance(refs, list):
            raise AnnotationError(f"{self.refs_file}: expected a list of refs, got {type(refs).__name__}")
        required = ("ref_id", "ann_id", "image_id", "split", "sentences")
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict):
                raise AnnotationError(f"{self.refs_file}: ref #{i} is {type(ref).__name__}, not a dict")
            missing = [k for k in required if k not in ref]
            if missing:
                raise AnnotationError(f"{self.refs_file}: ref {ref.get('ref_id', f'#{i}')} lacks {missing}")
            if not isinstance(ref["sentences"], list):
                raise AnnotationError(f"{self.refs_file}: ref {ref['ref_id']} has no sentence list")
        return refs

    def _index_instances(self, instances: Any):
        if not isinstance(instances, dict) or not {"images", "annotations"} <= instances.keys():
            raise AnnotationError(
                f"{self.instances_file}: expected a COCO dict with 'images' and 'annotations'"
            )
        try:
            images = {int(im["id"]): im for im in instances["images"]}
            anns = {int(a["id"]): a for a in instances["annotations"]}
            cats = {int(c["id"]): c["name"] for c in instances.get("categories", [])}
        except (KeyError, TypeError, ValueError) as exc:
            raise AnnotationError(f"{self.instances_file}: malformed COCO entry ({exc!r})") from exc
        return images, anns, cats

    # -- splits and sentences --------------------------------------------------------------------

    def splits(self) -> list[str]:
        """The split names present in the refs file, in order of first appearance."""
        return list(dict.fromkeys(ref["split"] for ref in self.refs))

    def split_refs(self, split: str | None) -> list[dict]:
        """Refs of ``split`` in file order (all refs for ``None``)."""
        if split is None:
            return list(self.refs)
        present = self.splits()
        if split not in present:
            raise ValueError(f"split {split!r} is not in {self.refs_file}; present: {present}")
        return [ref for ref in self.refs if ref["split"] == split]

    def sentences(self, split: str | None) -> list[tuple[dict, dict]]:
        """``(ref, sentence)`` for every sentence of every ref of ``split``."""
        return [(ref, sent) for ref in self.split_refs(split) for sent in ref["sentences"]]

    @staticmethod
    def sentence_text(sentence: dict) -> str:
        """The expression used for training: ``sent`` (REFER's lower-cased form), else ``raw``."""
        text = sentence.get("sent", sentence.get("raw"))
        return text if isinstance(text, str) else ""

    # -- targets ---------------------------------------------------------------------------------

    def ann_ids(self, ref: dict) -> list[int]:
        """The referred annotation ids; ``[]`` for a G-REFER no-target ref (``ann_id`` -1 or [-1])."""
        ids = ref["ann_id"] if isinstance(ref["ann_id"], (list, tuple)) else [ref["ann_id"]]
        return [int(a) for a in ids if int(a) != -1]

    def is_no_target(self, ref: dict) -> bool:
        """Whether the ref refers to nothing, decided from the ref as ReLA does (``ann_id`` -1 or [-1];
        real ``grefs(unc).json`` refs also carry a matching boolean ``no_target``), never from its mask:
        a targeted ref whose annotation decodes empty is not a no-target ref."""
        return not self.ann_ids(ref)

    def image_info(self, ref: dict) -> dict:
        """The COCO image dict of a ref (AnnotationError naming ref and image ids when absent)."""
        try:
            return self.images[int(ref["image_id"])]
        except KeyError:
            raise AnnotationError(
                f"ref {ref['ref_id']}: image id {ref['image_id']} is not in {self.instances_file}"
            ) from None

    def _ref_rles(self, ref: dict) -> tuple[list[dict], int, int]:
        """Compressed RLEs of a ref's instances (one per annotation) and the image size."""
        info = self.image_info(ref)
        h, w = int(info["height"]), int(info["width"])
        anns = []
        for ann_id in self.ann_ids(ref):
            ann = self.anns.get(ann_id)
            if ann is None:
                raise AnnotationError(
                    f"ref {ref['ref_id']}: annotation id {ann_id} is not in {self.instances_file}"
                )
            anns.append(ann)
        if self.generalized:
            # ReLA leaves crowd regions out of a G-REFER union; keep them only if nothing else is left,
            # so that a ref that refers to something never ends up with an empty target.
            anns = [a for a in anns if not a.get("iscrowd", 0)] or anns
        return [self._ann_rle(ref, a, h, w) for a in anns], h, w

    def _ann_rle(self, ref: dict, ann: dict, h: int, w: int) -> dict:
        seg = ann.get("segmentation")
        where = f"ref {ref['ref_id']}, annotation {ann['id']} in {self.instances_file}"
        if isinstance(seg, list) and seg and all(isinstance(p, dict) for p in seg):
            # A list of RLE dicts: no real file has it (real non-crowd objects are polygons, crowd ones a
            # bare RLE dict), but REFER's ``getMask`` would read it; accepted for tolerance. Union.
            return mask_utils.merge([self._ann_rle(ref, {**ann, "segmentation": p}, h, w) for p in seg])
        if isinstance(seg, list):
            # Polygons: a flat [x0, y0, x1, y1, ...] per part. Parts with fewer than 3 points enclose
            # nothing, and pycocotools would read a 4-number part as a box, so they are dropped.
            parts = [
                [float(v) for v in p]
                for p in seg
                if isinstance(p, (list, tuple)) and len(p) >= 6 and len(p) % 2 == 0
            ]
            if not parts:
                return mask_utils.encode(np.zeros((h, w, 1), np.uint8, order="F"))[0]
            return mask_utils.merge(mask_utils.frPyObjects(parts, h, w))
        if isinstance(seg, dict) and "counts" in seg and "size" in seg:
            if list(seg["size"]) != [h, w]:
                raise AnnotationError(f"{where}: RLE size {seg['size']} differs from the image size {[h, w]}")
            if isinstance(seg["counts"], list):  # uncompressed RLE
                return mask_utils.frPyObjects(seg, h, w)
            counts = seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"]
            return {"size": [h, w], "counts": counts}
        raise AnnotationError(f"{where}: segmentation is neither polygons nor RLE")

    def ref_mask(self, ref: dict) -> np.ndarray:
        """Target mask ``uint8 (H, W)`` in {0, 1}: union of the referred instances; zeros for no-target."""
        rles, h, w = self._ref_rles(ref)
        if not rles:
            return np.zeros((h, w), np.uint8)
        with warnings.catch_warnings():
            # pycocotools' decode trips a NumPy 2 "copy keyword" DeprecationWarning on every call
            warnings.simplefilter("ignore", DeprecationWarning)
            m = mask_utils.decode(mask_utils.merge(rles) if len(rles) > 1 else rles[0])
        return np.ascontiguousarray(m, dtype=np.uint8)

    def mask_area(self, ref: dict) -> int:
        """Pixel area of :meth:`ref_mask` from the RLE, without decoding (cached by ref id)."""
        # keyed by the ref's content, not its object: items reach DataLoader workers as copies
        key = (ref["ref_id"], ref["image_id"], tuple(self.ann_ids(ref)))
        if key not in self._area_cache:
            rles, _, _ = self._ref_rles(ref)
            rle = mask_utils.merge(rles) if len(rles) > 1 else (rles[0] if rles else None)
            self._area_cache[key] = int(mask_utils.area(rle)) if rle is not None else 0
        return self._area_cache[key]

    def empty_mask_refs(self, split: str | None) -> list[dict]:
        """Refs whose target has zero area although they refer to an object (degenerate annotations).

        G-REFER no-target refs are legitimate empty targets and are not listed.
        """
        return [r for r in self.split_refs(split) if not self.is_no_target(r) and self.mask_area(r) == 0]

    # -- images ----------------------------------------------------------------------------------

    def image_path(self, ref: dict) -> Path:
        """Path of the ref's COCO image (from instances.json; a ref's own ``file_name`` carries a suffix)."""
        return self.image_dir / self.image_info(ref)["file_name"]

    def load_image(self, ref: dict) -> Image.Image:
        """The ref's image as 8-bit RGB (PIL, ``W x H`` of instances.json; see :func:`to_rgb` for how
        other modes are converted).

        The EXIF orientation tag is ignored on purpose: the pixels are used as stored, which is the frame
        of ``instances.json``'s width / height and of the polygon coordinates. Decoders that apply the tag
        (OpenCV's ``imread`` does by default) would turn a tagged image against its mask; here such an
        image stays aligned with its annotation, and a rotated one fails the size check below.

        Raises ``FileNotFoundError`` naming the path and ref id for a missing file and
        :class:`AnnotationError` naming both for an unreadable image or one whose size differs from
        instances.json (its mask would not line up).
        """
        path = self.image_path(ref)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found (image of ref {ref['ref_id']}); expected a COCO train2014 image"
            )
        try:
            with Image.open(path) as img:
                img.load()
                rgb = to_rgb(img)
                rgb = rgb.copy() if rgb is img else rgb
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise AnnotationError(f"{path}: unreadable image for ref {ref['ref_id']} ({exc})") from exc
        info = self.image_info(ref)
        if rgb.size != (int(info["width"]), int(info["height"])):
            raise AnnotationError(
                f"{path}: image is {rgb.size[0]}x{rgb.size[1]} (WxH) but {self.instances_file} says "
                f"{info['width']}x{info['height']} for ref {ref['ref_id']}"
            )
        return rgb

    # -- statistics ------------------------------------------------------------------------------

    def stats(self, split: str | None) -> dict:
        """Counts for the data chapter: refs, sentences, images, mean words per sentence, no-target refs."""
        refs = self.split_refs(split)
        sents = [s for r in refs for s in r["sentences"]]
        words = [
            len(s["tokens"]) if isinstance(s.get("tokens"), list) else len(self.sentence_text(s).split())
            for s in sents
        ]
        return {
            "split": split,
            "refs": len(refs),
            "sentences": len(sents),
            "images": len({r["image_id"] for r in refs}),
            "mean_words": float(np.mean(words)) if words else 0.0,
            "no_target_refs": sum(self.is_no_target(r) for r in refs),
        }

    def __repr__(self) -> str:
        return (
            f"Refer({readable(self.data_root)!r}, dataset={self.dataset!r}, split_by={self.split_by!r}, "
            f"refs={len(self.refs)})"
        )


__all__ = ["VALID_SPLITS_BY", "AnnotationError", "Refer", "safe_load_pickle", "to_rgb"]
