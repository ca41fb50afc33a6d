"""LTS's open choices as keywords of build_model: each one builds, runs, and changes what it says."""

import pytest
import torch

from refseg_core.models import build_model
from refseg_core.models.layers import INIT_PROB
from refseg_core.models.lts import choices_table

WORDS = ["the", "red", "blue", "square", "circle", "left", "right", "of", "big"]


def tiny(**kw):
    torch.manual_seed(0)
    return build_model("lts_tiny", vocab=WORDS, **kw)


def batch(model, size=64):
    torch.manual_seed(1)
    images = torch.randn(2, 3, size, size)
    masks = torch.zeros(2, 1, size, size)
    masks[0, 0, 8:24, 16:40] = 1
    masks[1, 0, 30:61, 2:21] = 1
    return images, model.tokenizer(["the red square left of the big circle", "blue circle"]), masks


def outputs(model):
    model.eval()
    images, tokens, _ = batch(model)
    with torch.no_grad():
        return model.forward_features(images, tokens)


@pytest.mark.parametrize(
    "kw",
    [
        {"levels": [3]},
        {"levels": [3, 5]},
        {"fusion_op": "sum"},
        {"fusion_op": "concat"},
        {"coords": False},
        {"coords": False, "interaction": "filtering"},
        {"sentence_summary": "mean"},
        {"prior_stride": 16},
        {"prior_stride": 32, "interaction": "filtering"},
        {"prior_detach": True},
        {"mask_target": "nearest"},
        {"init_prob": 0.5},
        {"prior_target": "gaussian", "gaussian_min_sigma": 2.0},
    ],
    ids=str,
)
def test_each_choice_builds_trains_and_changes_the_output(kw):
    base, model = tiny(), tiny(**kw)
    images, tokens, masks = batch(model)
    out = outputs(model)
    assert out["logits"].shape == (2, 1, 16, 16) and out["fused"].shape == (2, 64, 8, 8)
    stride = kw.get("prior_stride", 8)
    assert out["prior_logits"].shape == (2, 1, 64 // stride, 64 // stride)
    model.train()
    loss = model.loss(images, tokens, masks)
    loss["loss"].backward()
    assert torch.isfinite(loss["loss"])
    # The keyword reaches the model: its output or its loss differs from the default model's (a detached
    # prior changes only the gradients: test_prior_detach_stops_the_mask_loss_at_the_prior).
    base_out = outputs(base)
    base.train()
    base_loss = base.loss(images, tokens, masks)["loss"]
    changed = not torch.allclose(out["logits"], base_out["logits"]) or not torch.isclose(
        loss["loss"], base_loss
    )
    assert changed or kw == {"prior_detach": True}, kw
    assert model.config == dict(base.config, **kw)


def test_fusion_parameters_follow_the_operator_and_the_coordinates():
    def width(**kw):
        return tiny(**kw).fusion.mix[0][0].in_channels  # D = 64 channels, + 2 coordinates

    assert (width(), width(coords=False), width(fusion_op="concat")) == (66, 64, 130)
    assert len(tiny(levels=[3, 4]).fusion.vis) == 2


def test_prior_detach_stops_the_mask_loss_at_the_prior():
    for detach in (False, True):
        model = tiny(prior_detach=detach, prior_weight=0.0)  # only the mask loss
        images, tokens, masks = batch(model)
        model.loss(images, tokens, masks)["loss"].backward()
        grad = model.locator.out.weight.grad
        reaches = grad is not None and bool(grad.abs().sum() > 0)
        assert reaches is (not detach)


def test_mask_target_nearest_is_hard_and_area_is_soft():
    area, nearest = tiny(), tiny(mask_target="nearest")
    _, _, masks = batch(area)
    soft = area.mask_targets(masks, (16, 16))
    hard = nearest.mask_targets(masks, (16, 16))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert ((soft > 0) & (soft < 1)).any()  # the box edges of sample 1 are not on the 4-px grid
    torch.testing.assert_close(soft.sum((2, 3)) * 16, masks.sum((2, 3)))  # 4x4-pixel cells


def test_init_prob_sets_the_starting_probability():
    for p in (INIT_PROB, 0.3):
        model = tiny(init_prob=p)
        for layer in (model.segment.out, model.locator.out):
            torch.testing.assert_close(torch.sigmoid(layer.bias), torch.full_like(layer.bias, p))


def test_mean_sentence_summary_is_the_mean_of_the_real_words():
    model = tiny(sentence_summary="mean")
    _, tokens, _ = batch(model)
    words, _, valid = model.text(tokens)
    seen = {}

    def keep_sentence(module, inputs, output):
        seen["s"] = inputs[1]

    model.fusion.register_forward_hook(keep_sentence)
    outputs(model)
    n = int(valid[1].sum())
    torch.testing.assert_close(seen["s"][1], words[1, :n].mean(0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kw",
    [
        {"levels": [4, 5]},
        {"levels": [5, 3]},
        {"levels": [3, 6]},
        {"fusion_op": "max"},
        {"prior_stride": 4},
        {"init_prob": 1.0},
        {"mask_target": "bilinear"},
        {"sentence_summary": "first"},
        {"gaussian_min_sigma": 0},
    ],
    ids=str,
)
def test_bad_choices_name_the_keyword(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        tiny(**kw)


def test_choices_table_marks_the_choices_without_a_keyword():
    rows = [r for r in choices_table().splitlines()[2:]]
    fixed = [r for r in rows if "*not a keyword*" in r]
    assert {r.split("|")[1].split("(")[0].strip() for r in fixed} == {
        "vocabulary cut-off",
        "aggregation",
    }
    assert all("``" in r.split("|")[1] for r in rows if r not in fixed)
