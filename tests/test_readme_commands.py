"""The launch lines of the README and of the chapters run as printed, and a chapter and the CLI resolve a
configuration name alike.

- Every `papermill`, `python -m refseg_core` and `torchrun` line of the README's reproduction section, of the
  chapters' ```bash blocks and of their exercises runs as printed, with only size overrides appended (a few
  items, one epoch), from the repository root (papermill) or an empty folder (the CLI), with `HOME` a
  temporary folder (so `~/refseg-book` is the default refseg home there). Never a `--dry-run` added: a line
  that is a dry run as printed stays one, every other line trains, evaluates or predicts for real.
- A line that cannot run here as a full run (a paper-cell configuration: real data in `/data/refer`, CLIP or
  DarkNet weights to download, a GPU) runs the same configuration on the synthetic data with random weights
  and the family's tiny model at 64 px (:data:`PAPER_CELL_AT_TINY_SIZE`); what each line got is printed.
- A `train` of a paper cell gets a fresh home (the chapter shows alternatives that write the same run
  folder); a line with `--resume` or `--checkpoint ~/...` runs in the home where that file or folder
  exists (the latest of the lines above it in its chapter first), and an `evaluate` must have written an
  eval file for each of its `--split`s there (the selected `best.pt` scored, when given a run folder).
  Identical lines run once, and so do lines that differ only in papermill's output notebook.
- The `data` lines (and every other line, harmlessly) run against a stand-in server on 127.0.0.1
  (tests/standin_server.py) that `HF_ENDPOINT` and `REFSEG_DATA_SOURCES` point at.
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
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from PIL import Image

from refseg_core import configs
from refseg_core.__main__ import main as cli_main
from refseg_core.notebook import resolve_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KINDS = ("papermill ", "python -m refseg_core", "torchrun ")

# Size overrides: a smoke configuration keeps its data and model, with fewer images, items and epochs.
SMOKE_AT_TINY_SIZE = {"epochs": 1, "max_train_items": 32, "max_eval_items": 16, "synthetic_num_images": 120}
# A paper cell needs real data, downloaded weights and a GPU: here it runs on generated data (in one shared
# folder), with random weights, the tiny model of its family and small inputs. Everything else (recipe,
# precision, sync_bn, best-epoch selection, DDP) is the configuration's own.
PAPER_CELL_AT_TINY_SIZE = {
    "synthetic": True,
    "synthetic_num_images": 24,
    "synthetic_image_size": 64,
    "pretrained": None,
    "input_size": 64,
    "batch_size": 16,  # 8 processes x 2 (CRIS's BatchNorm1d needs 2 samples per process)
    "epochs": 1,
    "max_train_items": 16,
    "max_eval_items": 8,
    "num_workers": 0,
    "log_every": 1,
}


def _commands(text: str) -> list[str]:
    """Lines of ``text`` that start a launch command (backslash continuations joined)."""
    text = re.sub(r"\s*\\\n\s*", " ", text)
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith(KINDS)]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Reproduction runs", 1)[1].split("\n## ", 1)[0]
    return _commands("\n".join(re.findall(r"```bash\n(.*?)```", section, re.S)))


def chapter_commands() -> list[tuple[str, str]]:
    """``(chapter, line)`` for the launch lines of the chapters: in their ```bash blocks (markdown cells) and
    in backticks in their Exercises sections."""
    out = []
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        markdown = "\n".join(
            ln[2:] if ln.startswith("# ") else ln[1:]
            for ln in nb.read_text().splitlines()
            if ln.startswith("#") and not ln.startswith("# %%")
        )
        lines = _commands("\n".join(re.findall(r"```bash\n(.*?)```", markdown, re.S)))
        if "## Exercises" in markdown:
            exercises = " ".join(markdown.split("## Exercises", 1)[1].split())
            exercises = re.sub(r"```\S*", " ", exercises)  # dropdown fences are not inline code
            lines += [c.strip() for c in re.findall(r"`([^`]+)`", exercises) if c.strip().startswith(KINDS)]
        out += [(nb.stem, ln) for ln in lines]
    return out


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
    chapters = chapter_commands()
    # chapter 5's exercises 2 and 3, its full-run block (one GPU, eight, resume, papermill), chapter 1's papermill
    assert any("--nproc_per_node 2" in ln and "smoke_cris" in ln for _, ln in chapters)
    assert any("--resume" in ln and ln.startswith("torchrun") for _, ln in chapters)
    assert {ch for ch, ln in chapters if ln.startswith("papermill")} >= {"01_data", "05_training"}
    # chapter 9 walks through a paper cell: every step's command is there, so the test below runs it
    first_run = [ln for ch, ln in chapters if ch == "09_first_real_run"]
    for step in ("data fetch refcoco", "data verify refcoco", "--dry-run", "train --config", "--resume"):
        assert any(step in ln for ln in first_run), f"chapter 9 shows no `{step}` line"
    assert any(ln.startswith("torchrun --nproc_per_node 8") for ln in first_run)
    evaluate = [ln for ln in first_run if " evaluate " in ln and ln.count("--split") == 3]
    assert evaluate and all("--checkpoint ~/refseg-book/runs/" in ln for ln in evaluate)
    assert any(" gather " in ln for ln in first_run)


