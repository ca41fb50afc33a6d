"""The official CRIS recipe as package data (refseg_core/configs/official_cris_recipe.yaml) against the
paper-cell configuration cris_r50_refcoco: which values are equal, which differ, and that every
difference carries its reason (and no equal value carries one)."""

import pytest

from refseg_core import configs, official_recipe
from refseg_core.config import load_config

OFFICIAL_FILES = {
    "config/refcoco/cris_r50.yaml",
    "train.py",
    "engine/engine.py",
    "model/__init__.py",
    "model/segmenter.py",
    "utils/dataset.py",
}


def test_every_value_names_its_official_file():
    recipe = official_recipe.load()
    assert recipe["repository"] == "DerrickWang005/CRIS.pytorch" and len(recipe["commit"]) == 40
    for key, entry in recipe["values"].items():
        files = {f.strip() for f in entry["source"].split(",")}
        assert files and files <= OFFICIAL_FILES, f"{key}: unknown source {entry['source']!r}"
        assert entry.get("official"), f"{key}: no note on how the official code sets it"


def test_the_recipe_states_the_papers_numbers():
    """CRIS Sec. 4.1 and the official config (REFERENCE.md section 1), independently of the YAML."""
    v = {k: e["value"] for k, e in official_recipe.load()["values"].items()}
    assert (v["lr"], v["backbone_lr_mult"], v["weight_decay"], v["epochs"], v["milestones"]) == (
        1e-4,
        0.1,
        0.0,
        50,
        [35],
    )
    assert (v["batch_size"], v["input_size"], v["word_len"], v["eval_threshold"]) == (64, 416, 17, 0.35)
    assert v["precision"] == "fp16" and v["sync_bn"] is True and v["official_lr_quirk"] is True
    assert v["grad_clip"] is None and v["warmup_steps"] == 0 and v["dice_weight"] == 0.0


def test_cris_r50_refcoco_against_the_official_recipe():
    rows = {r["field"]: r for r in official_recipe.compare("cris_r50_refcoco")}
    differ = {k for k, r in rows.items() if not r["same"]}
    assert differ == {"num_workers", "log_every"}  # machine and logging only
    for key, r in rows.items():
        assert (r["why"] is None) == r["same"], f"{key}: a difference needs a reason, an equal value none"
    cfg = load_config("cris_r50_refcoco")
    assert rows["num_workers"]["ours"] == cfg.num_workers and rows["num_workers"]["official"] == 32
    # everything that decides what is learned is the official value
    for key in ("lr", "epochs", "milestones", "batch_size", "precision", "official_lr_quirk", "val_split"):
        assert rows[key]["same"], key


def test_a_changed_configuration_shows_up_as_a_difference_without_reason():
    cfg = load_config("cris_r50_refcoco", {"lr": 2e-4, "precision": "bf16"})
    rows = {r["field"]: r for r in official_recipe.compare(cfg)}
    assert not rows["lr"]["same"] and rows["lr"]["why"] is None
    assert not rows["precision"]["same"]
    assert "no reason written" in official_recipe.table(cfg)


def test_the_recipe_is_data_not_a_run_configuration():
    assert "official_cris_recipe" not in configs.names()
    with pytest.raises(ValueError, match="unknown configuration 'official_cris_recipe'"):
        load_config("official_cris_recipe")


def test_table_has_one_row_per_value():
    md = official_recipe.table()
    lines = md.splitlines()
    assert len(lines) == 2 + len(official_recipe.load()["values"])
    assert "| `lr` | 0.0001 | 0.0001 |" in md and "**changed**" in md
