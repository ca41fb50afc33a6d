"""TrainConfig / load_config: names and types are checked; YAML and key=value overrides agree."""

import pytest

from refseg_core.config import TrainConfig, field_names, load_config, make_config


def test_defaults_are_the_cris_recipe():
    c = TrainConfig()
    assert (c.lr, c.backbone_lr_mult, c.milestones, c.lr_gamma, c.epochs, c.batch_size) == (
        1e-4,
        0.1,
        [35],
        0.1,
        50,
        64,
    )
    assert c.input_size == 416 and c.word_len == 17 and c.eval_threshold == 0.35 and c.weight_decay == 0


def test_unknown_parameter_lists_valid_ones(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("model: lts_tiny\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError) as e:
        load_config(f)
    msg = str(e.value)
    assert "learning_rate" in msg and "backbone_lr_mult" in msg and str(f) in msg


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("model: cris_tiny\nepochs: 3\nmilestones: [2]\nlr: 1e-3\n")
    c = load_config(f, ["epochs=5", "grad_clip=null", "milestones=[3, 1]", "output_dir=2024", "lr=0.01"])
    assert c.model == "cris_tiny" and c.epochs == 5 and c.grad_clip is None
    assert c.milestones == [1, 3] and c.output_dir == "2024" and c.lr == 0.01


@pytest.mark.parametrize(
    "key,value,word",
    [
        ("epochs", 2.5, "integer"),
        ("epochs", 0, ">= 1"),
        ("synthetic", "yes", "true or false"),
        ("precision", "fp8", "precision"),
        ("lr", -1.0, "> 0"),
        ("milestones", [0], "milestones"),
        ("model_overrides", [1], "mapping"),
        ("eval_threshold", 1.5, "(0, 1)"),
    ],
)
def test_bad_values_name_the_parameter(key, value, word):
    with pytest.raises(ValueError) as e:
        make_config({key: value})
    assert key in str(e.value) and word in str(e.value)


def test_override_needs_key_value():
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["epochs"])


def test_every_field_is_a_valid_key():
    assert make_config({k: getattr(TrainConfig(), k) for k in field_names()}) == TrainConfig()
