"""The smoke runs of chapter 5 learned as the book asks (issue 5's bar), read from the runs `make book` wrote.

Chapter 5 prints its verdict; this test makes CI fail when the LTS smoke run misses the bar. The bar:
validation mIoU >= 0.5 and >= 15 points above the best language-blind baseline, within 4 minutes of
training. The CRIS smoke run does not reach it yet (chapter 5, "Why the tiny CRIS learns more slowly"):
its check is an expected failure until it does (``strict``: a pass is reported, so the marker gets removed).

Skipped when chapter 5 has not run here, or when its run used another configuration than smoke_*.
"""

import json
from pathlib import Path

import pytest
import yaml

from refseg_core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BOOK_HOME = ROOT / "_build" / "home"  # tools/build_book.py's REFSEG_HOME


def _run(name: str, monkeypatch) -> dict:
    monkeypatch.setenv("REFSEG_HOME", str(BOOK_HOME))
    smoke = load_config(f"smoke_{name}").to_dict()  # as chapter 5 resolves it under the book's home
    run = Path(smoke["output_dir"])
    if not (run / "metrics.json").is_file():
        pytest.skip(f"{run} has no metrics.json: run `make book` first")
    used = yaml.safe_load((run / "config.yaml").read_text())
    differ = {k: (used.get(k), v) for k, v in smoke.items() if used.get(k) != v}
    if differ:
        pytest.skip(f"{run} was trained with another configuration than smoke_{name}: {differ}")
    return json.loads((run / "metrics.json").read_text())


def _check(m: dict) -> None:
    best = max(b["mIoU"] for b in m["baselines"].values())
    assert m["meta"]["train_time_s"] <= 240, f"trained {m['meta']['train_time_s']:.0f} s, more than 4 minutes"
    assert m["mIoU"] >= 0.5, f"val mIoU {m['mIoU']:.3f} < 0.5"
    assert m["mIoU"] - best >= 0.15, (
        f"val mIoU {m['mIoU']:.3f} is not 15 points above the best baseline {best:.3f}"
    )


def test_lts_smoke_run_learned(monkeypatch):
    _check(_run("lts", monkeypatch))


@pytest.mark.xfail(
    reason="issue 5: cris_tiny on 96-px synthetic images stays below the bar (chapter 5)", strict=True
)
def test_cris_smoke_run_learned(monkeypatch):
    _check(_run("cris", monkeypatch))
