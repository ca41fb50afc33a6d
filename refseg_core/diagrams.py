"""The papers drawn: one pipeline diagram per model (matplotlib), labelled with the tensor shapes of a real
forward pass, so the picture and the code cannot disagree.

* :func:`forward_shapes` runs ``model.forward_features`` once (no gradients) and returns the shape of every
  tensor a diagram names (LTS's backbone levels and text outputs are read with forward hooks);
* :func:`lts_pipeline` draws LTS (Jing et al., CVPR 2021, Fig. 2: fuse, locate, segment);
* :func:`cris_pipeline` draws CRIS (Wang et al., CVPR 2022, Fig. 2: encoders, neck, decoder, text-to-pixel).

Shapes are shown per sample (the batch dimension left out), as ``(C, h, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyBboxPatch

MODULE_COLOR = "#dbe9f6"  # a module of the model
DATA_COLOR = "#f4f4f4"  # an input or an output
TEXT_COLOR = "#fbe8d3"  # the language side


@torch.no_grad()
def forward_shapes(model, images: torch.Tensor, tokens: torch.Tensor, outputs: bool = False):
    """``{name: shape}`` of one forward pass of ``model`` (eval mode, restored afterwards): ``images``,
    ``tokens``, every tensor ``forward_features`` returns, and for LTS (which returns no encoder outputs)
    ``v3``, ``v4``, ``v5`` (the backbone's levels) and ``words``, ``sentence`` (the bi-GRU's). With
    ``outputs``, ``(shapes, forward_features output)``, so a page that shows the tensors runs one pass."""
    shapes = {"images": tuple(images.shape), "tokens": tuple(tokens.shape)}
    handles = []

    def keep(names):
        def hook(module, inputs, output):
            for n, t in zip(names, output):
                shapes[n] = tuple(t.shape)

        return hook

    if hasattr(model, "text") and hasattr(model, "fusion"):  # LTS: encoders are not in its outputs
        handles.append(model.backbone.register_forward_hook(keep(["v3", "v4", "v5"])))
        handles.append(model.text.register_forward_hook(keep(["words", "sentence"])))
    was_training = model.training
    model.eval()
    try:
        out = model.forward_features(images, tokens, return_attention=True)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    shapes.update({k: tuple(v.shape) for k, v in out.items() if torch.is_tensor(v)})
    return (shapes, out) if outputs else shapes


def per_sample(shape: tuple[int, ...]) -> str:
    """``(B, C, h, w)`` -> ``"(C, h, w)"``; ``(B, C)`` -> ``"(C,)"``."""
    rest = tuple(shape[1:])
    return str(rest) if len(rest) != 1 else f"({rest[0]},)"


@dataclass
class Node:
    x: float
    y: float
    text: str
    color: str = MODULE_COLOR
    width: float = 1.9
    height: float = 0.9


def draw_pipeline(nodes: dict[str, Node], edges: list[tuple[str, str, str]], title: str, width=13.0):
    """Boxes (``nodes``) joined by arrows (``edges``: source, target, label) on one figure ``width``
    inches wide (its height follows the layout); returns the figure."""
    x0 = min(n.x - n.width / 2 for n in nodes.values()) - 0.2
    x1 = max(n.x + n.width / 2 for n in nodes.values()) + 0.2
    y0 = min(n.y - n.height / 2 for n in nodes.values()) - 0.2
    y1 = max(n.y + n.height / 2 for n in nodes.values()) + 0.2
    fig, ax = plt.subplots(figsize=(width, width * (y1 - y0) / (x1 - x0) + 0.4))
    for n in nodes.values():
        ax.add_patch(
            FancyBboxPatch(
                (n.x - n.width / 2, n.y - n.height / 2),
                n.width,
                n.height,
                boxstyle="round,pad=0.04,rounding_size=0.12",
                facecolor=n.color,
                edgecolor="#4a6a8a",
                linewidth=1.2,
            )
        )
        ax.text(n.x, n.y, n.text, ha="center", va="center", fontsize=9.5)
    for src, dst, label in edges:
        a, b = nodes[src], nodes[dst]
        start, end = _border(a, b), _border(b, a)
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.1, shrinkA=0, shrinkB=0),
        )
        if label:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            ax.text(
                mx,
                my,
                label,
                ha="center",
                va="center",
                fontsize=8.5,
                family="monospace",
                bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="#bbbbbb", linewidth=0.6),
            )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def _border(a: Node, b: Node) -> tuple[float, float]:
    """Where the segment from ``a``'s centre towards ``b``'s leaves ``a``'s box."""
    dx, dy = b.x - a.x, b.y - a.y
    if dx == 0 and dy == 0:
        return a.x, a.y
    tx = (a.width / 2 + 0.05) / abs(dx) if dx else float("inf")
    ty = (a.height / 2 + 0.05) / abs(dy) if dy else float("inf")
    t = min(tx, ty)
    return a.x + t * dx, a.y + t * dy


