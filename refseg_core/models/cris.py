"""CRIS: CLIP-Driven Referring Image Segmentation (Wang et al., CVPR 2022), as the official code builds it.

The parts live in files named after them: :mod:`~refseg_core.models.clip` (encoders, Sec. 3.1),
:mod:`~refseg_core.models.cris_neck` (Sec. 3.2), :mod:`~refseg_core.models.vl_decoder` (Sec. 3.3),
:mod:`~refseg_core.models.text_to_pixel` (Sec. 3.4); this file joins them into the model and builds it.

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

from refseg_core.models import register_model
from refseg_core.models.base import RefSegModel
from refseg_core.models.clip import TINY_DEFAULTS, build_clip_backbone
from refseg_core.models.cris_neck import CRISNeck
from refseg_core.models.text_to_pixel import TextToPixelProjector
from refseg_core.models.vl_decoder import VisionLanguageDecoder


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
