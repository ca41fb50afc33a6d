"""The notebooks as sources: Jupytext pairs in sync, one parameters cell, the Colab install cell, no outputs."""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from _tools import load_tool

import refseg_core

ROOT = Path(__file__).resolve().parents[1]
colab_check = load_tool("colab_check")
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
    assert _cells(from_py) == _cells(from_ipynb), (
        f"{ipynb.name} is out of sync with {src.name}; run `make sync`"
    )
    for cell in from_ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{ipynb.name} is committed with outputs"
            )


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
    assert '"google.colab" in sys.modules' in first.source, (
        f"{src.name}: first code cell lacks the Colab guard"
    )
    consts = re.findall(r'REPO, REF = "([^"]+)", "([^"]+)"', first.source)
    assert consts == [(refseg_core.REPO_URL, refseg_core.REPO_REF)], (
        f"{src.name}: the Colab cell installs {consts}, not refseg_core.REPO_URL at REPO_REF"
    )
    assert 'f"refseg_core @ git+{REPO}@{REF}"' in first.source
    # Everything that installs or downloads sits under the guard.
    body = first.source.split('"google.colab" in sys.modules', 1)[1]
    assert "pip" in body


def test_book_config_uses_the_one_repository_url_and_release_tag():
    """The launch buttons (the book's repository url and branch) open the notebooks of the release the
    Colab cell installs: both are refseg_core.REPO_URL at refseg_core.REPO_REF."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["repository"]["url"] == refseg_core.REPO_URL
    assert cfg["repository"]["branch"] == refseg_core.REPO_REF


def test_toc_lists_every_notebook():
    toc = (ROOT / "_toc.yml").read_text()
    for src in SOURCES:
        assert f"notebooks/{src.stem}" in toc, f"{src.stem} missing from _toc.yml"


def _parameters(src: Path) -> dict:
    return colab_check.notebook_parameters(src)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_no_parameters_cell_repeats_a_configuration(src):
    """One copy of each value: a chapter names a configuration (``config``) plus ``overrides``; no
    TrainConfig field is assigned in its parameters cell, and every named configuration is shipped."""
    from refseg_core import configs
    from refseg_core.config import field_names

    params = _parameters(src)
    # `pretrained` is the one exception by design (issue 13): a chapter offers OpenAI's CLIP weights for
    # the model it *shows*, a knob of the chapter, off by default.
    repeated = sorted(set(params) & set(field_names()) - {"pretrained"})
    assert not repeated, f"{src.name}: the parameters cell assigns TrainConfig fields {repeated}"
    for key in ("config", "lts_config"):
        if params.get(key) is not None:
            assert params[key] in configs.names(), f"{src.name}: {key} {params[key]!r} is not shipped"
    if "config" in params:
        assert "overrides" in params and params["overrides"] == {}, f"{src.name}: no empty `overrides`"


def test_chapters_read_nothing_through_the_repository():
    """A chapter opened alone (Colab) has no ../params, ../tools, ../benchmarks or ../_build."""
    for src in SOURCES:
        code = "\n".join(c.source for c in jupytext.read(src).cells if c.cell_type == "code")
        assert "../" not in code, f"{src.name} reads a path through ../"


def test_smoke_configurations_share_one_synthetic_dataset():
    from refseg_core.config import read_config_values

    lts, cris = (read_config_values(f"smoke_{n}")[0] for n in ("lts", "cris"))
    for key in (
        "data_root",
        "synthetic_num_images",
        "synthetic_seed",
        "synthetic_image_size",
        "dataset",
        "synthetic",
    ):
        assert lts[key] == cris[key], f"smoke_lts and smoke_cris differ on {key}"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_dry_run_stops_at_the_end_of_a_cell(src):
    """``finish_dry_run`` empties the *later* cells: it must end its own cell, or the rest of it would run."""
    for cell in jupytext.read(src).cells:
        if cell.cell_type == "code" and "finish_dry_run(dry_run)" in cell.source:
            assert cell.source.rstrip().endswith("finish_dry_run(dry_run)"), (
                f"{src.name}: code after finish_dry_run"
            )
