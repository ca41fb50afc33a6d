"""Is LTS's position prior interpretable? The paper (abstract) says the locate-then-segment model is "more
interpretable", shown by visualisation. This module measures it on a split: how often the prior's peak
falls inside the referred object (:func:`refseg_core.models.position_prior.peak_in_target`), next to three
references on the same samples:

* ``other_sentence``: the prior computed for the sentence of *another* object of the same image, scored
  against this object. If the prior follows the words, its peak moves away and this rate drops;
* ``chance``: a peak drawn at random among the prior's cells
  (:func:`~refseg_core.models.position_prior.chance_in_target`), a language-blind reference;
* ``centre``: the centre pixel of the input, a language-blind guess that gains from objects near the
  middle of the image (:func:`centre_in_target`).

A prior that locates the referent should beat both language-blind references; that it reads the words is
shown by ``own`` above ``other_sentence``.

Only refs whose image holds another referred object take part (:func:`refseg_core.sentence_pairs.partners`),
so that the three rates are measured on the same samples.
"""

from __future__ import annotations

import torch

from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.models.position_prior import chance_in_target, peak_in_target
from refseg_core.sentence_pairs import partners


@torch.no_grad()
def prior_peak_rates(
    model, refer, split: str, input_size: int, batch_size: int = 32, max_items: int | None = None
) -> dict:
    """``{"n", "own", "other_sentence", "chance", "centre"}`` for ``model`` (an LTS with a prior) on
    ``split``: ``n`` samples, and the four rates (fractions in [0, 1]) described in the module docstring."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ds = RefSegDataset(refer, split, model.tokenizer, input_size, train=False, first_sentence_only=True)
    pairs = list(partners(refer, split).items())[:max_items]
    if not pairs:
        raise ValueError(f"split {split!r} has no image with two referred objects to compare")
    own, other, chance, centre = [], [], [], []
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            a = collate([ds[i] for i, _ in chunk])
            b = collate([ds[j] for _, j in chunk])
            images, masks = a["image"].to(device), a["mask"].to(device)
            prior_a = model.forward_features(images, a["tokens"].to(device), False)["prior_logits"]
            if prior_a is None:
                raise ValueError("prior_peak_rates: the model has no position prior (use_prior=False)")
            prior_b = model.forward_features(images, b["tokens"].to(device), False)["prior_logits"]
            own.append(peak_in_target(prior_a, masks))
            other.append(peak_in_target(prior_b, masks))
            chance.append(chance_in_target(masks, prior_a.shape[-2:]))
            centre.append(centre_in_target(masks))
    finally:
        model.train(was_training)

    def rate(parts):
        return float(torch.cat(parts).float().mean())

    return {
        "n": len(pairs),
        "own": rate(own),
        "other_sentence": rate(other),
        "chance": rate(chance),
        "centre": rate(centre),
    }


def centre_in_target(masks: torch.Tensor) -> torch.Tensor:
    """``masks (B, 1, H, W)`` in [0, 1] -> ``(B,)`` bool: whether the input's centre pixel
    ``(H // 2, W // 2)`` belongs to the mask (value > 0.5), the score of a "peak" always at the centre."""
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be (B, 1, H, W), got shape {tuple(masks.shape)}")
    h, w = masks.shape[-2:]
    return masks[:, 0, h // 2, w // 2] > 0.5
