"""The README's commands work as printed, and a chapter and the CLI resolve a configuration name alike.

- Every `papermill`, `python -m refseg_core` and `torchrun` line of the README's reproduction section runs
  as printed from the repository root (papermill) or an empty folder (the CLI), with `HOME` a temporary
  folder (so `~/refseg-book` is the default refseg home there); a line that would train a full run gets
  `-p dry_run True` / `--dry-run`, and the smoke training gets one short epoch. The `data` lines run
  against a stand-in server on 127.0.0.1 (tests/standin_server.py) that `HF_ENDPOINT` and
  `REFSEG_DATA_SOURCES` point at.
- For every shipped configuration, `train --config NAME --dry-run` prints exactly what a chapter's
  `resolve_config(NAME, {}, dry_run=True)` prints; for two of them, chapter 5 itself under papermill.
"""

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from refseg_core import configs
from refseg_core.__main__ import main as cli_main
from refseg_core.notebook import resolve_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUICK = " --set epochs=1 --set max_train_items=32 --set max_eval_items=16"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Reproduction runs", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [
        line.strip()
        for b in blocks
        for line in b.splitlines()
        if line.strip().startswith(("papermill ", "python -m refseg_core", "torchrun "))
    ]


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REFSEG_HOME", "PYTHONPATH")}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    return env


def _run(line: str, cwd: Path, home: Path, extra: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env={**_env(home), **(extra or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"`{line}` failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_readme_shows_the_commands_this_test_runs():
    kinds = [
        c.split()[0] + " " + c.split()[3] if c.startswith("python") else c.split()[0]
        for c in readme_commands()
    ]
    assert "papermill" in kinds and "torchrun" in kinds
    for sub in ("data", "synth", "train", "evaluate", "predict", "gather"):
        assert f"python {sub}" in kinds, f"the README shows no `python -m refseg_core {sub}` line"


@pytest.fixture()
def data_env(tmp_path):
    """The environment that points `data fetch` at a stand-in for every data host, on 127.0.0.1."""
    from _source_forms import standin_env
    from standin_server import StandIn

    with StandIn() as stand:
        yield standin_env(stand, tmp_path / "standin")


@pytest.mark.slow
def test_readme_commands_run_as_printed(tmp_path, data_env):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype("uint8")).save(
        work / "photo.jpg"
    )
    ran = []
    for line in readme_commands():
        words = shlex.split(line)
        if words[0] == "papermill":
            out = ROOT / words[2]
            assert not out.exists(), f"{out} exists already; remove it"
            try:
                cmd = line if "dry_run True" in line else line + " -p dry_run True"
                _run(cmd, ROOT, home)
                nb = nbformat.read(out, as_version=4)
            finally:
                out.unlink(missing_ok=True)
            printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
            config = words[words.index("config") + 1]
            assert f"# config: {config}" in printed and "dry_run:" in printed
            if "/data/refer" in line:
                assert "data_root: /data/refer" in printed
        elif " train " in line and "--dry-run" not in line and "smoke_" not in line:
            out = _run(line + " --dry-run", work, home).stdout
            assert "model: cris_r50" in out and "data_root: /data/refer" in out
        elif line.startswith("python -m refseg_core data "):
            out = _run(line, work, home, data_env).stdout
            assert "verified" in out or "match the manifest" in out
        elif " train " in line and "smoke_" in line:
            _run(line + QUICK, work, home)
            assert (home / "refseg-book" / "runs" / "smoke_cris" / "last.pt").is_file()
        else:
            _run(line, work, home)
        ran.append(line)
    assert len(ran) == len(readme_commands())
    assert (home / "refseg-book" / "data" / "refcoco" / "refseg_manifest.json").is_file()  # data fetch
    assert any((home / "refseg-book" / "runs" / "smoke_cris").glob("eval_refcoco_m_val.json"))
    assert (work / "data" / "synthetic" / "refcoco" / "instances.json").is_file()  # synth
    assert any((home / "refseg-book" / "runs" / "smoke_cris").glob("eval_*testA*.json"))  # evaluate
    assert (home / "refseg-book" / "runs" / "results.md").is_file()  # gather


def _cli_dry_run(argv: list[str]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(argv) == 0
    return buf.getvalue()


@pytest.mark.parametrize("name", configs.names())
def test_cli_and_chapter_resolve_a_configuration_alike(name):
    cli = _cli_dry_run(["train", "--config", name, "--dry-run"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        resolve_config(name, {}, dry_run=True)
    assert buf.getvalue() == cli
    with_set = _cli_dry_run(["train", "--config", name, "--set", "epochs=3", "--set", "lr=1e-4", "--dry-run"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        resolve_config(name, {"epochs": 3, "lr": 1e-4}, dry_run=True)
    assert buf.getvalue() == with_set


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smoke_cris", "cris_r50_refcoco"])
def test_chapter_five_under_papermill_prints_the_cli_run(name, tmp_path):
    out = tmp_path / "out.ipynb"
    r = subprocess.run(
        [
            str(BIN / "papermill"),
            str(ROOT / "notebooks" / "05_training.ipynb"),
            str(out),
            "-p",
            "config",
            name,
            "-p",
            "lts_config",
            "None",
            "-p",
            "dry_run",
            "True",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(tmp_path),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    printed = "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("name") == "stdout"
    )
    cli = subprocess.run(
        [sys.executable, "-m", "refseg_core", "train", "--config", name, "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(tmp_path),
    ).stdout
    assert f"# config: {name}\n{cli}" in printed
    # the notebook stopped there: no later cell printed anything
    assert "CRIS run:" not in printed
