"""The smoke runs of chapter 5 learned as the book asks (issue 5's bar), read from the runs `make book` wrote.

Chapter 5 prints its verdict; this test makes CI fail when the LTS smoke run misses the bar. The bar:
validation mIoU >= 0.5 and >= 15 points above the best language-blind baseline, within 4 minutes of
training. The CRIS smoke run does not reach it yet (chapter 5, "Why the tiny CRIS learns more slowly"):
its check is an expected failure until it does (``strict``: a pass is reported, so the marker gets removed).

Skipped when chapter 5 has not run here, or when its run used other parameters than params/smoke_*.yaml.
"""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "_build" / "runs"
PATH_KEYS = {"data_root", "output_dir"}


def _run(name: str) -> dict:
    run = RUNS / f"05_training_{name}"
    if not (run / "metrics.json").is_file():
        pytest.skip(f"{run} has no metrics.json: run `make book` first")
    smoke = yaml.safe_load((ROOT / "params" / f"smoke_{name}.yaml").read_text())
    used = yaml.safe_load((run / "config.yaml").read_text())
    differ = {k: (used.get(k), v) for k, v in smoke.items() if k not in PATH_KEYS and used.get(k) != v}
    if differ:
        pytest.skip(f"{run} was trained with other parameters than params/smoke_{name}.yaml: {differ}")
    return json.loads((run / "metrics.json").read_text())


def _check(m: dict) -> None:
    best = max(b["mIoU"] for b in m["baselines"].values())
    assert m["meta"]["train_time_s"] <= 240, f"trained {m['meta']['train_time_s']:.0f} s, more than 4 minutes"
    assert m["mIoU"] >= 0.5, f"val mIoU {m['mIoU']:.3f} < 0.5"
    assert m["mIoU"] - best >= 0.15, f"val mIoU {m['mIoU']:.3f} is not 15 points above the best baseline {best:.3f}"


def test_lts_smoke_run_learned():
    _check(_run("lts"))


@pytest.mark.xfail(reason="issue 5: cris_tiny on 96-px synthetic images stays below the bar (chapter 5)", strict=True)
def test_cris_smoke_run_learned():
    _check(_run("cris"))
