"""The model protocol (refseg_core/models/base.py): both models expose ``forward_features`` with the same
keys and a ``decoder_stride`` that matches the maps they return."""

import pytest
import torch

from refseg_core.models import build_model
from refseg_core.models.base import FEATURE_KEYS


@pytest.mark.parametrize("name,stride", [("lts_tiny", 8), ("cris_tiny", 16)])
def test_forward_features_common_keys_and_stride(name, stride):
    torch.manual_seed(0)
    model = build_model(name).eval()
    assert model.decoder_stride == stride
    images = torch.randn(2, 3, 64, 64)
    tokens = model.tokenizer(["the red square on the left", "a circle"])
    with torch.no_grad():
        f = model.forward_features(images, tokens)
        logits = model(images, tokens)
    assert set(FEATURE_KEYS) <= set(f)
    grid = (64 // stride, 64 // stride)
    assert f["fused"].shape[-2:] == grid and f["decoder"].shape[-2:] == grid
    att = f["word_attention"]
    assert att.shape == (2, tokens.shape[1], *grid)
    # A distribution over the real tokens of each expression at every pixel.
    torch.testing.assert_close(att.sum(1), torch.ones(2, *grid))
    assert f["logits"].shape == (2, 1, 16, 16)
    torch.testing.assert_close(f["logits"], logits, rtol=1e-4, atol=1e-5)
