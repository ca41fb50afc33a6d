"""The LTS chapter's helpers: the ablation's variant configurations (engine.variants) and its figures
(lts_figures), drawn from a tiny untrained model without a warning, each with its colour bar."""

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from refseg_core.config import make_config  # noqa: E402
from refseg_core.engine.variants import scaled_milestones, variant_config  # noqa: E402
from refseg_core.lts_figures import ablation_curves, locate, prior_rows, word_attention, words_of  # noqa: E402
from refseg_core.models import build_model  # noqa: E402


def test_milestones_keep_their_fraction_of_a_shorter_schedule():
    assert scaled_milestones([6], 8, 3) == [2]
    assert scaled_milestones([6], 8, 8) == [6]
    assert scaled_milestones([1, 2], 8, 1) == [1]  # merged, never epoch 0
    assert scaled_milestones([8, 9], 8, 3) == []  # at or past the end: they never fire
    with pytest.raises(ValueError, match="run_epochs"):
        scaled_milestones([6], 8, 0)


def test_a_variant_differs_only_in_its_model_overrides_epochs_and_folder():
    cfg = make_config(
        model="lts_tiny", epochs=8, milestones=[6], output_dir="runs/x", model_overrides={"dim": 8}
    )
    v = variant_config(cfg, "no prior", {"use_prior": False}, 3)
    assert v.model_overrides == {"dim": 8, "use_prior": False}
    assert (v.epochs, v.milestones, v.output_dir) == (3, [2], "runs/x_no_prior")
    same = {k: val for k, val in v.to_dict().items() if k not in ("epochs", "milestones", "output_dir")}
    assert same == {k: val for k, val in cfg.to_dict().items() if k in same} | {
        "model_overrides": v.model_overrides
    }
    assert cfg.model_overrides == {"dim": 8}  # the base configuration is left as it was


@pytest.fixture(scope="module")
def located():
    torch.manual_seed(0)
    model = build_model("lts_tiny", vocab=["the", "red", "square", "left", "circle"])
    items = []
    for k, text in enumerate(["the red square", "the circle left of the red square"]):
        mask = torch.zeros(1, 64, 64)
        mask[0, 8 + 20 * k : 30 + 20 * k, 10:40] = 1
        items.append({"image": torch.randn(3, 64, 64), "tokens": model.tokenizer([text])[0], "mask": mask})
    return model, items, [locate(model, it, threshold=0.99) for it in items]


def test_locate_returns_the_maps_in_the_input_frame(located):
    model, items, locs = located
    loc = locs[1]
    assert loc["image"].shape == (64, 64, 3) and loc["mask"].shape == loc["target"].shape == (64, 64)
    assert loc["prior"].shape == (8, 8) and 0 <= loc["prior"].min() <= loc["prior"].max() <= 1
    assert loc["peak"] == divmod(int(loc["prior"].argmax()), 8)
    assert loc["attention"].shape == (len(words_of(model.tokenizer, items[1]["tokens"])), 8, 8)
    assert not loc["mask"].any() and loc["iou"] == 0.0  # untrained, threshold 0.99: an empty mask


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "colour bar" and ax.get_ylabel()]


def test_the_figures_draw_without_warnings_with_a_colour_bar(located):
    model, items, locs = located
    sentences = ["the red square", "the circle left of the red square"]
    words = [words_of(model.tokenizer, it["tokens"]) for it in items]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = prior_rows(locs, sentences)
        assert len(_colorbars(fig)) == 1
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert "no pixel\nabove 0.99" in texts  # an empty mask says why it is empty
        assert any(ax.get_title().startswith("empty mask") for ax in fig.axes)
        plt.close(fig)
        fig = word_attention(locs, sentences, words)
        assert len(_colorbars(fig)) == 1
        assert [ax.get_title() for ax in fig.axes if ax.get_title() in words[1]] != []
        plt.close(fig)


class _Run:
    def __init__(self, history):
        self.history = history


def test_ablation_curves_show_a_one_epoch_run_and_never_an_empty_legend():
    one = [
        {"epoch": 1, "step": 20, "loss": 0.3, "images_per_s": 5.0},
        {"epoch": 1, "step": 20, "val_mIoU": 0.1},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = ablation_curves({"a": _Run(one), "b": _Run(one)})
        assert all(ax.get_legend() is not None for ax in fig.axes)
        plt.close(fig)
        fig = ablation_curves({"a": _Run([])})
        assert all(ax.get_legend() is None for ax in fig.axes)
        plt.close(fig)
