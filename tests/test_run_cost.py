"""refseg_core.run_cost: hours and memory of a full run, from the committed GPU rows."""

import pytest

from refseg_core import evidence, run_cost

ROWS = [
    {
        "part": "official",
        "model": "cris_r50",
        "batch": 32,
        "ours_config": "bf16+channels_last",
        "ours_images_per_s": 200.0,
        "official_images_per_s": 100.0,
        "ours_peak_mem_mib": 2048.0,
        "device": "GPU X",
        "torch": "2.x",
        "date": "2026-11-28T00:00:00",
    },
    {"part": "training", "steps": 100, "batch": 32, "train_time_s": 32.0},  # 100 img/s: half the step rate
    {"part": "eval_data", "kind": "evaluation", "sentences_per_s": 50.0},
]


def test_hours_follow_the_rows_and_the_dataset_size():
    e = run_cost.estimate("cris_r50_refcoco", rows=ROWS)
    assert e["step_images_per_s"] == 100.0 and "official fp16 NCHW" in e["step_basis"]  # the paper recipe
    epoch_s = 42404 / 100.0 + 3811 / 50.0
    assert e["hours_step_bound"] == pytest.approx(50 * epoch_s / 3600)
    loop_epoch_s = 42404 / 50.0 + 3811 / 50.0  # loop runs at half the step rate
    assert e["hours_loop_measured"] == pytest.approx(50 * loop_epoch_s / 3600)
    assert e["peak_mem_gib_batch"] == (2.0, 32) and e["device"] == "GPU X" and e["date"] == "2026-11-28"
    e8 = run_cost.estimate("cris_r50_refcoco", gpus=8, rows=ROWS)
    assert e8["hours_step_bound"] == pytest.approx(e["hours_step_bound"] / 8) and e8["per_gpu_batch"] == 8


def test_missing_rows_or_sizes_give_none_and_say_why():
    e = run_cost.estimate("cris_r101_refcoco", rows=ROWS)
    assert e["hours_step_bound"] is None and any("cris_r101" in n for n in e["notes"])
    g = run_cost.estimate("cris_r50_grefcoco", rows=ROWS)
    assert g["hours_step_bound"] is None and any("grefcoco" in n for n in g["notes"])
    with pytest.raises(ValueError, match="gpus"):
        run_cost.estimate("cris_r50_refcoco", gpus=0, rows=ROWS)


def test_the_committed_rows_give_an_estimate():
    e = run_cost.estimate("cris_r50_refcoco")
    rows = evidence.rows(run_cost.GPU_ROWS)
    official = next(r for r in rows if r["part"] == "official")
    assert e["step_images_per_s"] == official["official_images_per_s"]
    assert 0 < e["hours_step_bound"] < e["hours_loop_measured"]