def _family_tiny(config: str) -> str:
    return (
        "lts_tiny"
        if yaml.safe_load(configs.path(config).read_text())["model"].startswith("lts")
        else "cris_tiny"
    )


def _is_paper_cell(config: str | None) -> bool:
    return config is not None and config in configs.names() and not config.startswith("smoke_")


def _set(values: dict) -> str:
    return "".join(
        f" --set {k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}"
        for k, v in values.items()
    )


def sized(line: str, syn: Path) -> tuple[str, str]:
    """``line`` with its size overrides appended, and what they do (printed by the test)."""
    words = shlex.split(line)
    if words[0] == "papermill":
        if "dry_run True" in line:
            return line, "a dry run as printed"
        own, params, i = {}, {"config": "smoke_cris", "lts_config": None}, 3  # the chapters' defaults
        while i < len(words):
            if words[i] == "-p":
                params[words[i + 1]] = words[i + 2]
                i += 3
            elif words[i] == "-y":
                own.update(yaml.safe_load(words[i + 1]))
                i += 2
            else:
                raise AssertionError(f"papermill option {words[i]!r} in `{line}` is not -p or -y")
        extra, what = {}, []
        for key, cfg_key in (("overrides", "config"), ("lts_overrides", "lts_config")):
            config = None if params[cfg_key] in (None, "None") else params[cfg_key]
            if config is None and key not in own:
                continue
            mine = dict(own.get(key, {}))
            if _is_paper_cell(config):
                mine.update(PAPER_CELL_AT_TINY_SIZE, model=_family_tiny(config), data_root=str(syn))
                what.append(f"{config}: generated data, {_family_tiny(config)}, random weights, 64 px")
            elif "data_root" in mine:  # real data named: the generated set of the same flavour
                mine.update(
                    synthetic=True, data_root=str(syn), synthetic_num_images=24, synthetic_image_size=64
                )
                what.append(
                    f"{config}: generated data of the same flavour instead of {own[key]['data_root']}"
                )
            else:
                mine.update(SMOKE_AT_TINY_SIZE)
                what.append(f"{config}: one short epoch")
            extra[key] = mine
        flow = yaml.safe_dump(extra, default_flow_style=True, width=10**6).strip()
        return f"{line} -y {shlex.quote(flow)}", "; ".join(what)
    if "--dry-run" in words:
        return line, "a dry run as printed"
    if " synth " in f" {line} ":
        return line + " --num-images 60", "60 images"
    if " train " in f" {line} ":
        if "--resume" in words:
            return line + " --set epochs=2", "one more epoch"
        config = words[words.index("--config") + 1]
        if _is_paper_cell(config):
            values = dict(PAPER_CELL_AT_TINY_SIZE, model=_family_tiny(config), data_root=str(syn))
            return line + _set(values), "generated data, tiny model, random weights, 64 px, one epoch"
        return line + _set(SMOKE_AT_TINY_SIZE), "one short epoch"
    return line, "as printed"


def _same_run(line: str) -> str:
    """``line`` with papermill's output notebook left out: two lines that differ only there run the same."""
    words = shlex.split(line)
    return shlex.join(words[:2] + words[3:]) if words[0] == "papermill" else shlex.join(words)


def _where(path: str, tried: list[Path]) -> Path | None:
    """The first home of ``tried`` in which ``path`` (``~/...``) exists, a file or a folder."""
    return next((h for h in tried if Path(path.replace("~", str(h), 1)).exists()), None)


@pytest.fixture()
def data_env(tmp_path):
    """The environment that points `data fetch` at a stand-in for every data host, on 127.0.0.1."""
    from _source_forms import standin_env
    from standin_server import StandIn

    with StandIn() as stand:
        yield standin_env(stand, tmp_path / "standin")


