"""The figures of the LTS chapter: the position prior of one image under two sentences
(:func:`prior_rows`), the transformer's attention from pixels to words (:func:`word_attention`) and the
curves of an ablation (:func:`ablation_curves`), with :func:`locate`, one sample through a model.

Colour encodes a value in every map, so each figure carries a colour bar; a predicted mask with no pixel
above the threshold is drawn as such and says so, instead of looking like an unfinished panel.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from refseg_core.data.transforms import denormalize
from refseg_core.models.position_prior import peak_cells
from refseg_core.viz import heatmap, overlay, to_array

PRIOR_CMAP = "magma"


@torch.no_grad()
def locate(model, item: dict, threshold: float) -> dict:
    """One dataset item through an LTS ``model``, in the input frame.

    Returns ``image`` (H, W, 3) uint8, ``target`` and ``mask`` (H, W) bool (the mask: the logits
    upsampled bilinearly to the input size, sigmoid > ``threshold``), ``iou``, ``prior`` (h, w)
    probabilities sigma(P) or None, ``peak`` (row, col) of the prior's highest cell or None, and
    ``attention`` (n_words, h, w) of the last transformer layer or None.
    """
    was_training = model.training
    model.eval()
    try:
        out = model.forward_features(item["image"][None], item["tokens"][None])
    finally:
        model.train(was_training)
    size = item["image"].shape[-2:]
    up = F.interpolate(out["logits"], size=size, mode="bilinear", align_corners=False)
    mask = (torch.sigmoid(up)[0, 0] > threshold).numpy()
    target = item["mask"][0].numpy() > 0.5
    union = (mask | target).sum()
    iou = float((mask & target).sum() / union) if union else 1.0
    mean = getattr(model, "input_mean", None)
    std = getattr(model, "input_std", None)
    image = denormalize(item["image"], mean, std) if mean is not None else denormalize(item["image"])
    prior = out.get("prior_logits")
    n_words = int((item["tokens"] != 0).sum())
    attention = out.get("word_attention")
    return {
        "image": to_array(image),
        "target": target,
        "mask": mask,
        "iou": iou,
        "threshold": threshold,
        "prior": None if prior is None else torch.sigmoid(prior)[0, 0].numpy(),
        "peak": None if prior is None else tuple(int(v) for v in peak_cells(prior)[0]),
        "attention": None if attention is None else attention[0, :n_words].numpy(),
    }


def _map_on_image(ax, image, values, vmin, vmax, target=None):
    """``values`` (h, w) over ``image`` (its cells as blocks, so the grid stays visible)."""
    heatmap(
        ax,
        values,
        image,
        alpha=0.75,
        cmap=PRIOR_CMAP,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        contour=target,
    )
    return ax.images[-1]


def _mask_panel(ax, loc):
    """The predicted mask over the image with the target (dashed); an empty mask says so."""
    empty = not loc["mask"].any()
    overlay(ax, loc["image"], loc["mask"], contour=loc["target"])
    ax.set_title(f"{'empty mask' if empty else 'mask'}, IoU {loc['iou']:.2f}", fontsize=10)
    if empty:
        ax.text(
            0.5,
            0.5,
            f"no pixel\nabove {loc['threshold']:g}",
            ha="center",
            va="center",
            color="white",
            fontsize=9,
            transform=ax.transAxes,
        )


def prior_rows(located: Sequence[dict], sentences: Sequence[str], panel: float = 1.9):
    """One row per image, for two samples (two sentences) of it side by side: the prior sigma(P) over
    the image on a 0-1 scale with its peak cell marked (x) and the target dashed, then the predicted
    mask. ``located`` and ``sentences`` hold the samples in pairs (an odd last one is drawn alone). One
    colour bar for every prior."""
    n_rows = math.ceil(len(located) / 2)
    head = 0.85  # inches above each row: the sentence (up to two lines) and the panel titles
    fig = plt.figure(figsize=(4 * panel + 1.1, (panel + head) * n_rows))
    grid = fig.add_gridspec(
        2 * n_rows, 2, height_ratios=[head, panel] * n_rows, left=0.01, right=0.89, top=0.995, bottom=0.01
    )
    grid.update(wspace=0.08, hspace=0.0)
    im = None
    for k, (loc, sentence) in enumerate(zip(located, sentences)):
        row, col = divmod(k, 2)
        ax_head = fig.add_subplot(grid[2 * row, col])
        ax_head.axis("off")
        text = "\n".join(textwrap.wrap(f"“{sentence}”", 44))
        ax_head.text(0.5, 0.88, text, ha="center", va="top", fontsize=10.5, transform=ax_head.transAxes)
        cell = grid[2 * row + 1, col].subgridspec(1, 2, wspace=0.04)
        ax_prior, ax_mask = fig.add_subplot(cell[0, 0]), fig.add_subplot(cell[0, 1])
        ax_prior.set_title("prior σ(P), peak ×", fontsize=10)
        if loc["prior"] is None:
            overlay(ax_prior, loc["image"], None, contour=loc["target"])
            ax_prior.text(0.5, 0.5, "no prior", ha="center", color="white", transform=ax_prior.transAxes)
        else:
            im = _map_on_image(ax_prior, loc["image"], loc["prior"], 0.0, 1.0, loc["target"])
            (r, c), (h, w) = loc["peak"], loc["prior"].shape
            ih, iw = loc["image"].shape[:2]
            ax_prior.plot((c + 0.5) * iw / w, (r + 0.5) * ih / h, "x", color="cyan", ms=8, mew=2)
        _mask_panel(ax_mask, loc)
    if im is not None:
        cax = fig.add_axes([0.91, 0.15, 0.02, 0.7], label="colour bar")
        fig.colorbar(im, cax=cax, label="prior probability σ(P)")
    return fig


def word_attention(
    located: Sequence[dict], sentences: Sequence[str], words: Sequence[Sequence[str]], cols: int = 5
):
    """For each sample, its image with the target (dashed), then one map per word: the attention every
    position pays to that word (last layer, mean over heads; each position's weights sum to 1 over the
    words). All maps share one colour scale, from 0 to the largest weight shown, and one colour bar."""
    rows_of = [math.ceil((len(w) + 1) / cols) for w in words]
    panel = 1.75
    fig = plt.figure(figsize=(cols * panel + 1.0, panel * 1.22 * sum(rows_of) + 0.3))
    grid = fig.add_gridspec(sum(rows_of), cols, left=0.01, right=0.89, top=0.97, bottom=0.01, hspace=0.45)
    vmax = max(float(loc["attention"].max()) for loc in located)
    im, r0 = None, 0
    for loc, sentence, ws, n_rows in zip(located, sentences, words, rows_of):
        panels = [fig.add_subplot(grid[r0 + k // cols, k % cols]) for k in range(n_rows * cols)]
        overlay(panels[0], loc["image"], None, contour=loc["target"], title=f"“{sentence}”", wrap=26)
        for ax, word, att in zip(panels[1:], ws, loc["attention"]):
            im = _map_on_image(ax, loc["image"], att, 0.0, vmax, loc["target"])
            ax.set_title(word, fontsize=10)
        for ax in panels[1 + len(ws) :]:
            ax.axis("off")
        r0 += n_rows
    cax = fig.add_axes([0.91, 0.2, 0.02, 0.6], label="colour bar")
    fig.colorbar(im, cax=cax, label="attention weight")
    return fig


def ablation_curves(runs: Mapping[str, object], metric: str = "val_mIoU"):
    """Two panels for ``{name: TrainResult}``: the training loss against the step (log scale) and the
    validation ``metric`` (in %) after each epoch. Every point is marked, so a run of one epoch still
    shows; a legend is drawn only over curves that exist."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.3))
    for name, r in runs.items():
        pts = [(h["step"], h["loss"]) for h in r.history if "images_per_s" in h]
        val = [(h["epoch"], 100 * h[metric]) for h in r.history if h.get(metric) is not None]
        if pts:
            ax_loss.plot(*zip(*pts), marker=".", label=name)
        if val:
            ax_val.plot(*zip(*val), marker="o", label=name)
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log")
    ax_val.set(xlabel="epoch", ylabel=f"validation {metric.removeprefix('val_')} (%)")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no values logged", ha="center", transform=ax.transAxes)
    ax_val.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def words_of(vocab, tokens) -> list[str]:
    """The words of one ``tokens`` row (padding left out), as ``vocab`` spells them."""
    return [vocab.itos[int(t)] for t in tokens if int(t) != 0]


__all__ = ["ablation_curves", "locate", "prior_rows", "word_attention", "words_of"]
