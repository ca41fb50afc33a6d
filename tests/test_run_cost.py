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
        "official_peak_mem_mib": 3072.0,
        "device": "GPU X",
        "torch": "2.x",
        "date": "2026-11-28T00:00:00",
    },
    {
        "part": "lts",
        "model": "lts",
        "batch": 32,
        "precision": "bf16",
        "images_per_s": 400.0,
        "peak_mem_mib": 1024.0,
    },
    # 100 img/s: half the step rate of the same (bf16) path
    {"part": "training", "model": "cris_r50", "steps": 100, "batch": 32, "train_time_s": 32.0},
    {
        "part": "eval_data",
        "kind": "evaluation",
        "model": "cris_r50",
        "precision": "bf16",
        "sentences_per_s": 50.0,
    },
]


def test_hours_follow_the_rows_and_the_dataset_size():
    e = run_cost.estimate("cris_r50_refcoco", rows=ROWS)
    assert e["step_images_per_s"] == 100.0 and "official code's fp16 NCHW" in e["step_basis"]  # the recipe
    epoch_s = 42404 / 100.0 + 3811 / 50.0
    assert e["hours_step_bound"] == pytest.approx(50 * epoch_s / 3600)
    loop_epoch_s = 42404 / 50.0 + 3811 / 50.0  # loop runs at half the step rate
    assert e["hours_loop_measured"] == pytest.approx(50 * loop_epoch_s / 3600)
    assert e["device"] == "GPU X" and e["date"] == "2026-11-28"
    assert "not fp16" in e["eval_basis"]  # the evaluation row is bf16, the recipe fp16
    e8 = run_cost.estimate("cris_r50_refcoco", gpus=8, rows=ROWS)
    assert e8["hours_step_bound"] == pytest.approx(e["hours_step_bound"] / 8) and e8["per_gpu_batch"] == 8
    # 8 per GPU is below the measured batch of 32: the hours are a lower bound, and the notes say so
    assert any("lower bound" in n for n in e8["notes"]) and not any("lower bound" in n for n in e["notes"])


def test_memory_is_the_rows_of_the_same_precision_and_says_when_it_bounds_the_run():
    e1, e8 = (run_cost.estimate("cris_r50_refcoco", gpus=g, rows=ROWS) for g in (1, 8))
    # fp16 NCHW, as the official code: the official step's memory, measured at batch 32
    assert e1["peak_mem_gib_batch"] == (3.0, 32) and "official" in e1["memory"]["basis"]
    assert e8["memory"]["bound"] == "upper bound"  # 8 per GPU <= 32 measured
    assert e1["memory"]["bound"].startswith("not a bound")  # 64 per GPU > 32 measured
    from refseg_core.config import load_config

    opt_in = load_config("cris_r50_refcoco", {"precision": "bf16", "channels_last": True})
    e = run_cost.estimate(opt_in, rows=ROWS)
    assert e["peak_mem_gib_batch"] == (2.0, 32) and e["step_images_per_s"] == 200.0
    assert "bf16+channels_last" in e["step_basis"] and "not" not in e["eval_basis"]


def test_lts_uses_its_own_step_and_no_loop_of_another_model():
    e = run_cost.estimate("lts_refcoco", rows=ROWS)
    assert e["step_images_per_s"] == 400.0 and "(the run uses" not in e["step_basis"]  # both bf16
    assert e["hours_step_bound"] == pytest.approx(50 * (42404 / 400.0 + 3811 / 50.0) / 3600)
    assert e["hours_loop_measured"] is None and "cris_r50, not lts" in e["loop_basis"]
    assert "not lts" in e["eval_basis"] and e["peak_mem_gib_batch"] == (1.0, 32)
    fp32 = run_cost.estimate("lts_refcoco", rows=[{**ROWS[1], "precision": "fp32"}])
    assert "(the run uses bf16)" in fp32["step_basis"]


def test_missing_rows_or_sizes_give_none_and_say_why():
    e = run_cost.estimate("cris_r101_refcoco", rows=ROWS)
    assert e["hours_step_bound"] is None and any("cris_r101" in n for n in e["notes"])
    assert e["peak_mem_gib_batch"] == (None, None) and "cris_r101" in e["memory"]["basis"]  # not R50's
    g = run_cost.estimate("cris_r50_grefcoco", rows=ROWS)
    assert g["hours_step_bound"] is None and any("grefcoco" in n for n in g["notes"])
    bare = run_cost.estimate("cris_r50_refcoco", rows=ROWS[:1])
    assert bare["hours_loop_measured"] is None and "no committed training-run row" in bare["loop_basis"]
    assert bare["hours_step_bound"] == pytest.approx(50 * 42404 / 100.0 / 3600)  # no validation rate
    assert "left out" in bare["eval_basis"]
    with pytest.raises(ValueError, match="gpus"):
        run_cost.estimate("cris_r50_refcoco", gpus=0, rows=ROWS)


def test_the_committed_rows_give_an_estimate():
    e = run_cost.estimate("cris_r50_refcoco")
    rows = evidence.rows(run_cost.GPU_ROWS)
    official = next(r for r in rows if r["part"] == "official")
    assert e["step_images_per_s"] == official["official_images_per_s"]
    assert 0 < e["hours_step_bound"] < e["hours_loop_measured"]
    assert e["memory"]["gib"] == round(official["official_peak_mem_mib"] / 1024, 1)


def test_data_size_comes_from_the_sources_and_the_published_counts():
    from refseg_core import configs
    from refseg_core.data import sources

    d = run_cost.data_size("refcoco")
    images = configs.published()["datasets"]["refcoco"]["images"]
    zip_entry = sources.coco("zip")
    assert d["images"] == sum(images.values()) and d["images_by_split"] == images
    assert d["images_bytes"] == pytest.approx(d["images"] * zip_entry["size"] / zip_entry["images"])
    assert d["source"] == sources.source_for("refcoco")[0] and d["zip_bytes"] == zip_entry["size"]
    val = run_cost.data_size("refcoco", ["val", "testA", "testB"])
    assert val["images"] == images["val"] + images["testA"] + images["testB"]
    assert val["images_bytes"] < d["images_bytes"] < d["zip_bytes"]
    assert run_cost.data_size("grefcoco")["images"] is None  # no per-split counts published
    with pytest.raises(ValueError, match="no split"):
        run_cost.data_size("refcoco", ["test"])


def test_hours_table_shows_both_rates_per_gpu_count_and_what_is_missing():
    table, headers = run_cost.hours_table(["cris_r50_refcoco", "cris_r101_refcoco", "lts_refcoco"], rows=ROWS)
    assert headers == ["configuration", "epochs", "train refs", "1 GPU: hours", "8 GPUs: hours", "missing"]
    r50, r101, lts = table
    e1, e8 = (run_cost.estimate("cris_r50_refcoco", g, rows=ROWS) for g in (1, 8))
    assert r50[3] == f"{e1['hours_step_bound']:.1f} / {e1['hours_loop_measured']:.1f}" and r50[5] == ""
    assert r50[4] == f"{e8['hours_step_bound']:.2f} / {e8['hours_loop_measured']:.1f}"  # 2 digits under 1 h
    assert r101[3] == "– / –" and "cris_r101" in r101[5]
    assert lts[3].endswith("/ –") and "not lts" in lts[5]