def lts_pipeline(shapes: dict[str, tuple[int, ...]], interaction: str = "transformer"):
    """LTS's pipeline (paper Fig. 2): the three steps the paper names (fuse, locate, segment), each with
    the module this book built for it and the shapes of its outputs (:func:`forward_shapes`)."""
    s = {k: per_sample(v) for k, v in shapes.items()}
    locate = "TransformerLocate" if interaction == "transformer" else "FilterLocate"
    levels = "\n".join(f"{k.upper()} {s[k]}" for k in ("v3", "v4", "v5") if k in s)
    nodes = {
        "image": Node(0, 2.4, f"image\n{s['images']}", DATA_COLOR, 1.8, 0.8),
        "expr": Node(0, 0, f"expression\ntokens {s['tokens']}", DATA_COLOR, 1.8, 0.8),
        "cnn": Node(2.7, 2.4, f"ConvNet (DarkNet53)\n{levels}", height=1.3, width=2.2),
        "gru": Node(2.7, 0, f"bi-GRU\nwords {s['words']}\nsentence s {s['sentence']}", TEXT_COLOR, 2.2, 1.1),
        "fuse": Node(5.6, 2.4, f"1. fuse (Fusion)\nF {s['fused']}", width=2.2),
        "locate": Node(8.0, 0.3, f"2. locate ({locate})\nprior P {s['prior_logits']}", width=2.6),
        "segment": Node(8.6, 2.4, f"3. segment (SegmentHead)\nreads [F; σ(P)] {s['decoder']}", width=2.7),
        "mask": Node(11.4, 2.4, f"mask logits\n{s['logits']}", DATA_COLOR, 1.8, 0.8),
    }
    edges = [
        ("image", "cnn", ""),
        ("cnn", "fuse", ""),
        ("expr", "gru", ""),
        ("gru", "fuse", "s"),
        ("gru", "locate", "words"),
        ("fuse", "locate", "F"),
        ("fuse", "segment", "F"),
        ("locate", "segment", "σ(P)"),
        ("segment", "mask", ""),
    ]
    return draw_pipeline(nodes, edges, "LTS: locate, then segment (output shapes of one forward pass)", 11.0)


def cris_pipeline(shapes: dict[str, tuple[int, ...]]):
    """CRIS's pipeline (paper Fig. 2, official CRIS.pytorch): CLIP's encoders read densely, the
    sentence-gated neck, the vision-language decoder and the text-to-pixel head, with the shapes of their
    outputs (:func:`forward_shapes`)."""
    s = {k: per_sample(v) for k, v in shapes.items()}
    levels = "\n".join(f"{k} {s[k]}" for k in ("v3", "v4", "v5"))
    nodes = {
        "image": Node(0, 2.5, f"image\n{s['images']}", DATA_COLOR, 1.8, 0.8),
        "expr": Node(0, 0, f"expression\ntokens {s['tokens']}", DATA_COLOR, 1.8, 0.8),
        "clip_v": Node(2.8, 2.5, f"CLIP ResNet, dense\n{levels}", height=1.3, width=2.3),
        "clip_t": Node(
            2.8, 0, f"CLIP text transformer\nwords {s['words']}\nstate {s['state']}", TEXT_COLOR, 2.5, 1.1
        ),
        "neck": Node(5.8, 2.5, f"neck (FPN, gated by state)\nF_v {s['fused']}", width=2.6),
        "decoder": Node(8.9, 2.5, f"decoder (pixels → words)\nF_c {s['decoder']}", width=2.6),
        "kernel": Node(8.9, 0, f"Linear(state): 3×3 kernel\nK {s['kernel']} + bias", TEXT_COLOR, 2.6),
        "head": Node(
            12.0,
            2.5,
            f"text-to-pixel\nz_v {s['pixel_embeddings']}\nlogits = K ⊛ z_v + b",
            width=2.6,
            height=1.1,
        ),
        "mask": Node(12.0, 0, f"mask logits\n{s['logits']}", DATA_COLOR, 1.8, 0.8),
    }
    edges = [
        ("image", "clip_v", ""),
        ("clip_v", "neck", ""),
        ("expr", "clip_t", ""),
        ("clip_t", "neck", "state"),
        ("clip_t", "decoder", "words"),
        ("clip_t", "kernel", "state"),
        ("neck", "decoder", ""),
        ("decoder", "head", ""),
        ("kernel", "head", "K, b"),
        ("head", "mask", ""),
    ]
    return draw_pipeline(
        nodes, edges, "CRIS: CLIP made dense, then text-to-pixel (output shapes of one forward pass)", 11.0
    )
