"""The smoke runs of chapter 5 learned as the book asks (issue 5's bar), read from the runs `make book` wrote.

Chapter 5 prints its verdict; this test makes CI fail when a smoke run misses its bar
(:data:`refseg_core.smoke.BARS`: LTS val mIoU >= 0.50, CRIS >= 0.45, both >= 15 points above the best
language-blind baseline, within 4 and 6 minutes of training). The time is checked as measured, on CI's
machine; the learning numbers do not depend on the machine (fixed epochs, seeded).

Skipped when chapter 5 has not run here, or when its run used another configuration than smoke_*.
"""

import json
from pathlib import Path

import pytest
import yaml

from refseg_core import smoke
from refseg_core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BOOK_HOME = ROOT / "_build" / "home"  # tools/build_book.py's REFSEG_HOME


def _run(name: str, monkeypatch) -> dict:
    monkeypatch.setenv("REFSEG_HOME", str(BOOK_HOME))
    wanted = load_config(f"smoke_{name}").to_dict()  # as chapter 5 resolves it under the book's home
    run = Path(wanted["output_dir"])
    if not (run / "metrics.json").is_file():
        pytest.skip(f"{run} has no metrics.json: run `make book` first")
    used = yaml.safe_load((run / "config.yaml").read_text())
    differ = {k: (used.get(k), v) for k, v in wanted.items() if used.get(k) != v}
    if differ:
        pytest.skip(f"{run} was trained with another configuration than smoke_{name}: {differ}")
    return json.loads((run / "metrics.json").read_text())


def _check(name: str, monkeypatch) -> None:
    m = _run(name, monkeypatch)
    missed = smoke.misses(f"smoke_{name}", m, m["meta"]["train_time_s"])
    print(
        f"smoke_{name}: val mIoU {m['mIoU']:.4f}, trained {m['meta']['train_time_s']:.0f} s"
    )  # the measured time
    assert not missed, f"smoke_{name} misses its bar: {'; '.join(missed)}"


def test_lts_smoke_run_learned(monkeypatch):
    _check("lts", monkeypatch)


def test_cris_smoke_run_learned(monkeypatch):
    _check("cris", monkeypatch)
