"""LTS: "Locate then Segment" (Jing et al., CVPR 2021), the first open implementation.

No official code exists, and the paper's full text could not be checked here. What the paper states
(abstract, Fig. 2 caption): a ConvNet encodes the image and a bi-GRU the expression; the two are fused
into cross-modal features; a cross-modal interaction module - "e.g. filtering and transformer" - locates
the referent with an object **position prior**; the prior is concatenated with the cross-modal features
and a light-weight convolutional network produces the mask. The abstract reports +3.2 points on RefCOCO+
and +3.4 on RefCOCOg over the previous best, and a model "more interpretable", shown by visualisation.

The three steps live in three files: :mod:`~refseg_core.models.lts_fusion` (fuse),
:mod:`~refseg_core.models.position_prior` (*locate*), :mod:`~refseg_core.models.lts_segment`
(*segment*); this file holds the table of choices, the model that joins them, and its builders. How each
step is built is this book's choice, not the paper's. The table lists every choice with its keyword of
``build_model("lts", ...)`` / ``build_model("lts_tiny", ...)`` (and of a run's ``model_overrides``);
the two rows marked *not a keyword* are fixed in the code, at the place they name. *Unverified* marks
what other papers report about LTS but the abstract and Fig. 2 caption do not state.

| choice (keyword, or where it is fixed) | value used (lts / lts_tiny), and why |
|---|---|
| visual encoder (``backbone``, ``pretrained``, ``leaky_slope``, ``normalization``) | DarkNet-53, reported for LTS (*unverified*): random, or timm's ImageNet weights (its COCO ones cannot be downloaded), with their LeakyReLU slope and input statistics; or ``clip_rn50`` / ``clip_rn101`` |
| sizes (``width``, ``depth``, ``dim``, ``seg_dim``) | backbone width and depth 1, 1 / 0.125, 0.25; fusion width D 512 / 64; head width 256 / 32 |
| backbone levels (``levels``) | ``[3, 4, 5]``, strides 8, 16, 32 (any increasing subset holding 3, the stride-8 grid); three levels are reported (*unverified*) |
| vocabulary (``vocab``, ``word_len``) | the training words, 20 tokens, others map to ``<unk>`` |
| vocabulary cut-off (*not a keyword*: ``engine.build_model_for``) | ``min_count=1``, every training word: a built model receives only the word list |
| words (``embed_dim``, ``glove_path``, ``gru_hidden``, ``gru_layers``, ``text_dropout``) | 300 / 32-d embeddings, GloVe if a file is given (reported, *unverified*); bi-GRU, 1 layer, 256 / 32 per direction, packed |
| sentence vector (``sentence_summary``) | ``"ends"``: the last forward and backward states, the usual summary (``"mean"``: mean word state) |
| fusion operator (``fusion_op``) | ``"product"``, BN(conv1x1 V_i) * Linear_i(s): reported (*unverified*); ``"sum"``, ``"concat"`` |
| coordinates (``coords``) | ``True``: CoordConv xy channels in fusion and locate, so a position can mean "left" |
| aggregation (*not a keyword*: ``Fusion.forward``) | top-down (upsample, concatenate, conv3x3) to stride 8: one map for locate and segment |
| interaction (``interaction``) | ``"transformer"`` or ``"filtering"``, the two the paper names |
| transformer (``heads``, ``prior_layers``, ``ffn_dim``) | pre-norm pixel self-attention, pixel-to-word cross-attention, FFN; 8 / 4 heads, 2 / 1 layers, 1024 / 128 |
| filtering (``filters``, ``filter_dim``) | K sentence-made 1x1 kernels mixed by a 3x3 conv; K 16 / 8, width 256 / 32 |
| prior resolution (``prior_stride``) | 8, the fused grid (16, 32: pooled input, prior resized to 8 for the head) |
| prior target (``prior_target``, ``gaussian_sigma``, ``gaussian_min_sigma``) | ``"mask"``: area-averaged to the prior grid; ``"gaussian"``: at the centre of mass, sigma = 1.0 x the mask's coordinate std, at least 0.5 cell |
| prior loss weight (``prior_weight``) | lambda = 1.0; the paper gives no value |
| prior into the head (``prior_detach``) | sigma(P) as one more channel of F (fixed in ``LTS.forward_features``), with its gradient (``False``) |
| segment head (``dilations``) | conv3x3, dilated conv3x3 at rates 1, 2, 4, conv1x1, up x2, conv3x3, conv1x1 |
| mask target (``mask_target``) | ``"area"``: area-averaged to stride 4, soft at thin edges (``"nearest"``, as CRIS's code) |
| output bias init (``init_prob``) | both last biases at logit(0.1): objects cover few cells |
| ablation (``use_prior``) | ``False``: no locate module, the head reads F alone |

Input: images ``(B, 3, H, W)`` with H and W multiples of 32 (the DarkNet stride), normalised by the
data pipeline; tokens ``(B, L)`` from ``model.tokenizer`` (a :class:`refseg_core.text.WordVocab`).
Output: ``model(images, tokens)`` -> mask logits ``(B, 1, H/4, W/4)``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from refseg_core.data.synthetic_lexicon import synthetic_vocabulary
from refseg_core.models import register_model
from refseg_core.models.base import NORMALIZATIONS, RefSegModel
from refseg_core.models.darknet import (
    TIMM_SLOPE,
    TIMM_TAGS,
    YOLO_SLOPE,
    DarkNet53,
    load_darknet_weights,
    read_darknet_state,
)
from refseg_core.models.gru_text import GRUTextEncoder
from refseg_core.models.lts_fusion import FUSION_OPS, Fusion
from refseg_core.models.lts_segment import SegmentHead
from refseg_core.models.position_prior import (
    FilterLocate,
    TransformerLocate,
    prior_target_gaussian,
    prior_target_mask,
)
from refseg_core.text import WordVocab

INTERACTIONS = ("transformer", "filtering")
PRIOR_TARGETS = ("mask", "gaussian")
MASK_TARGETS = ("area", "nearest")
SENTENCE_SUMMARIES = ("ends", "mean")
PRIOR_STRIDES = (8, 16, 32)
BACKBONES = ("darknet53", "clip_rn50", "clip_rn101", "clip_tiny")
_CLIP_ARCH = {"clip_rn50": "RN50", "clip_rn101": "RN101", "clip_tiny": "tiny"}

DEFAULTS = {
    "backbone": "darknet53",
    "pretrained": None,
    "leaky_slope": None,
    "normalization": None,
    "width": 1.0,
    "depth": 1.0,
    "levels": [3, 4, 5],
    "vocab": None,
    "word_len": None,
    "glove_path": None,
    "embed_dim": 300,
    "gru_hidden": 256,
    "gru_layers": 1,
    "text_dropout": 0.0,
    "sentence_summary": "ends",
    "fusion_op": "product",
    "coords": True,
    "dim": 512,
    "interaction": "transformer",
    "heads": 8,
    "prior_layers": 2,
    "ffn_dim": 1024,
    "filters": 16,
    "filter_dim": 256,
    "use_prior": True,
    "prior_stride": 8,
    "prior_target": "mask",
    "prior_weight": 1.0,
    "gaussian_sigma": 1.0,
    "gaussian_min_sigma": 0.5,
    "prior_detach": False,
    "seg_dim": 256,
    "dilations": [1, 2, 4],
    "mask_target": "area",
    "init_prob": 0.1,
}
TINY = dict(
    DEFAULTS,
    width=0.125,
    depth=0.25,
    embed_dim=32,
    gru_hidden=32,
    dim=64,
    heads=4,
    prior_layers=1,
    ffn_dim=128,
    filters=8,
    filter_dim=32,
    seg_dim=32,
)


def choices_table() -> str:
    """The table of choices the paper leaves open (Markdown), as written in this module's docstring."""
    return "\n".join(line for line in __doc__.splitlines() if line.startswith("|"))


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------
class ClipVisual(nn.Module):
    """Adapter: the CLIP image tower of :func:`refseg_core.models.clip.build_clip_backbone` as a
    three-level encoder ``x (B, 3, H, W) -> (v3 (B, C3, H/8, W/8), v4 (B, C4, H/16, W/16),
    v5 (B, C5, H/32, W/32))``; ``out_channels`` = (512, 1024, 1024) for RN50, (512, 1024, 512) RN101."""

    # LTS encodes text with its own bi-GRU: CLIP's text tower is dropped (never run, never saved).
    TEXT_PARTS = (
        "transformer",
        "token_embedding",
        "positional_embedding",
        "ln_final",
        "text_projection",
        "logit_scale",
    )

    def __init__(self, arch: str, pretrained):
        super().__init__()
        from refseg_core.models.clip import build_clip_backbone

        self.clip = build_clip_backbone(arch, pretrained)
        for part in self.TEXT_PARTS:
            if hasattr(self.clip, part):
                setattr(self.clip, part, None)
        self.out_channels = tuple(int(c) for c in self.clip.vision_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(self.clip.encode_image(x))


class LTS(RefSegModel):
    """Locate then Segment. Build it with ``build_model("lts" | "lts_tiny", **overrides)``.

    ``forward(images (B, 3, H, W), tokens (B, L)) -> logits (B, 1, H/4, W/4)``;
    :meth:`forward_features` also returns the fused map, the position prior and the word attention.
    """

    decoder_stride = 8  # fusion, locate and the segment head's input share the stride-8 grid

    def __init__(self, cfg: dict, vocab: WordVocab):
        super().__init__()
        self.tokenizer = vocab
        self.use_prior = bool(cfg["use_prior"])
        self.prior_target = cfg["prior_target"]
        self.prior_weight = float(cfg["prior_weight"])
        self.gaussian_sigma = float(cfg["gaussian_sigma"])
        self.normalization = cfg["normalization"]
        self.gaussian_min_sigma = float(cfg["gaussian_min_sigma"])
        self.prior_detach = bool(cfg["prior_detach"])
        self.prior_pool = int(cfg["prior_stride"]) // self.decoder_stride  # 1, 2 or 4
        self.mask_target = cfg["mask_target"]
        self.sentence_summary = cfg["sentence_summary"]
        self.levels = [int(v) - 3 for v in cfg["levels"]]  # indices into the backbone's (v3, v4, v5)
        if cfg["backbone"] == "darknet53":
            self.backbone = DarkNet53(cfg["width"], cfg["depth"], cfg["leaky_slope"])
        else:
            self.backbone = ClipVisual(_CLIP_ARCH[cfg["backbone"]], cfg["pretrained"])
        self.text = GRUTextEncoder(
            len(vocab), cfg["embed_dim"], cfg["gru_hidden"], cfg["gru_layers"], cfg["text_dropout"]
        )
        dim, tdim, coords, p0 = int(cfg["dim"]), self.text.out_dim, bool(cfg["coords"]), cfg["init_prob"]
        channels = [self.backbone.out_channels[i] for i in self.levels]
        self.fusion = Fusion(channels, tdim, dim, cfg["fusion_op"], coords)
        if not self.use_prior:
            self.locator = None
        elif cfg["interaction"] == "transformer":
            self.locator = TransformerLocate(
                dim, tdim, int(cfg["heads"]), int(cfg["prior_layers"]), int(cfg["ffn_dim"]), coords, p0
            )
        else:
            self.locator = FilterLocate(dim, tdim, int(cfg["filters"]), int(cfg["filter_dim"]), coords, p0)
        c_in = dim + (1 if self.use_prior else 0)
        self.segment = SegmentHead(c_in, int(cfg["seg_dim"]), cfg["dilations"], p0)

    # -- shared path ---------------------------------------------------------------------------------
    def _check(self, images: torch.Tensor, tokens: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(
                f"images: height and width must be multiples of 32 (the backbone stride), got {h}x{w}"
            )
        if tokens.dim() != 2 or tokens.shape[0] != images.shape[0]:
            raise ValueError(
                f"tokens must be (B, L) with B = {images.shape[0]} images, got shape {tuple(tokens.shape)}"
            )

    def forward_features(
        self, images: torch.Tensor, tokens: torch.Tensor, return_attention: bool = True
    ) -> dict:
        """The model's intermediates by name (the keys of :class:`refseg_core.models.base.RefSegModel`).

        ``fused`` (B, D, H/8, W/8): the cross-modal map F (fuse); ``prior_logits`` (B, 1, H/s, W/s) with
        s = ``prior_stride`` (8 by default): the position prior P (locate; None when ``use_prior=False``);
        ``decoder`` (B, D+1, H/8, W/8): what the segment head reads, ``[F; sigmoid(P)]`` (F alone without
        the prior), at ``decoder_stride`` = 8; ``word_attention`` (B, L, H/s, W/s): the transformer locate
        module's last pixel->word weights, averaged over heads (None for filtering, without the prior, or
        unless ``return_attention``); ``logits`` (B, 1, H/4, W/4): the mask (segment).
        """
        self._check(images, tokens)
        feats = self.backbone(images)
        feats = [feats[i] for i in self.levels]  # V3 (stride 8) first
        words, sentence, valid = self.text(tokens)  # valid (B, L): True at real words
        if self.sentence_summary == "mean":
            sentence = (words * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
        fused = self.fusion(feats, sentence)  # (B, D, H/8, W/8)
        prior = attention = None
        x = fused
        if self.locator is not None:
            grid = F.avg_pool2d(fused, self.prior_pool) if self.prior_pool > 1 else fused
            prior, attention = self.locator(
                grid, words, valid, sentence, return_attention
            )  # (B, 1, H/prior_stride, W/prior_stride)
            p = torch.sigmoid(prior.detach() if self.prior_detach else prior)
            if p.shape[-2:] != fused.shape[-2:]:
                p = F.interpolate(p, size=fused.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([fused, p], dim=1)
        return {
            "fused": fused,
            "prior_logits": prior,
            "decoder": x,
            "word_attention": attention,
            "logits": self.segment(x),
        }

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``images (B, 3, H, W), tokens (B, L) -> mask logits (B, 1, H/4, W/4)``."""
        return self.forward_features(images, tokens, return_attention=False)["logits"]

    def prior_targets(self, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The prior's training target ``(B, 1, h, w)`` for ``masks (B, 1, H, W)`` (``prior_target``)."""
        if self.prior_target == "gaussian":
            return prior_target_gaussian(masks, size, self.gaussian_sigma, self.gaussian_min_sigma)
        return prior_target_mask(masks, size)

    def mask_targets(self, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The mask's training target ``(B, 1, H/4, W/4)`` for ``masks (B, 1, H, W)`` (``mask_target``)."""
        if self.mask_target == "nearest":
            return F.interpolate(masks, size=size, mode="nearest")
        return prior_target_mask(masks, size)

    def loss(self, images: torch.Tensor, tokens: torch.Tensor, masks: torch.Tensor) -> dict:
        """``loss = BCE(logits, mask target at H/4) + prior_weight * BCE(prior, prior target)``.

        ``masks``: ``(B, 1, H, W)`` (or ``(B, H, W)``) in [0, 1] at input resolution. Returns
        ``dict(loss, logits, mask_bce, prior_bce)``; ``prior_bce`` is 0 when ``use_prior=False``.
        """
        if masks.dim() == 3:
            masks = masks[:, None]
        if (
            masks.dim() != 4
            or masks.shape[1] != 1
            or masks.shape[-2:] != images.shape[-2:]
            or masks.shape[0] != images.shape[0]
        ):
            raise ValueError(
                f"masks must be (B, 1, H, W) matching images {tuple(images.shape)}, got {tuple(masks.shape)}"
            )
        masks = masks.float()
        if bool((masks < 0).any() or (masks > 1).any()):
            raise ValueError("masks must hold values in [0, 1]")
        out = self.forward_features(images, tokens, return_attention=False)
        logits = out["logits"]
        mask_bce = F.binary_cross_entropy_with_logits(logits, self.mask_targets(masks, logits.shape[-2:]))
        if out["prior_logits"] is None:
            prior_bce = logits.new_zeros(())
        else:
            prior = out["prior_logits"]
            prior_bce = F.binary_cross_entropy_with_logits(prior, self.prior_targets(masks, prior.shape[-2:]))
        loss = mask_bce + self.prior_weight * prior_bce
        return {
            "loss": loss,
            "logits": logits,
            "mask_bce": mask_bce.detach(),
            "prior_bce": prior_bce.detach(),
        }

    def param_groups(self, lr: float, backbone_lr_mult: float = 1.0) -> list[dict]:
        """Two groups: the visual backbone at ``lr * backbone_lr_mult``, everything else at ``lr``."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in self.backbone.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [
            {"params": backbone, "lr": lr * backbone_lr_mult, "name": "backbone"},
            {"params": rest, "lr": lr, "name": "head"},
        ]


# ----------------------------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------------------------
def _resolve_vocab(vocab, word_len) -> WordVocab:
    if isinstance(vocab, WordVocab):
        return vocab if word_len is None else WordVocab(vocab.itos[2:], max_len=word_len)
    if vocab is None:
        vocab = synthetic_vocabulary()
    if isinstance(vocab, str) or not all(isinstance(w, str) for w in vocab):
        raise ValueError("vocab must be a WordVocab, a list of words, or None (the synthetic vocabulary)")
    return WordVocab(list(vocab), max_len=20 if word_len is None else word_len)


def build_lts(name: str, defaults: dict, **overrides) -> LTS:
    """Validate ``overrides`` against ``defaults``, build :class:`LTS`, and record ``model.config``.

    ``model.config`` rebuilds the same architecture and tokenizer with ``build_model(**model.config)``:
    it holds ``name`` and the vocabulary's words. Initial-weight sources (``pretrained``, ``glove_path``)
    are stored as None there (:meth:`~refseg_core.models.base.RefSegModel.record_config`: the checkpoint's
    state dict carries the trained weights, so rebuilding never needs those files) and kept in
    ``model.init_sources``.
    """
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"{name}: unknown keyword(s) {unknown}; valid: {', '.join(sorted(defaults))}")
    cfg = dict(defaults, **overrides)
    for key, allowed in (
        ("interaction", INTERACTIONS),
        ("prior_target", PRIOR_TARGETS),
        ("backbone", BACKBONES),
        ("fusion_op", FUSION_OPS),
        ("mask_target", MASK_TARGETS),
        ("sentence_summary", SENTENCE_SUMMARIES),
        ("prior_stride", PRIOR_STRIDES),
    ):
        if cfg[key] not in allowed:
            raise ValueError(f"{name}: {key}={cfg[key]!r} is not one of {allowed}")
    levels = [int(v) for v in cfg["levels"]]
    if 3 not in levels or sorted(set(levels)) != levels or not set(levels) <= {3, 4, 5}:
        raise ValueError(
            f"{name}: levels={cfg['levels']!r} must be increasing backbone levels from 3, 4, 5 holding 3 "
            "(the stride-8 grid the segment head reads)"
        )
    cfg["levels"] = levels
    if not 0.0 < float(cfg["init_prob"]) < 1.0:
        raise ValueError(f"{name}: init_prob must lie strictly between 0 and 1, got {cfg['init_prob']}")
    if float(cfg["gaussian_min_sigma"]) <= 0:
        raise ValueError(f"{name}: gaussian_min_sigma must be > 0, got {cfg['gaussian_min_sigma']}")
    if float(cfg["prior_weight"]) < 0:
        raise ValueError(f"{name}: prior_weight must be >= 0, got {cfg['prior_weight']}")
    for key in ("dim", "seg_dim", "embed_dim", "gru_hidden", "heads", "filters", "filter_dim", "ffn_dim"):
        if int(cfg[key]) < 1:
            raise ValueError(f"{name}: {key} must be a positive integer, got {cfg[key]}")
    darknet_state, fmt = None, None
    if cfg["backbone"] == "darknet53" and cfg["pretrained"] is not None:
        pretrained = cfg["pretrained"]
        if not (isinstance(pretrained, str) and pretrained in TIMM_TAGS) and not os.path.isfile(
            os.fspath(pretrained)
        ):
            raise FileNotFoundError(
                f"{name}: pretrained={pretrained!r} is neither a local file nor a tag ({', '.join(TIMM_TAGS)}: "
                "timm's ImageNet DarkNet-53). COCO-trained DarkNet-53 weights cannot be downloaded."
            )
        darknet_state, fmt = read_darknet_state(pretrained)
    timm_weights = fmt == "timm"
    if cfg["leaky_slope"] is None:  # the activation the loaded weights were trained with
        cfg["leaky_slope"] = TIMM_SLOPE if timm_weights else YOLO_SLOPE
    if cfg["normalization"] is None:  # the statistics they expect; random DarkNet keeps the book's (CLIP)
        cfg["normalization"] = "imagenet" if timm_weights else "clip"
    if cfg["normalization"] not in NORMALIZATIONS:
        raise ValueError(
            f"{name}: normalization={cfg['normalization']!r} is not one of {tuple(NORMALIZATIONS)}"
        )
    cfg["leaky_slope"] = float(cfg["leaky_slope"])
    vocab = _resolve_vocab(cfg["vocab"], cfg["word_len"])
    cfg["dilations"] = [int(d) for d in cfg["dilations"]]
    model = LTS(cfg, vocab)
    if darknet_state is not None:
        try:
            load_darknet_weights(model.backbone, darknet_state, fmt)
        except ValueError as exc:
            raise ValueError(f"{name}: pretrained={cfg['pretrained']!r}: {exc}") from None
    model.glove_found = None
    if cfg["glove_path"] is not None:
        model.glove_found = model.text.init_from_glove(cfg["glove_path"], vocab.itos)
    model.record_config(dict(cfg, name=name, vocab=list(vocab.itos[2:]), word_len=vocab.max_len))
    return model


@register_model("lts", word_vocabulary=True)
def lts(**overrides) -> LTS:
    """LTS at paper scale: DarkNet-53, 300-d embeddings, bi-GRU 2x256, D = 512, 416x416 inputs."""
    return build_lts("lts", DEFAULTS, **overrides)


@register_model("lts_tiny", word_vocabulary=True)
def lts_tiny(**overrides) -> LTS:
    """LTS for CPU smoke runs: DarkNet-53 at width 1/8, depth 1/4; D = 64."""
    return build_lts("lts_tiny", TINY, **overrides)
