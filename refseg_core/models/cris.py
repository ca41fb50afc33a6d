"""CRIS: CLIP-Driven Referring Image Segmentation (Wang et al., CVPR 2022), as the official code builds it.

Over 350 lines on purpose: the four parts of Fig. 2 are read side by side, as the paper presents them.

Pipeline (paper Fig. 2; shapes for RN50 at 416x416):

1. Encoders (Sec. 3.1, :mod:`refseg_core.models.clip`): ``v3 (B,512,52,52)``, ``v4 (B,1024,26,26)``,
   ``v5 (B,1024,13,13)``; word states ``(B,L,512)`` and the sentence state ``(B,1024)``.
2. Cross-modal neck (Sec. 3.2, :class:`CRISNeck`): an FPN gated by the sentence, with CoordConv ->
   ``(B,512,26,26)``.
3. Vision-language decoder (Sec. 3.3, :class:`VisionLanguageDecoder`): pixels attend to pixels, then to
   words -> ``(B,512,26,26)``.
4. Text-to-pixel head (Sec. 3.4, :class:`TextToPixelProjector`): pixels up to stride 4, the sentence
   turned into a per-sample 3x3 kernel -> logits ``(B,1,104,104)``.

The paper's "text-to-pixel contrastive loss" is binary cross-entropy on these logits against the mask
(:meth:`CRIS.loss`); there is no other term.

Reproduction notes (behaviour of the official code, reproduced on purpose):

* (b) ``token_embedding.requires_grad_ = False`` in the official CLIP is an attribute *assignment*, not
  a call, so the token embedding trains. Default ``freeze_token_embedding=False`` does the same; ``True``
  does what was meant.
* (a) see :func:`refseg_core.engine.optim.official_epoch_lrs`: the official optimiser runs the backbone at the
  base lr in epoch 1.
* The sentence projection uses BatchNorm1d, so a training batch needs at least 2 samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from refseg_core.models import register_model
from refseg_core.models.base import RefSegModel
from refseg_core.models.clip import TINY_DEFAULTS, build_clip_backbone
from refseg_core.models.layers import (
    MultiHeadAttention,
    add_coords,
    conv_bn_relu,
    sine_position_1d,
    sine_position_2d,
)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------- neck
class CRISNeck(nn.Module):
    """Cross-modal FPN (Sec. 3.2): fuses ``v3, v4, v5`` with the sentence state into ``(B, C4, h, w)``
    at stride 16, where ``channels = (C3, C4, C5)`` are the output widths (256, 512, 1024).

    * ``f5 = BNReLU(convBNReLU1x1(v5) * sentence_proj(state))`` at stride 32 (the only place the
      sentence enters the neck: a channel-wise gate);
    * ``f4 = convBNReLU1x1(cat(convBNReLU3x3(v4), up2(f5)))`` at stride 16;
    * ``f3 = convBNReLU1x1(cat(avgpool2(convBNReLU3x3(v3)), f4))`` at stride 16;
    * each projected by a 3x3 conv to C4 (``f5`` then upsampled), concatenated, fused by 1x1, then a
      CoordConv 3x3 (x, y channels appended) and a 3x3 conv.
    """

    def __init__(
        self, in_channels=(512, 1024, 1024), channels=(256, 512, 1024), state_dim: int | None = None
    ):
        super().__init__()
        c3, c4, c5 = channels
        state_dim = in_channels[2] if state_dim is None else state_dim
        self.sentence_proj = nn.Sequential(
            nn.Linear(state_dim, c5, bias=False), nn.BatchNorm1d(c5), nn.ReLU(inplace=True)
        )
        self.v5_proj = conv_bn_relu(in_channels[2], c5, 1)
        self.f5_norm = nn.Sequential(nn.BatchNorm2d(c5), nn.ReLU(inplace=True))
        self.v4_proj = conv_bn_relu(in_channels[1], c4, 3)
        self.f4_fuse = conv_bn_relu(c5 + c4, c4, 1)
        self.v3_proj = conv_bn_relu(in_channels[0], c3, 3)
        self.f3_fuse = conv_bn_relu(c3 + c4, c4, 1)
        self.out5 = conv_bn_relu(c5, c4, 3)
        self.out4 = conv_bn_relu(c4, c4, 3)
        self.out3 = conv_bn_relu(c4, c4, 3)
        self.aggregate = conv_bn_relu(3 * c4, c4, 1)
        self.coord_conv = conv_bn_relu(c4 + 2, c4, 3)  # CoordConv: input has 2 coordinate channels more
        self.out_conv = conv_bn_relu(c4, c4, 3)

    def forward(self, v3, v4, v5, state) -> torch.Tensor:
        """``v3 (B,C3',8s), v4 (B,C4',16s), v5 (B,C5',32s), state (B,E) -> (B, C4, H/16, W/16)``."""
        gate = self.sentence_proj(state)[:, :, None, None]  # (B, C5, 1, 1)
        f5 = self.f5_norm(self.v5_proj(v5) * gate)
        f4 = self.f4_fuse(torch.cat([self.v4_proj(v4), _up2(f5)], dim=1))
        f3 = self.f3_fuse(torch.cat([F.avg_pool2d(self.v3_proj(v3), 2, 2), f4], dim=1))
        fq = torch.cat([self.out3(f3), self.out4(f4), _up2(self.out5(f5))], dim=1)
        fq = self.aggregate(fq)
        return self.out_conv(self.coord_conv(add_coords(fq)))


# ------------------------------------------------------------------------------------------ decoder
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


# ---------------------------------------------------------------------------------------- projector
class TextToPixelProjector(nn.Module):
    """Text-to-pixel head (Sec. 3.4): ``fq (B, D, H/16, W/16)``, ``state (B, E)`` -> logits
    ``(B, 1, H/4, W/4)``.

    Pixels: up2 -> convBNReLU3x3(D -> D) -> up2 -> convBNReLU3x3(D -> D/2) -> conv1x1 = ``z_v``
    ``(B, D/2, H/4, W/4)``. Sentence: ``Linear(E -> D/2*3*3 + 1)`` = a 3x3 kernel and a bias per sample,
    applied to its own sample with a grouped convolution (groups = B).
    """

    def __init__(self, state_dim=1024, dim=512, kernel_size=3):
        super().__init__()
        c = dim // 2
        self.kernel_size = kernel_size
        self.vis = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv_bn_relu(dim, dim, 3),
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv_bn_relu(dim, c, 3),
            nn.Conv2d(c, c, 1),
        )
        self.dynamic_kernel = nn.Linear(state_dim, c * kernel_size * kernel_size + 1)

    def kernels(self, state):
        """``state (B, E)`` -> ``weight (B, D/2, k, k)``, ``bias (B,)``."""
        params = self.dynamic_kernel(state)
        b = state.shape[0]
        return params[:, :-1].reshape(b, -1, self.kernel_size, self.kernel_size), params[:, -1]

    def forward(self, fq, state, return_parts: bool = False):
        z = self.vis(fq)  # (B, C, h, w)
        b, c, h, w = z.shape
        weight, bias = self.kernels(state)
        # One group per sample: sample i's channels meet only sample i's kernel.
        logits = F.conv2d(z.reshape(1, b * c, h, w), weight, bias, padding=self.kernel_size // 2, groups=b)
        logits = logits.reshape(b, 1, h, w)
        return (logits, z, weight, bias) if return_parts else logits


# -------------------------------------------------------------------------------------------- model
class CRIS(RefSegModel):
    """CRIS = dense CLIP backbone + :class:`CRISNeck` + :class:`VisionLanguageDecoder` +
    :class:`TextToPixelProjector`. ``forward(images (B,3,H,W), tokens (B,L)) -> (B,1,H/4,W/4)``.

    Build with ``build_model("cris_r50" | "cris_r101" | "cris_tiny", **overrides)``.
    """

    decoder_stride = 16  # the neck ends at H/16 and the decoder keeps that grid (Sec. 3.2-3.3)

    def __init__(
        self,
        backbone,
        neck_channels=(256, 512, 1024),
        num_layers=3,
        num_heads=8,
        dim_ffn=2048,
        dropout=0.1,
        freeze_token_embedding=False,
    ):
        super().__init__()
        self.backbone = backbone
        dim = neck_channels[1]
        self.neck = CRISNeck(backbone.vision_channels, neck_channels, backbone.state_dim)
        self.decoder = VisionLanguageDecoder(num_layers, dim, num_heads, dim_ffn, dropout, backbone.word_dim)
        self.projector = TextToPixelProjector(backbone.state_dim, dim)
        # Official quirk (b): the token embedding trains unless asked otherwise.
        self.backbone.token_embedding.weight.requires_grad_(not freeze_token_embedding)

    def forward_features(
        self, images: torch.Tensor, tokens: torch.Tensor, return_attention: bool = True
    ) -> dict:
        """Every intermediate the CRIS chapter shows, keyed by name (shapes for RN50 at 416).

        The keys of the model protocol (:class:`refseg_core.models.base.RefSegModel`): ``fused`` the neck
        output (B,512,26,26) (Sec. 3.2), ``decoder`` the decoder output (B,512,26,26) (Sec. 3.3), both at
        ``decoder_stride`` = 16; ``word_attention`` (B,L,26,26) the last decoder layer's pixel->word weights
        averaged over heads (None unless ``return_attention``); ``logits`` (B,1,104,104).

        CRIS's own: ``v3`` (B,512,52,52), ``v4`` (B,1024,26,26), ``v5`` (B,1024,13,13), ``words`` (B,L,512),
        ``state`` (B,1024), ``pad_mask`` (B,L) True at padding, ``word_attention_layers`` a list per layer
        of (B,8,676,L) weights (None unless asked), ``pixel_embeddings`` (B,256,104,104), ``kernel``
        (B,256,3,3), ``bias`` (B,).
        """
        if tokens.ndim != 2 or tokens.shape[0] != images.shape[0]:
            raise ValueError(
                f"tokens must be (B, L) with B = {images.shape[0]} images, got {tuple(tokens.shape)}"
            )
        if self.training and images.shape[0] < 2:
            raise ValueError(
                "CRIS in training mode needs a batch of >= 2 (BatchNorm1d on the sentence, as in the "
                "official code); use model.eval() for a single sample"
            )
        v3, v4, v5 = self.backbone.encode_image(images)
        words, state, pad_mask = self.backbone.encode_text(tokens)
        fused = self.neck(v3, v4, v5, state)
        dec = self.decoder(fused, words, pad_mask, return_attention=return_attention)
        dec, layers = dec if return_attention else (dec, None)
        word_attention = None
        if layers:
            b, _, h, w = dec.shape  # last layer, mean over heads: (B, HW, L) -> (B, L, h, w)
            word_attention = layers[-1].mean(1).transpose(1, 2).reshape(b, -1, h, w)
        logits, z, kernel, bias = self.projector(dec, state, return_parts=True)
        return dict(
            v3=v3,
            v4=v4,
            v5=v5,
            words=words,
            state=state,
            pad_mask=pad_mask,
            fused=fused,
            decoder=dec,
            word_attention=word_attention,
            word_attention_layers=layers,
            pixel_embeddings=z,
            kernel=kernel,
            bias=bias,
            logits=logits,
        )

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images, tokens, return_attention=False)["logits"]

    def loss(self, images: torch.Tensor, tokens: torch.Tensor, masks: torch.Tensor) -> dict:
        """Sec. 3.4: BCE with logits against the mask resized (nearest) to the logit size; plain mean."""
        if masks.ndim == 3:
            masks = masks[:, None]
        logits = self(images, tokens)
        target = masks.to(logits.dtype)
        if target.shape[-2:] != logits.shape[-2:]:
            target = F.interpolate(target, size=logits.shape[-2:], mode="nearest")
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return dict(loss=bce, logits=logits, bce=bce.detach())

    def param_groups(self, lr: float, backbone_lr_mult: float = 0.1) -> list[dict]:
        """Two Adam groups, as the official ``build_segmenter``:

        * ``backbone``: parameters named ``backbone.*`` except those whose name contains
          ``positional_embedding`` (the text one and the attention pool's), at ``lr * backbone_lr_mult``
          (the new ``visual.attnpool.connect`` branch is in this group too);
        * ``head``: everything else, including both positional embeddings, at ``lr``.

        Each group carries ``initial_lr`` (what the official scheduler decays from). The official first
        epoch, which runs the backbone at ``lr`` too, is :func:`refseg_core.engine.optim.official_epoch_lrs`
        (``official_lr_quirk`` in :func:`refseg_core.engine.optim.build_optimizer`). Frozen parameters are left out.
        """
        backbone, head = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            is_backbone = name.startswith("backbone.") and "positional_embedding" not in name
            (backbone if is_backbone else head).append(p)
        b_lr = lr * backbone_lr_mult
        return [
            dict(params=backbone, lr=b_lr, initial_lr=b_lr, name="backbone"),
            dict(params=head, lr=lr, initial_lr=lr, name="head"),
        ]


