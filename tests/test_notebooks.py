"""The notebooks as sources: Jupytext pairs in sync, one parameters cell, the Colab install cell, no outputs."""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

import refseg_core
from _tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
prepare_nbval = load_tool("prepare_nbval")
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def test_there_are_notebooks():
    assert len(SOURCES) >= 2


def _cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(src):
    ipynb = src.with_suffix(".ipynb")
    assert ipynb.exists(), f"{src.name} has no paired {ipynb.name}; run `make sync`"
    from_py = jupytext.read(src)
    from_ipynb = nbformat.read(ipynb, as_version=4)
    assert _cells(from_py) == _cells(from_ipynb), f"{ipynb.name} is out of sync with {src.name}; run `make sync`"
    for cell in from_ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} is committed with outputs"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_exactly_one_parameters_cell(src):
    nb = jupytext.read(src)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{src.name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0].cell_type == "code"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_first_code_cell_installs_only_in_colab(src):
    nb = jupytext.read(src)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in first.source, f"{src.name}: first code cell lacks the Colab guard"
    urls = re.findall(r"git\+(https://[^\"' ]+)", first.source)
    assert urls == [refseg_core.REPO_URL], f"{src.name}: install URL {urls} != refseg_core.REPO_URL"
    # Everything that installs or downloads sits under the guard.
    body = first.source.split('"google.colab" in sys.modules', 1)[1]
    assert "pip" in body


def test_book_config_uses_the_one_repository_url():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["repository"]["url"] == refseg_core.REPO_URL


def test_toc_lists_every_notebook():
    toc = (ROOT / "_toc.yml").read_text()
    for src in SOURCES:
        assert f"notebooks/{src.stem}" in toc, f"{src.stem} missing from _toc.yml"


def _parameters(src: Path) -> dict:
    return prepare_nbval.notebook_parameters(src)


SYNTHETIC_KEYS = ("data_root", "synthetic_num_images", "synthetic_seed", "synthetic_image_size")
# A chapter may train for a shorter budget than the smoke file (chapters 3 and 4 run several short
# runs); everything else (model, data, optimiser, input size) must be the smoke file's.
BUDGET_KEYS = ("output_dir", "data_root", "epochs", "milestones", "time_limit_s", "log_every")


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_parameters_agree_with_the_smoke_files(src):
    """One source of truth: a chapter's smoke defaults equal params/smoke_*.yaml for every shared key,
    and all chapters share one synthetic dataset (same data_root and synthetic_* keys)."""
    from refseg_core.config import TrainConfig

    params = _parameters(src)
    smoke = {name: yaml.safe_load((ROOT / "params" / f"smoke_{name}.yaml").read_text()) for name in ("lts", "cris")}
    model = params.get("model", "")
    if model.startswith(("lts", "cris")):
        ref = smoke["lts" if model.startswith("lts") else "cris"]
        fields = set(TrainConfig.__dataclass_fields__)
        for key, value in params.items():
            if key in ref and key in fields and key not in BUDGET_KEYS:
                assert value == ref[key], f"{src.name}: {key} = {value!r}, params/smoke_*.yaml has {ref[key]!r}"
        missing = sorted(k for k in ref if k in fields and k not in BUDGET_KEYS and k not in params)
        assert not missing, f"{src.name} trains {model} but its parameters cell lacks {missing} of the smoke file"
    for key in SYNTHETIC_KEYS:
        if key in params:
            expected = smoke["cris"][key] if key != "data_root" else "../_build/data/synthetic"
            assert params[key] == expected, f"{src.name}: {key} = {params[key]!r}, expected {expected!r}"


def test_smoke_files_share_one_synthetic_dataset():
    lts, cris = (yaml.safe_load((ROOT / "params" / f"smoke_{n}.yaml").read_text()) for n in ("lts", "cris"))
    for key in SYNTHETIC_KEYS + ("dataset", "synthetic"):
        assert lts[key] == cris[key], f"smoke_lts.yaml and smoke_cris.yaml differ on {key}"