@pytest.mark.slow
def test_launch_lines_run_as_printed(tmp_path, capsys, data_env):
    syn = tmp_path / "synthetic"  # the generated stand-in for /data/refer (every flavour, one folder)
    homes: list[Path] = []

    def new_home() -> tuple[Path, Path]:
        home = tmp_path / f"home{len(homes)}"
        (home / "work").mkdir(parents=True)
        Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype("uint8")).save(
            home / "work" / "photo.jpg"
        )
        homes.append(home)
        return home, home / "work"

    sources = [("README", readme_commands())]
    for chapter, line in chapter_commands():
        if sources[-1][0] != chapter:
            sources.append((chapter, []))
        sources[-1][1].append(line)
    ran: dict[str, Path] = {}
    report = []
    for source, lines in sources:
        home, work = new_home()
        here_before: list[Path] = []  # where this source's lines ran so far, in order
        for line in lines:
            if _same_run(line) in {_same_run(x) for x in ran}:
                same = "the same command" + ("" if line in ran else ", up to papermill's output file")
                report.append(f"{source}: `{line}` ran above ({same})")
                ran[line] = next(h for x, h in ran.items() if _same_run(x) == _same_run(line))
                here_before.append(ran[line])
                continue
            words = shlex.split(line)
            here = home
            given = next(
                (words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--resume", "--checkpoint")), ""
            )
            if given.startswith("~/"):  # where its checkpoint is: after the lines above it, else anywhere
                tried = [*reversed(here_before), home, *homes]
                here = _where(given, tried) or home
                if "--resume" in words:
                    assert _where(given, tried), f"`{line}`: no home holds {given}"
            elif (
                " train " in f" {line} "
                and "--config" in words
                and _is_paper_cell(words[words.index("--config") + 1])
            ):
                here, _ = new_home()
            cmd, what = sized(line, syn)
            if words[0] == "papermill":
                out = ROOT / words[2]
                assert not out.exists(), f"{out} exists already; remove it"
                try:
                    _run(cmd, ROOT, here, data_env)
                    nb = nbformat.read(out, as_version=4)
                finally:
                    out.unlink(missing_ok=True)
                printed = "".join(
                    o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                )
                if "dry_run True" in line:
                    assert "dry_run:" in printed and "training " not in printed
                elif "05_training" in line:  # both models trained, on the stand-in data
                    assert "CRIS run: cris_tiny" in printed and "LTS run: lts_tiny" in printed
                    runs = here / "refseg-book" / "runs"
                    assert (runs / "cris_r50_refcoco" / "last.pt").is_file(), printed[-2000:]
                    assert (runs / "lts_refcoco" / "last.pt").is_file(), printed[-2000:]
                elif "01_data" in line:  # chapter 1 lists the files of the dataset folder it was pointed at
                    assert "instances.json" in printed and "refs(unc).p" in printed, printed[-2000:]
                else:  # another chapter's exercise: papermill ran every cell (exit status 0 above)
                    assert "injected-parameters" in str(nb.cells), line
            else:
                started = time.time()
                out = _run(cmd, here / "work", here, data_env).stdout
                if words[:4] == ["python", "-m", "refseg_core", "data"]:
                    assert "verified" in out or "match the manifest" in out, out[-2000:]
                elif "--dry-run" in words:
                    assert "model: cris_r50" in out and "select_best: true" in out
                elif " train " in f" {line} ":
                    assert "wrote " in out and "last.pt" in out, out[-2000:]
                    if "--resume" not in words and _is_paper_cell(words[words.index("--config") + 1]):
                        assert "best.pt (what evaluate scores)" in out  # select_best, as the config says
                elif " evaluate " in f" {line} " and given.startswith("~/") and "--out" not in words:
                    ckpt = Path(given.replace("~", str(here), 1))
                    if ckpt.is_dir():  # a run folder: the checkpoint its run selected
                        assert re.search(r"scoring \S*best\.pt", out), out[-2000:]
                    folder = ckpt if ckpt.is_dir() else ckpt.parent
                    for split in [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--split"]:
                        written = [
                            f for f in folder.glob(f"eval_*_{split}.json") if f.stat().st_mtime >= started
                        ]
                        assert written, f"`{line}` wrote no eval file for {split} in {folder}:\n{out[-2000:]}"
            ran[line] = here
            here_before.append(here)
            report.append(f"{source}: `{line}` ({what})")
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert set(ran) == set(readme_commands()) | {ln for _, ln in chapter_commands()}
    readme_home = ran[readme_commands()[0]]
    smoke_home = ran[next(ln for ln in readme_commands() if "smoke_cris" in ln and " train " in ln)]
    assert any((smoke_home / "refseg-book" / "runs" / "smoke_cris").glob("eval_*testA*.json"))  # evaluate
    assert (smoke_home / "refseg-book" / "runs" / "results.md").is_file()  # gather
    assert (smoke_home / "work" / "data" / "synthetic" / "refcoco" / "instances.json").is_file()  # synth
    assert readme_home.is_dir()
    # chapter 5's exercise 3: two processes, the per-rank batch is half the global one
    ddp = next(h for ln, h in ran.items() if "--nproc_per_node 2" in ln)
    assert (ddp / "work" / "runs" / "ddp_try" / "last.pt").is_file()


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
