"""What CLIP already knows at the pixel level: the cosine similarity between an expression's CLIP embedding
and every position of CLIP's image features, before any referring-segmentation training.

CLIP's ResNet ends in an attention pool that turns the ``h x w`` map into one image vector. Reading it at
every position instead gives dense features; MaskCLIP (Zhou et al., ECCV 2022) showed that the *value*
path of that pool (``c_proj(v_proj(x + pos))``, without the query-key attention that mixes all positions)
keeps the image-text alignment per position. CRIS (Sec. 3.1) reads the pool densely too, with the
attention and a new, randomly initialised branch (:meth:`~refseg_core.models.clip.DenseClipBackbone.
dense_attention_pool`); this module uses only CLIP's own weights, so that with OpenAI's weights
(``pretrained="openai"``) it shows CLIP's alignment and nothing learned for segmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def dense_features(backbone, images: torch.Tensor) -> torch.Tensor:
    """``images (B, 3, H, W)`` (normalised, H and W divisible by 32) -> ``(B, E, H/32, W/32)``: the value
    path of CLIP's attention pool at every position of the last ResNet stage.

    ``backbone`` is a :class:`refseg_core.models.clip.DenseClipBackbone`."""
    vis = backbone.visual
    x = vis.layer4(vis.layer3(vis.layer2(vis.layer1(vis.stem(images.to(vis.conv1.weight.dtype))))))
    return pool_values(vis.attnpool, x)


def pool_values(pool, x: torch.Tensor) -> torch.Tensor:
    """``x (B, C, h, w)`` (the last ResNet stage) -> ``(B, E, h, w)``: ``c_proj(v_proj(x + pos))`` at
    every position, ``pos`` the attention pool's positional embedding resized bicubically to ``h x w``."""
    b, c, h, w = x.shape
    pos = pool.positional_embedding[1:]  # without the class-token position: (S*S, C)
    s = int(round(pos.shape[0] ** 0.5))
    pos = F.interpolate(pos.t().reshape(1, c, s, s), size=(h, w), mode="bicubic", align_corners=False)
    t = (x + pos.to(x.dtype)).flatten(2).transpose(1, 2)  # (B, hw, C)
    out = pool.c_proj(pool.v_proj(t))  # (B, hw, E)
    return out.transpose(1, 2).reshape(b, -1, h, w)


@torch.no_grad()
def text_similarity(backbone, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of ``P`` expressions with every position of one image: ``image (1, 3, H, W)``
    normalised, ``tokens (P, L)`` from the CLIP tokenizer -> ``(P, H/32, W/32)`` in [-1, 1]. The text
    side is CLIP's sentence embedding (the EOT state through ``text_projection``)."""
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be one normalised image (1, 3, H, W), got {tuple(image.shape)}")
    pixels = F.normalize(dense_features(backbone, image)[0], dim=0)  # (E, h, w)
    _, state, _ = backbone.encode_text(tokens)
    text = F.normalize(state, dim=1)  # (P, E)
    return torch.einsum("pe,ehw->phw", text, pixels)
