"""The preface's commands (book/intro.md) work as printed.

- every `make` line names a target of the Makefile (CI runs `make book` and `make test` themselves);
- every `papermill` line sets only parameters the chapter's parameters cell has (papermill itself only
  warns about an unknown one, and the chapter then runs without it), and runs for real from the
  repository root;
- every `python -m refseg_core` line runs for real in an empty folder, training with size overrides only.
"""

import re
import shlex
from pathlib import Path

import nbformat
import pytest
import yaml
from _tools import load_tool
from test_readme_commands import _run

QUICK = " --set epochs=1 --set max_train_items=32 --set max_eval_items=16"  # size overrides only

ROOT = Path(__file__).resolve().parents[1]
INTRO = ROOT / "book" / "intro.md"
colab_check = load_tool("colab_check")


def intro_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", INTRO.read_text(), re.S)
    lines = [line.split("  #", 1)[0].strip() for b in blocks for line in b.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _papermill_parameters(words: list[str]) -> dict:
    """The parameters a papermill command line sets: ``-p NAME VALUE`` and ``-y YAML``."""
    params, i = {}, 3
    while i < len(words):
        if words[i] in ("-p", "--parameters"):
            params[words[i + 1]] = yaml.safe_load(words[i + 2])
            i += 3
        elif words[i] in ("-y", "--parameters_yaml"):
            params.update(yaml.safe_load(words[i + 1]))
            i += 2
        else:
            raise AssertionError(f"unexpected papermill option {words[i]!r} in the preface")
    return params


def test_the_preface_shows_runnable_commands():
    kinds = {c.split()[0] for c in intro_commands()}
    assert kinds <= {"make", "papermill", "python"}, kinds
    assert {"make", "papermill", "python"} <= kinds


def test_make_lines_name_targets_of_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    for line in intro_commands():
        if line.startswith("make "):
            for target in line.split()[1:]:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"`{line}`: no target {target}"


def test_papermill_lines_set_only_parameters_the_chapter_has():
    for line in intro_commands():
        if not line.startswith("papermill "):
            continue
        words = shlex.split(line)
        src = ROOT / Path(words[1]).with_suffix(".py")
        assert src.is_file() and (ROOT / words[1]).is_file(), f"`{line}`: no chapter {words[1]}"
        have = colab_check.notebook_parameters(src)
        unknown = sorted(set(_papermill_parameters(words)) - set(have))
        assert not unknown, f"`{line}` sets {unknown}, which {src.name}'s parameters cell does not have"


@pytest.mark.slow
def test_the_preface_commands_run_as_printed(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    ran = 0
    for line in intro_commands():
        words = shlex.split(line)
        if words[0] == "papermill":
            out = ROOT / words[2]
            assert not out.exists(), f"{out} exists already; remove it"
            try:
                _run(line, ROOT, home)
                nb = nbformat.read(out, as_version=4)
            finally:
                out.unlink(missing_ok=True)
            injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
            for name, value in _papermill_parameters(words).items():
                assert injected and f"{name} = {value!r}" in injected[0].source, (line, name)
            ran += 1
        elif line.startswith("python -m refseg_core train"):
            _run(line + QUICK, work, home)  # size overrides only
            name = words[words.index("--config") + 1]
            assert (home / "refseg-book" / "runs" / name / "last.pt").is_file()
            ran += 1
        elif words[0] == "python":
            _run(line, work, home)
            ran += 1
    assert ran == sum(not c.startswith("make ") for c in intro_commands())
