"""Matplotlib figures for the book: overlays, heatmaps, attention maps and training curves.

Every function draws on a given ``Axes`` (or makes a figure) and returns it, so notebooks compose them.
Images are ``(H, W, 3)`` uint8 arrays or PIL images; masks are ``(H, W)`` arrays (bool or {0,1}).
"""

from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

# Distinguishable colours (RGB in [0, 1]) for prediction, target, and their overlap.
PRED_COLOR = (0.95, 0.30, 0.15)
TARGET_COLOR = (0.10, 0.55, 0.95)


def outline_target(ax, region, color=TARGET_COLOR, linewidth: float = 1.5) -> None:
    """Outline the target ``region (H, W)`` (bool or [0, 1]) dashed on ``ax``; nothing for an empty one."""
    if region is not None and np.asarray(region).any():
        ax.contour(
            np.asarray(region).astype(float),
            levels=[0.5],
            colors=[color],
            linewidths=linewidth,
            linestyles="dashed",
        )


def to_array(image) -> np.ndarray:
    """PIL image, (3, H, W) tensor in [0, 1] or (H, W, 3) array -> (H, W, 3) uint8."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3):
            image = image.transpose(1, 2, 0)
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return arr


def overlay(
    ax,
    image,
    mask=None,
    color=PRED_COLOR,
    dim: float = 0.35,
    title: str | None = None,
    contour: np.ndarray | None = None,
    contour_color=TARGET_COLOR,
    wrap: int = 32,
):
    """Draw ``image`` with ``mask`` highlighted and, optionally, the outline of ``contour``.

    The mask is shown by dimming everything *outside* it (to ``dim`` of its brightness) and outlining it
    in ``color``, rather than by tinting it: the synthetic scenes are described by their colours, and a
    tint would change the very colour an expression names.
    """
    img = to_array(image).astype(np.float32) / 255.0
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        img[~m] *= dim
    ax.imshow(img)
    if mask is not None and m.any():
        ax.contour(m.astype(float), levels=[0.5], colors=[color], linewidths=1.2)
    outline_target(ax, contour, contour_color, 1.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, wrap)), fontsize=9)
    return ax


def heatmap(
    ax,
    values,
    image=None,
    alpha=0.55,
    cmap="magma",
    title: str | None = None,
    colorbar=False,
    vmin=None,
    vmax=None,
    interpolation: str = "bilinear",
    contour: np.ndarray | None = None,
):
    """Show a 2-D map; over ``image`` (resized to the image, ``interpolation`` between its cells; "nearest"
    keeps the grid visible) when given, with the outline of ``contour`` (the target, dashed). Returns
    ``ax``; the map's image is ``ax.images[-1]`` (for a shared colour bar)."""
    v = np.asarray(values, dtype=np.float32)
    if image is not None:
        img = to_array(image)
        ax.imshow(img)
        h, w = img.shape[:2]
        im = ax.imshow(
            v, cmap=cmap, alpha=alpha, extent=(0, w, h, 0), interpolation=interpolation, vmin=vmin, vmax=vmax
        )
    else:
        im = ax.imshow(v, cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
    outline_target(ax, contour, TARGET_COLOR, 1.3)
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 32)), fontsize=9)
    return ax


def grid(n: int, cols: int = 4, size: float = 2.6):
    """A figure with ``n`` axes in rows of ``cols``; unused axes are hidden."""
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size * 1.1), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def curves(
    ax,
    history: Sequence[dict],
    keys: Sequence[str],
    x: str = "step",
    title: str | None = None,
    logy: bool = False,
):
    """Plot ``history`` rows (dicts) for each key against ``x``; missing values are skipped."""
    for k in keys:
        pts = [(r[x], r[k]) for r in history if r.get(k) is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=k)
    ax.set_xlabel(x)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=8)
    else:  # say so on the figure instead of drawing an empty legend
        ax.text(0.5, 0.5, f"no values of {', '.join(keys)} in this run", ha="center", transform=ax.transAxes)
    return ax


def attention_to_words(
    ax, attn: np.ndarray, words: Sequence[str], image=None, cols: int | None = None, colorbar=False
):
    """Not a single axes: draws one heat map per word on a row of sub-axes created from ``ax``'s figure.

    ``attn`` is ``(L, h, w)``: the attention every pixel pays to each word (averaged over heads). All maps
    share one colour scale, from 0 to the largest weight; ``colorbar`` draws it next to the last map.
    Returns the list of axes used.
    """
    fig = ax.figure
    ax.axis("off")
    n = len(words)
    cols = cols or n
    gs = ax.get_subplotspec().subgridspec(1, cols, wspace=0.05)
    axes = []
    vmax = float(np.max(attn[:n])) if n else 1.0
    for i, w in enumerate(words):
        a = fig.add_subplot(gs[0, i])
        heatmap(a, attn[i], image=image, vmin=0.0, vmax=vmax, title=w)
        axes.append(a)
    if colorbar and axes:
        plt.colorbar(axes[-1].images[-1], ax=axes, fraction=0.02, pad=0.01, label="attention weight")
    return axes
