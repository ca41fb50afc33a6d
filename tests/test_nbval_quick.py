"""`make test`'s nbval pass runs papermill-prepared copies of the chapters with tests/nbval_quick.yaml."""

import re
from pathlib import Path

import nbformat
import pytest

from _tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
prepare_nbval = load_tool("prepare_nbval")


def test_quick_parameters_name_real_chapters_and_parameters():
    quick = prepare_nbval.load_quick_parameters(ROOT / "tests" / "nbval_quick.yaml", SOURCES)
    # The chapters that train are the ones cut short.
    assert {"03_lts", "04_cris", "05_training"} <= set(quick)


def test_parameters_cell_names_are_read():
    params = prepare_nbval.notebook_parameters(ROOT / "notebooks" / "05_training.py")
    assert {"epochs", "time_limit_s", "lts_config", "lts_overrides"} <= set(params)
    assert params["lts_overrides"] == {}
    assert "cris_config" not in params  # assigned later, not in the parameters cell


@pytest.mark.parametrize("text, fault", [
    ("99_nowhere: {epochs: 1}\n", "unknown chapter '99_nowhere'"),
    ("05_training: {epochz: 1}\n", "no parameter(s) ['epochz']"),
    ("05_training: 3\n", "must map parameter names"),
    ("05_training: {epochs: [1\n", "cannot read"),
    ("- 05_training\n", "must map chapter names"),
])
def test_bad_quick_parameters_name_the_fault(tmp_path, text, fault):
    path = tmp_path / "quick.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit, match=re.escape(fault)):
        prepare_nbval.load_quick_parameters(path, SOURCES)


def test_prepared_copy_carries_the_injected_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_nbval, "NBVAL", tmp_path / "nbval")
    quick = tmp_path / "quick.yaml"
    quick.write_text("04_cris: {epochs: 1, time_limit_s: 5}\n")
    written = prepare_nbval.prepare(quick)
    assert [p.stem for p in written] == [s.stem for s in SOURCES]
    nb = nbformat.read(tmp_path / "nbval" / "notebooks" / "04_cris.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "epochs = 1" in injected[0].source and "time_limit_s = 5" in injected[0].source
    untouched = nbformat.read(tmp_path / "nbval" / "notebooks" / "01_data.ipynb", as_version=4)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in untouched.cells)
    # The relative paths of the chapters resolve inside the mirror.
    assert (tmp_path / "nbval" / "params" / "smoke_cris.yaml").is_file()
    assert (tmp_path / "nbval" / "_build" / "data").resolve() == (ROOT / "_build" / "data").resolve()
