"""One image, two sentences: pairs of referring expressions that name *different* objects of the same
image, so that a figure or a check can show whether a model follows the words (the image is the same, only
the sentence changes).

Indices are positions in the first-sentence items of a split, the order of
``RefSegDataset(refer, split, ..., train=False, first_sentence_only=True)``: each ref of
``refer.split_refs(split)`` that has a sentence, with its first sentence.
"""

from __future__ import annotations


def first_sentence_items(refer, split: str) -> list[tuple[dict, dict]]:
    """``(ref, first sentence)`` for each ref of ``split`` that has a sentence (the dataset's order)."""
    return [(r, r["sentences"][0]) for r in refer.split_refs(split) if r["sentences"]]


def _distinct(refer, a: tuple[dict, dict], b: tuple[dict, dict]) -> bool:
    """Two refs name different objects with different words, and both have an object to point at."""
    (ra, sa), (rb, sb) = a, b
    return (
        ra["ann_id"] != rb["ann_id"]
        and refer.sentence_text(sa).strip() != refer.sentence_text(sb).strip()
        and not refer.is_no_target(ra)
        and not refer.is_no_target(rb)
    )


def partners(refer, split: str) -> dict[int, int]:
    """``{i: j}``: for each first-sentence item ``i`` whose image holds another referred object, the
    index ``j`` of the next such item of the same image (in split order, wrapping around), which names a
    different object with a different sentence. Items without such a partner are left out."""
    items = first_sentence_items(refer, split)
    by_image: dict = {}
    for i, (ref, _) in enumerate(items):
        by_image.setdefault(ref["image_id"], []).append(i)
    out = {}
    for idx in by_image.values():
        for k, i in enumerate(idx):
            for j in idx[k + 1 :] + idx[:k]:
                if _distinct(refer, items[i], items[j]):
                    out[i] = j
                    break
    return out


def same_image_pairs(refer, split: str, n: int) -> list[tuple[int, int]]:
    """Up to ``n`` pairs ``(i, j)`` from ``n`` different images, the first images of the split that have
    two refs naming different objects with different sentences (a fixed choice, not a search for good
    predictions)."""
    pairs, seen = [], set()
    items = first_sentence_items(refer, split)
    for i, j in partners(refer, split).items():
        image = items[i][0]["image_id"]
        if image not in seen and len(pairs) < n:
            seen.add(image)
            pairs.append((i, j))
    return pairs
