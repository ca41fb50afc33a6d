"""`make test`'s notebook pass (tools/colab_check.py) runs lone, papermill-prepared copies of the chapters
with tests/nbval_quick.yaml."""

import re
from pathlib import Path

import nbformat
import pytest
from _tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
colab_check = load_tool("colab_check")


def test_quick_parameters_name_real_chapters_and_parameters():
    quick = colab_check.load_quick_parameters(ROOT / "tests" / "nbval_quick.yaml", SOURCES)
    # The chapters that train are the ones cut short.
    assert {"03_lts", "04_cris", "05_training"} <= set(quick)


def test_parameters_cell_names_are_read():
    params = colab_check.notebook_parameters(ROOT / "notebooks" / "05_training.py")
    assert {"config", "overrides", "lts_config", "lts_overrides", "dry_run"} <= set(params)
    assert params["lts_overrides"] == {} and params["config"] == "smoke_cris"
    assert "cris_config" not in params  # assigned later, not in the parameters cell


@pytest.mark.parametrize(
    "text, fault",
    [
        ("99_nowhere: {epochs: 1}\n", "unknown chapter '99_nowhere'"),
        ("05_training: {epochs: 1}\n", "no parameter(s) ['epochs']"),
        ("05_training: 3\n", "must map parameter names"),
        ("05_training: {overrides: [1\n", "cannot read"),
        ("- 05_training\n", "must map chapter names"),
    ],
)
def test_bad_quick_parameters_name_the_fault(tmp_path, text, fault):
    path = tmp_path / "quick.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit, match=re.escape(fault)):
        colab_check.load_quick_parameters(path, SOURCES)


def test_lone_copy_carries_the_injected_parameters(tmp_path):
    lone = colab_check.prepare_lone_copy(
        ROOT / "notebooks" / "04_cris.ipynb",
        tmp_path / "content",
        {"n_pairs": 1, "overrides": {"max_train_items": 8}},
    )
    assert sorted(p.name for p in (tmp_path / "content").iterdir()) == ["04_cris.ipynb"]  # alone
    nb = nbformat.read(lone, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "n_pairs = 1" in injected[0].source
    assert "max_train_items" in injected[0].source
    assert not any(c.outputs for c in nb.cells if c.cell_type == "code")  # prepared, not executed