# ----------------------------------------------------------------------------------------- builders
_COMMON = dict(
    pretrained=None,
    word_len=17,
    freeze_token_embedding=False,
    neck_channels=(256, 512, 1024),
    num_layers=3,
    num_heads=8,
    dim_ffn=2048,
    dropout=0.1,
)
_TINY = dict(
    _COMMON,
    neck_channels=(32, 64, 128),
    num_layers=1,
    num_heads=4,
    dim_ffn=128,
    dropout=0.0,
    **TINY_DEFAULTS,
)


def _build_cris(name: str, arch: str, defaults: dict, overrides: dict) -> CRIS:
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(
            f"{name}: unknown keyword(s) {sorted(unknown)}; valid: {', '.join(sorted(defaults))}"
        )
    cfg = {**defaults, **overrides}
    if cfg["pretrained"] is not None and cfg["pretrained"] != "openai":
        cfg["pretrained"] = str(cfg["pretrained"])
    tiny = {k: cfg[k] for k in TINY_DEFAULTS if k in cfg}
    backbone = build_clip_backbone(arch, pretrained=cfg["pretrained"], word_len=cfg["word_len"], **tiny)
    model = CRIS(
        backbone,
        tuple(cfg["neck_channels"]),
        cfg["num_layers"],
        cfg["num_heads"],
        cfg["dim_ffn"],
        cfg["dropout"],
        cfg["freeze_token_embedding"],
    )
    from refseg_core.text import ClipTokenizer

    model.tokenizer = ClipTokenizer(cfg["word_len"])
    model.record_config(dict(name=name, **cfg))
    return model


@register_model("cris_r50")
def cris_r50(**overrides) -> CRIS:
    """CRIS with CLIP RN50 (official ``config/*/cris_r50.yaml``)."""
    return _build_cris("cris_r50", "RN50", _COMMON, overrides)


@register_model("cris_r101")
def cris_r101(**overrides) -> CRIS:
    """CRIS with CLIP RN101 (official ``config/*/cris_r101.yaml``: v5 and sentence state 512-d)."""
    return _build_cris("cris_r101", "RN101", _COMMON, overrides)


@register_model("cris_tiny")
def cris_tiny(**overrides) -> CRIS:
    """The same code at small widths for CPU smoke runs (random init; the widths are overrides)."""
    return _build_cris("cris_tiny", "tiny", _TINY, overrides)
