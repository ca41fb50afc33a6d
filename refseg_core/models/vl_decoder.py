"""CRIS, Sec. 3.3: the vision-language decoder. Pixels are the queries: they attend to each other, then to
the words (padding masked), through pre-norm transformer layers with sine positions. Follows the official
CRIS.pytorch ``model/layers.py`` (``TransformerDecoder``).
"""

from __future__ import annotations

from torch import nn

from refseg_core.models.layers import MultiHeadAttention, sine_position_1d, sine_position_2d


class DecoderLayer(nn.Module):
    """One vision-language decoder layer (Sec. 3.3), pre-norm, pixels as queries:

    ``x += drop(LN(SelfAttn(q=k=LN1(x)+P, v=LN1(x))))``;
    ``x += drop(LN(CrossAttn(q=LN2(x)+P, k=words+Pw, v=words)))``;
    ``x += drop(FFN(LN3(x)))`` with FFN = Linear-ReLU-Dropout-LayerNorm-Linear.
    """

    def __init__(self, dim=512, heads=8, dim_ffn=2048, dropout=0.1, word_dim: int | None = None):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.self_attn_norm = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout, kv_dim=word_dim)
        self.cross_attn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim_ffn),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.LayerNorm(dim_ffn),
            nn.Linear(dim_ffn, dim),
        )
        self.dropout1, self.dropout2, self.dropout3 = (
            nn.Dropout(dropout),
            nn.Dropout(dropout),
            nn.Dropout(dropout),
        )

    def forward(self, x, words, pos, word_pos, attend, return_attention: bool = False):
        """``x (B, HW, D)``, ``words (B, L, Dw)``, ``pos (HW, D)``, ``word_pos (L, Dw)``, ``attend (B, L)``
        bool (True at real tokens) -> ``(x (B, HW, D), weights (B, heads, HW, L) or None)``."""
        h = self.norm1(x)
        qk = h + pos
        x = x + self.dropout1(self.self_attn_norm(self.self_attn(qk, qk, h)[0]))
        h = self.norm2(x)
        out, weights = self.cross_attn(
            h + pos, words + word_pos, words, attend, need_weights=return_attention
        )
        x = x + self.dropout2(self.cross_attn_norm(out))
        x = x + self.dropout3(self.ffn(self.norm3(x)))
        return x, weights


class VisionLanguageDecoder(nn.Module):
    """``num_layers`` :class:`DecoderLayer` s and a final LayerNorm (Sec. 3.3).

    ``forward(vis (B, D, H, W), words (B, L, Dw), pad_mask (B, L), return_attention)`` ->
    ``(B, D, H, W)``, plus a list of per-layer pixel->word weights ``(B, heads, HW, L)`` if asked.
    ``pad_mask`` is True at padding (as the CLIP text encoder returns it); it is inverted once here to the
    models' ``True = attend`` convention (:mod:`refseg_core.models.layers`).
    Positions: 2-D sine encoding for pixels, 1-D for words (:mod:`refseg_core.models.layers`).
    """

    def __init__(
        self, num_layers=3, dim=512, heads=8, dim_ffn=2048, dropout=0.1, word_dim: int | None = None
    ):
        super().__init__()
        self.word_dim = dim if word_dim is None else word_dim
        self.layers = nn.ModuleList(
            DecoderLayer(dim, heads, dim_ffn, dropout, self.word_dim) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, vis, words, pad_mask, return_attention: bool = False):
        b, d, h, w = vis.shape
        pos = sine_position_2d(h, w, d).to(vis).flatten(1).t()  # (HW, D)
        word_pos = sine_position_1d(words.shape[1], words.shape[2]).to(words)  # (L, Dw)
        x = vis.flatten(2).transpose(1, 2)  # (B, HW, D)
        attend = ~pad_mask  # (B, L), True at real tokens
        attention = []
        for layer in self.layers:
            x, weights = layer(x, words, pos, word_pos, attend, return_attention)
            attention.append(weights)
        x = self.norm(x).transpose(1, 2).reshape(b, d, h, w)
        return (x, attention) if return_attention else x
