"""The protocol every model in this book follows, so notebooks, the CLI, tests and benchmarks meet
LTS and CRIS the same way."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from refseg_core.data.transforms import CLIP_MEAN, CLIP_STD

# Input statistics by name: ``(mean, std)`` per RGB channel in [0, 1]. ``clip``: OpenAI CLIP's (CRIS and
# the CLIP backbones); ``imagenet``: timm's ``pretrained_cfg`` of ``darknet53.c2ns_in1k`` (the ImageNet
# DarkNet-53 weights LTS can start from).
NORMALIZATIONS = {
    "clip": (CLIP_MEAN, CLIP_STD),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# Keys every model's ``forward_features`` returns (a model may add its own).
FEATURE_KEYS = ("fused", "decoder", "word_attention", "logits")

# Keywords of build_model that name a file (or a download) of initial weights. A checkpoint carries its
# weights in its state dict, so rebuilding it never needs them; a checkpoint that names one anyway
# (edited, or from elsewhere) must not make the loader open, or execute, another file.
WEIGHT_SOURCE_KEYS = ("pretrained", "glove_path")


def without_weight_sources(model_config) -> dict:
    """A copy of ``model_config`` with every initial-weight source it names (``pretrained``,
    ``glove_path``) set to None: what a checkpoint stores and what rebuilding from one uses."""
    cfg = dict(model_config)
    for key in WEIGHT_SOURCE_KEYS:
        if key in cfg:
            cfg[key] = None
    return cfg


class RefSegModel(nn.Module):
    """Base class: ``forward(images (B,3,H,W), tokens (B,L)) -> logits (B,1,H/4,W/4)``.

    Subclasses set ``self.tokenizer`` (a callable ``list[str] -> LongTensor (B, L)``), ``self.config``
    (the keyword arguments, including ``name``, that rebuild the model with
    :func:`refseg_core.models.build_model`) and the class attribute ``decoder_stride`` (the stride of
    the grid the mask head reads: 8 for LTS, 16 for CRIS), and ``normalization`` when their backbone
    expects other input statistics than CLIP's (``input_mean``, ``input_std`` and the letterbox ``fill``
    follow from it; the dataset, :func:`refseg_core.engine.evaluation.evaluate` and ``predict`` read
    them), and implement :meth:`forward`,
    :meth:`forward_features`, :meth:`loss` and :meth:`param_groups`.
    """

    tokenizer: Any
    config: dict
    decoder_stride: int
    init_sources: dict
    normalization: str = "clip"  # a key of NORMALIZATIONS: the statistics the backbone's weights expect

    @property
    def input_mean(self) -> tuple[float, float, float]:
        """The per-channel mean (RGB in [0, 1]) the data pipeline subtracts (:data:`NORMALIZATIONS`)."""
        return NORMALIZATIONS[self.normalization][0]

    @property
    def input_std(self) -> tuple[float, float, float]:
        """The per-channel standard deviation the data pipeline divides by."""
        return NORMALIZATIONS[self.normalization][1]

    @property
    def fill(self) -> tuple[float, float, float]:
        """The letterbox border colour: the mean, which normalises to exactly 0 ("no information")."""
        return self.input_mean

    def record_config(self, cfg: dict) -> None:
        """Keep the keywords that rebuild this model: ``self.config`` with every initial-weight source
        set to None (:func:`without_weight_sources`; the state dict carries the weights, so a checkpoint
        never names a file to open) and those sources in ``self.init_sources`` (what the run started from)."""
        self.init_sources = {k: cfg[k] for k in WEIGHT_SOURCE_KEYS if k in cfg}
        self.config = without_weight_sources(cfg)

    def forward_features(
        self, images: torch.Tensor, tokens: torch.Tensor, return_attention: bool = True
    ) -> dict:
        """The model's intermediates by name, for figures and diagnostics. Keys every model returns
        (``FEATURE_KEYS``), with ``s = decoder_stride``:

        * ``fused`` ``(B, D, H/s, W/s)``: the cross-modal map where image and sentence first meet
          (LTS Sec. 3.1 fusion; CRIS Sec. 3.2 neck);
        * ``decoder`` ``(B, C, H/s, W/s)``: the map the mask head reads (LTS: ``[fused; sigmoid(prior)]``;
          CRIS: the vision-language decoder's output, Sec. 3.3);
        * ``word_attention`` ``(B, L, H/s, W/s)`` or None: how much each pixel attends to each token in
          the last attention layer, averaged over heads (sums to 1 over real tokens; None unless
          ``return_attention`` or when the model has no such layer);
        * ``logits`` ``(B, 1, H/4, W/4)``: the same as :meth:`forward`.

        Model-specific extras are documented by each model (LTS: ``prior_logits``, the position prior;
        CRIS: the encoder outputs and the projector's parts).
        """
        raise NotImplementedError

    def loss(self, images: torch.Tensor, tokens: torch.Tensor, masks: torch.Tensor) -> dict:
        """Training objective. ``masks`` is ``(B, 1, H, W)`` float in [0, 1] at input resolution.

        Returns a dict with ``loss`` (scalar tensor), ``logits`` ``(B, 1, H/4, W/4)`` and any named
        loss terms (floats or scalar tensors) worth logging.
        """
        raise NotImplementedError

    def param_groups(self, lr: float, backbone_lr_mult: float = 1.0) -> list[dict]:
        """Optimiser parameter groups; the pretrained backbone gets ``lr * backbone_lr_mult``."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr, "name": "all"}]
