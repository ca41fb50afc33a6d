"""Model factory: ``build_model(name, **overrides)``, in the manner of open_clip and timm.

Every model built here follows one protocol (see :class:`refseg_core.models.base.RefSegModel`):

* ``model.tokenizer(list_of_expressions)`` -> ``LongTensor (B, L)``;
* ``model(images, tokens)`` -> mask logits ``(B, 1, H/4, W/4)`` for images ``(B, 3, H, W)``;
* ``model.forward_features(images, tokens)`` -> dict with at least ``fused``, ``decoder``,
  ``word_attention`` and ``logits`` (the intermediates chapters show), and ``model.decoder_stride``;
* ``model.loss(images, tokens, masks)`` -> dict with ``loss`` (scalar), ``logits`` and named terms;
* ``model.param_groups(lr, backbone_lr_mult)`` -> optimiser parameter groups;
* ``model.config`` -> the keyword arguments that rebuild it (``build_model(**model.config)``).
"""

from __future__ import annotations

from typing import Callable

_REGISTRY: dict[str, Callable] = {}
_WORD_VOCABULARY: set[str] = set()


def register_model(name: str, word_vocabulary: bool = False):
    """Decorator: register a builder ``fn(**overrides) -> RefSegModel`` under ``name``.

    ``word_vocabulary``: the model reads words through a vocabulary built from the training expressions
    (LTS's bi-GRU; passed as ``vocab=``), not through a fixed tokenizer (CRIS's CLIP BPE)."""

    def wrap(fn):
        _REGISTRY[name] = fn
        if word_vocabulary:
            _WORD_VOCABULARY.add(name)
        return fn

    return wrap


def uses_word_vocabulary(name: str) -> bool:
    """Whether model ``name`` is built with a ``vocab=`` taken from the training expressions."""
    _ensure_registered()
    return name in _WORD_VOCABULARY


def _ensure_registered() -> None:
    # Import the model modules lazily so that `import refseg_core` stays light.
    from refseg_core.models import cris, lts  # noqa: F401


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    _ensure_registered()
    return sorted(_REGISTRY)


def build_model(name: str, **overrides):
    """Build a referring-segmentation model by name.

    Names: ``lts``, ``lts_tiny``, ``cris_r50``, ``cris_r101``, ``cris_tiny``. ``overrides`` replace
    the named configuration's defaults (``pretrained=`` an open_clip tag or a local path where it
    applies). An unknown name or keyword raises ``ValueError`` listing the valid ones.
    """
    _ensure_registered()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**overrides)
