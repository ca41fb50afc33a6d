"""The pipeline diagrams: shapes come from a real forward pass and every one appears on the drawing."""

import matplotlib
import pytest
import torch

from refseg_core import diagrams
from refseg_core.models import build_model

matplotlib.use("Agg")


def _texts(fig):
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


@pytest.mark.parametrize("size", [64, 96])
def test_lts_diagram_shows_the_shapes_of_its_forward_pass(size):
    torch.manual_seed(0)
    model = build_model("lts_tiny").train()
    images = torch.randn(2, 3, size, size)
    tokens = model.tokenizer(["the red square", "a blue circle left of the square"])
    shapes = diagrams.forward_shapes(model, images, tokens)
    assert model.training  # restored
    g = size // 8
    assert shapes["fused"] == (2, 64, g, g) and shapes["prior_logits"] == (2, 1, g, g)
    assert shapes["v5"] == (2, 128, size // 32, size // 32) and shapes["sentence"] == (2, 64)
    assert shapes["logits"] == (2, 1, size // 4, size // 4)
    text = _texts(diagrams.lts_pipeline(shapes))
    for key in ("images", "v3", "v4", "v5", "words", "sentence", "fused", "prior_logits", "logits"):
        assert diagrams.per_sample(shapes[key]) in text, key
    # The hooks are gone: a second pass adds nothing.
    assert not model.backbone._forward_hooks and not model.text._forward_hooks


def test_cris_diagram_shows_the_shapes_of_its_forward_pass():
    torch.manual_seed(0)
    model = build_model("cris_tiny")
    images = torch.randn(1, 3, 64, 64)
    shapes, out = diagrams.forward_shapes(model, images, model.tokenizer(["the red square"]), True)
    assert out["logits"].shape == shapes["logits"]
    assert shapes["logits"] == (1, 1, 16, 16) and shapes["fused"][-2:] == (4, 4)
    text = _texts(diagrams.cris_pipeline(shapes))
    for key in ("images", "v3", "v4", "v5", "words", "state", "fused", "decoder", "kernel", "logits"):
        assert diagrams.per_sample(shapes[key]) in text, key
    assert diagrams.per_sample((4, 7)) == "(7,)" and diagrams.per_sample((4, 1, 2, 3)) == "(1, 2, 3)"
