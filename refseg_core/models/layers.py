"""Small pieces shared by LTS and CRIS: ``conv_bn_relu``, multi-head attention, coordinate features
(CoordConv) and positional encodings.

Mask convention, everywhere in the models: a boolean key mask is ``True = attend`` (the convention of
:func:`torch.nn.functional.scaled_dot_product_attention`). LTS's text encoder returns such a ``valid``
mask; CRIS's CLIP text encoder returns ``pad_mask`` (True at padding, as the official code), which the
CRIS decoder inverts once before it calls :class:`MultiHeadAttention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """``Conv(kernel x kernel, dilation, no bias) -> BN -> ReLU`` with "same" padding:
    ``(B, c_in, H, W) -> (B, c_out, H, W)``.

    The official CRIS ``conv_layer`` (CRIS.pytorch ``model/layers.py``) and the convolutions of LTS's
    fusion, locate and segment modules. Children are ``0`` (conv), ``1`` (BN), ``2`` (ReLU), the names the
    official CRIS weight mapping expects.
    """
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017, Sec. 3.2.2) with separate q/k/v projections.

    ``forward(query (B, Nq, D), key (B, Nk, Dk), value (B, Nk, Dk) = key, attend (B, Nk) bool = None,
    need_weights=False) -> (out (B, Nq, D), weights)``. ``attend`` is True at the keys that may be attended
    (None = all). ``weights`` is None unless ``need_weights``; then it is the softmax ``(B, heads, Nq, Nk)``
    (0 at masked keys) and ``out`` is computed from it explicitly, with dropout on the weights as in
    ``nn.MultiheadAttention``; otherwise ``out`` comes from the fused
    :func:`~torch.nn.functional.scaled_dot_product_attention`. Used by the CRIS decoder (Sec. 3.3) and the
    LTS transformer locate module (Sec. 3.2); the parameter names ``q_proj``, ``k_proj``, ``v_proj``,
    ``out_proj`` are those the official CRIS weight mapping expects.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, kv_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads={heads}")
        kv_dim = dim if kv_dim is None else kv_dim
        self.heads, self.dropout = heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query, key, value=None, attend=None, need_weights: bool = False):
        value = key if value is None else value
        b, nq, d = query.shape
        nk = key.shape[1]

        def split(z, n):  # (B, N, D) -> (B, heads, N, D/heads)
            return z.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q_proj(query), nq), split(self.k_proj(key), nk), split(self.v_proj(value), nk)
        keep = None if attend is None else attend[:, None, None, :]  # (B, 1, 1, Nk), True = attend
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            if keep is not None:
                scores = scores.masked_fill(~keep, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, p, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, d)), weights


def coord_features(batch: int, height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """Normalised pixel coordinates, ``(B, 2, H, W)``: channel 0 is x, channel 1 is y, both in [-1, 1].

    This is the "spatial coordinate feature" of CoordConv (Liu et al., 2018), which LTS (Sec. 3.1)
    and CRIS (FPN neck, Sec. 3.2) concatenate to their feature maps so convolutions know *where* they are.
    """
    y = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    x = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy]).unsqueeze(0).expand(batch, -1, -1, -1)


def add_coords(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C + 2, H, W)``: append x and y coordinate channels."""
    b, _, h, w = x.shape
    return torch.cat([x, coord_features(b, h, w, device=x.device, dtype=x.dtype)], dim=1)


def sine_position_1d(length: int, dim: int) -> torch.Tensor:
    """Sine/cosine positions of a sequence, ``(L, D)`` (Vaswani et al., 2017, Sec. 3.5).

    ``pe[p, 2i] = sin(p / 10000^(2i/D))`` and ``pe[p, 2i+1] = cos(p / 10000^(2i/D))``. CRIS adds it to
    the word features used as keys in the decoder's cross-attention (Sec. 3.3).
    """
    if dim % 2:
        raise ValueError(f"sine_position_1d needs an even dim, got {dim}")
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def sine_position_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """Sine/cosine positions of a feature map, ``(D, H, W)``, as in the CRIS decoder (Sec. 3.3).

    The first ``D/2`` channels encode the column x (interleaved sin, cos), the last ``D/2`` the row y,
    each with the 1-D frequencies of a ``D/2``-dimensional encoding.
    """
    if dim % 4:
        raise ValueError(f"sine_position_2d needs dim divisible by 4, got {dim}")
    half = dim // 2
    x = sine_position_1d(width, half).t()  # (D/2, W)
    y = sine_position_1d(height, half).t()  # (D/2, H)
    return torch.cat([x[:, None, :].expand(half, height, width), y[:, :, None].expand(half, height, width)])


# Output biases start at logit(0.1) (RetinaNet's "prior probability" init): a referred object covers a
# minority of cells, and starting at p = 0.5 makes the first hundreds of steps learn only that.
INIT_PROB = 0.1


def init_prob_bias(layer: nn.Module, prob: float = INIT_PROB) -> nn.Module:
    """Set ``layer.bias`` so that ``sigmoid(output) = prob`` for a zero input."""
    nn.init.constant_(layer.bias, -math.log((1 - prob) / prob))
    return layer
