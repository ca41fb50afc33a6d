"""Torch Dataset for referring segmentation: letterboxed image, tokens, target mask and the metadata
needed to map a prediction back to the original image.

Sampling follows CRIS (official CRIS.pytorch ``utils/dataset.py``): in training one item is one
referred object and each epoch draws one of its sentences at random; in evaluation one item is one
sentence, and every sentence is scored.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .refer import AnnotationError, Refer
from .transforms import CLIP_MEAN, CLIP_STD, letterbox_image, letterbox_mask, normalize


class RefSegDataset(Dataset):
    """Items for training (``train=True``) or evaluation (``train=False``) on one split.

    Args:
        refer: the loaded annotations.
        split: a split name present in ``refer`` (e.g. ``train``, ``val``, ``testA``).
        tokenizer: a callable ``list[str] -> LongTensor (B, L)`` (``model.tokenizer``).
        input_size: side ``S`` of the square letterboxed input (416 in CRIS).
        train: one item per ref with a random sentence (True), or one item per sentence (False).
        mean, std: normalisation of the image (CLIP's by default).
        seed: base seed of the sentence draw; with :meth:`set_epoch` it makes the draw reproducible
            across DDP ranks, data-loader workers and resumed runs.
        max_items: keep the first ``max_items`` items (deterministic truncation for quick runs).
        first_sentence_only: in evaluation, score only each ref's first sentence (CRIS's validation
            during training) instead of all of them.

    Training skips refs with a degenerate zero-area mask (see :meth:`Refer.empty_mask_refs`) and refs
    without sentences, warning once with their count; G-REFER no-target refs are kept. Evaluation
    keeps every sentence.

    An empty or whitespace-only sentence never stops a run: it is tokenised as the official CLIP
    tokenizer does, ``[SOT, EOT]`` (``tokenizer(..., allow_empty=True)``; see :mod:`refseg_core.text`),
    and :attr:`empty_sentences` counts those among the items (one warning when there are any).

    Item (``S = input_size``): ``image`` FloatTensor (3, S, S) normalised; ``tokens`` LongTensor (L,);
    ``mask`` FloatTensor (1, S, S) letterboxed, soft edges in [0, 1]; ``meta`` dict with ``ref_id``,
    ``sent_id``, ``image_id``, ``sentence``, ``no_target`` (bool), ``letterbox`` (params dict) and, in
    evaluation, ``orig_mask`` np.uint8 (H, W), the target at the original resolution.
    """

    def __init__(
        self,
        refer: Refer,
        split: str,
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        input_size: int = 416,
        train: bool = True,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        seed: int = 0,
        max_items: int | None = None,
        *,
        first_sentence_only: bool = False,
    ):
        if int(input_size) != input_size or input_size < 1:
            raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
        if max_items is not None and max_items < 0:
            raise ValueError(f"max_items must be >= 0 or None, got {max_items!r}")
        self.refer, self.split, self.tokenizer = refer, split, tokenizer
        self.input_size, self.train = int(input_size), bool(train)
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed, self.epoch = int(seed), 0

        refs = refer.split_refs(split)
        if self.train:
            empty = {r["ref_id"] for r in refer.empty_mask_refs(split)}
            kept = [r for r in refs if r["ref_id"] not in empty and r["sentences"]]
            skipped = len(refs) - len(kept)
            if skipped:
                no_sentences = sum(1 for r in refs if not r["sentences"] and r["ref_id"] not in empty)
                warnings.warn(
                    f"{refer.refs_file} split {split!r}: skipped {skipped} of {len(refs)} refs in training "
                    f"({len(empty)} with a zero-area mask, {no_sentences} without sentences)",
                    stacklevel=2,
                )
            self.items: list[tuple[dict, dict | None]] = [(r, None) for r in kept]
        else:
            pairs = refer.sentences(split)
            if first_sentence_only:
                pairs = [(r, r["sentences"][0]) for r in refs if r["sentences"]]
            self.items = pairs
        if max_items is not None:
            self.items = self.items[: int(max_items)]
        sents = [s for r, s in self.items for s in (r["sentences"] if s is None else [s])]
        self.empty_sentences = sum(not Refer.sentence_text(s).strip() for s in sents)
        if self.empty_sentences:
            warnings.warn(
                f"{refer.refs_file} split {split!r}: {self.empty_sentences} empty or whitespace-only "
                "sentences, tokenised as the official CLIP tokenizer does ([SOT, EOT])",
                stacklevel=2,
            )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose sentence draw ``__getitem__`` reproduces (call before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def _draw_sentence(self, index: int, ref: dict) -> dict:
        # A generator seeded from (seed, epoch, index) only: the draw does not depend on which worker or
        # rank loads the item, nor on what was loaded before, so resumed and DDP runs agree.
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        return ref["sentences"][int(torch.randint(len(ref["sentences"]), (1,), generator=g))]

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        ref, sent = self.items[index]
        if sent is None:
            sent = self._draw_sentence(index, ref)
        text = Refer.sentence_text(sent)
        try:
            # An empty sentence: the official tokenisation ([SOT, EOT]) instead of an error.
            empty = not text.strip()
            tokens = (self.tokenizer([text], allow_empty=True) if empty else self.tokenizer([text]))[0]
        except (ValueError, TypeError) as exc:
            raise AnnotationError(
                f"{self.refer.refs_file}: ref {ref['ref_id']}, sentence {sent.get('sent_id')}: "
                f"expression {text!r} cannot be tokenised ({exc})"
            ) from exc

        img = self.refer.load_image(ref)
        image, params = letterbox_image(img, self.input_size, fill=self.mean)
        orig_mask = self.refer.ref_mask(ref)
        mask = letterbox_mask(orig_mask, params)[None]

        meta = {
            "ref_id": ref["ref_id"],
            "sent_id": sent.get("sent_id"),
            "image_id": ref["image_id"],
            "sentence": text,
            "no_target": self.refer.is_no_target(ref),
            "letterbox": params.to_dict(),
        }
        if not self.train:
            meta["orig_mask"] = orig_mask
        return {
            "image": normalize(image, self.mean, self.std),
            "tokens": tokens.long(),
            "mask": mask,
            "meta": meta,
        }


def collate(batch: list[dict]) -> dict:
    """Batch items: ``image`` (B, 3, S, S), ``tokens`` (B, L) zero-padded to the longest, ``mask``
    (B, 1, S, S); ``meta`` stays a list of dicts (original-size masks differ in size)."""
    if not batch:
        raise ValueError("collate: empty batch")
    length = max(int(b["tokens"].shape[0]) for b in batch)
    tokens = torch.zeros(len(batch), length, dtype=torch.long)
    for i, b in enumerate(batch):
        tokens[i, : b["tokens"].shape[0]] = b["tokens"]
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "tokens": tokens,
        "mask": torch.stack([b["mask"] for b in batch]),
        "meta": [b["meta"] for b in batch],
    }


__all__ = ["RefSegDataset", "collate"]
