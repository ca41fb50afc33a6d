"""``python -m refseg_core data fetch|verify`` exactly as README.md and chapter 1 print them, against the
stand-in server (``HF_ENDPOINT`` and ``REFSEG_DATA_SOURCES`` point there; ``HOME`` is a temporary folder,
so ``~/refseg-book/data`` is too); and ``evaluate --dataset refcoco_m`` on the fetched RefCOCO-M."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from _engine_data import synthetic_root, tiny_config
from _source_forms import standin_env
from standin_server import StandIn

from refseg_core.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATA_CMD = "python -m refseg_core data "


def _bash_lines(text: str, prefix: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith(prefix)]


def readme_data_lines() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Reproduction runs", 1)[1].split("\n## ", 1)[0]
    return _bash_lines(section, DATA_CMD)


def chapter_lines(prefix: str) -> list[str]:
    text = "\n".join(
        ln[2:] if ln.startswith("# ") else ln
        for ln in (ROOT / "notebooks" / "01_data.py").read_text().splitlines()
    )
    return _bash_lines(text, prefix)


@pytest.fixture()
def stand(tmp_path):
    with StandIn() as st:
        yield st


@pytest.fixture()
def env(stand, tmp_path):
    """A shell environment: HOME a temporary folder, no REFSEG_HOME, the data hosts on the stand-in."""
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if k not in ("REFSEG_HOME", "PYTHONPATH")}
    e.update(standin_env(stand, tmp_path / "standin"), HOME=str(home), PYTHONUNBUFFERED="1")
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


def _run(line: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_readme_and_chapter_one_show_the_data_commands():
    lines = readme_data_lines()
    assert lines[0].startswith("python -m refseg_core data fetch refcoco ")  # the section starts with them
    for ds in ("refcoco", "refcoco+", "refcocog", "grefcoco", "refcoco_m"):
        assert any(ln.split()[5] == ds for ln in lines if " fetch " in ln), ds
    assert any(" verify " in ln for ln in lines) and any("--source archive" in ln for ln in lines)
    ch = chapter_lines(DATA_CMD)
    assert ch and any(" verify " in ln for ln in ch) and any("refcoco_m" in ln for ln in ch)


def test_the_printed_data_commands_run_as_printed(stand, env, tmp_path, monkeypatch):
    lines = readme_data_lines() + chapter_lines(DATA_CMD)
    for line in lines:
        r = _run(line, env, tmp_path)
        assert r.returncode == 0, f"`{line}` failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        if " fetch " in line:
            assert "verified:" in r.stdout and "expected counts from" in r.stdout, r.stdout
        else:
            assert "match the manifest" in r.stdout and "images decode at their recorded size" in r.stdout
    data = Path(env["HOME"]) / "refseg-book" / "data"
    for ds in ("refcoco", "refcoco+", "refcocog", "grefcoco", "refcoco_m"):
        assert (data / ds / "refseg_manifest.json").is_file(), ds
    m = json.loads((data / "refcocog" / "refseg_manifest.json").read_text())
    assert m["source"]["route"] == "archive" and set(m["counts"]) == {"umd", "google"}
    assert "RefCOCO-M" in _run(lines[-1], env, tmp_path).stdout  # labelled wherever it is printed
    stand.clear()
    for k in ("HOME", "HF_ENDPOINT", "REFSEG_DATA_SOURCES", "HF_HOME"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.delenv("REFSEG_HOME")
    for line in lines:  # again, in this process (quicker): everything is in place, so not one request
        assert main([os.path.expanduser(w) for w in shlex.split(line)[3:]]) == 0
    assert stand.requests() == []


def test_a_failing_command_says_one_sentence_and_exits_2(env, tmp_path):
    env = dict(env, HF_ENDPOINT="http://127.0.0.1:9")  # the discard port: nothing answers
    r = _run("python -m refseg_core data fetch refcoco --root data", env, tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("data fetch: error: could not reach Hugging Face dataset jxu124/refcoco")
    assert "--source archive" in line and not (tmp_path / "data" / "refcoco").exists()
    r = _run("python -m refseg_core data verify refcoco --root data", env, tmp_path)
    assert r.returncode == 2 and "data fetch refcoco" in r.stderr
    Path(tmp_path / "data" / "refcoco").mkdir(parents=True)  # a folder that holds no REFER files
    r = _run("python -m refseg_core data verify refcoco --root data", env, tmp_path)
    assert r.returncode == 2 and "holds no refs file" in r.stderr


def test_evaluate_scores_a_checkpoint_on_refcoco_m_labelled_as_such(
    tmp_path, monkeypatch, capsys, one_thread
):
    from refseg_core.data.fetch import fetch

    with StandIn() as stand:
        extra = standin_env(stand, tmp_path / "standin")
        for k, v in extra.items():
            monkeypatch.setenv(k, v)
        fetch("refcoco_m", tmp_path / "real", cache_dir=tmp_path / "hf", progress=False)
    cfg = tiny_config(synthetic_root(tmp_path / "syn"), tmp_path / "run", epochs=1)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "p.yaml"), "--quiet", "--set", "max_train_items=8"]) == 0
    capsys.readouterr()
    ckpt = str(tmp_path / "run" / "last.pt")
    argv = ["evaluate", "--checkpoint", ckpt, "--dataset", "refcoco_m", "--data-root", str(tmp_path / "real")]
    argv += ["--set", "max_eval_items=null"]  # the tiny run's config scores 6 sentences; all of them here
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("RefCOCO-M (RefCOCO val re-segmented; not RefCOCO val) val: {")
    res = json.loads((tmp_path / "run" / "eval_refcoco_m_val.json").read_text())
    assert res["meta"]["dataset"] == "refcoco_m" and res["meta"]["dataset_label"].startswith("RefCOCO-M")
    assert res["meta"]["checkpoint"] == ckpt and res["n"] == sum(
        len(r["sentences"]) for r in refs_m(tmp_path)
    )


def refs_m(tmp_path):
    from refseg_core.data.refer import Refer

    return Refer(tmp_path / "real", "refcoco_m", "unc").refs


@pytest.mark.slow
def test_chapter_one_shows_fetched_real_data_as_printed(env, tmp_path):
    """Chapter 1's papermill line, as printed, on data fetched from the stand-in by its own commands."""
    for line in chapter_lines(DATA_CMD):
        assert _run(line, env, tmp_path).returncode == 0
    (line,) = chapter_lines("papermill ")
    out = ROOT / line.split()[2]
    assert not out.exists(), f"{out} exists already; remove it"
    env = dict(env, REFSEG_HOME=str(tmp_path / "home" / "refseg-book"))
    try:
        r = _run(line + " -y 'overrides: {synthetic_num_images: 40}'", env, ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        nb = nbformat.read(out, as_version=4)
    finally:
        out.unlink(missing_ok=True)
    text = "".join(
        o.get("text", "") + json.dumps(o.get("data", {}).get("text/markdown", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "| RefCOCO | unc | val |" in text and "RefCOCO-M (RefCOCO val re-segmented" in text
    assert "RefCOCO-M objects overlap a RefCOCO val object" in text and "median 1.000" in text
    assert "skipped" not in text
