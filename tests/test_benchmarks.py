"""benchmarks/: the measuring functions run on tiny models and data and return rows with the required
keys and plausible values; results are written atomically; nothing is faked without a GPU or the
official code."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import run_gpu, runner  # noqa: E402
from benchmarks.bench_models import BenchConfig, bench_model, make_batch  # noqa: E402
from benchmarks.data_pipeline import data_rows  # noqa: E402
from benchmarks.env import read_rows, write_rows  # noqa: E402
from benchmarks.eval_throughput import eval_row  # noqa: E402
from benchmarks.flops import mfu, peak_tflops  # noqa: E402
from benchmarks.official_cris import compare_train_step  # noqa: E402

ENV_KEYS = {"device", "device_type", "torch", "date", "loadavg"}
MODEL_KEYS = ENV_KEYS | {
    "kind",
    "model",
    "input_size",
    "batch",
    "precision",
    "channels_last",
    "compile",
    "images_per_s",
    "median_s",
    "peak_mem_mib",
    "peak_mem_kind",
    "flops_per_image",
}


pytestmark = pytest.mark.usefixtures("one_thread")


# cris_tiny is marked slow only because `import open_clip` alone takes ~10 s on a busy 2-core machine.
@pytest.mark.parametrize("name", [pytest.param("cris_tiny", marks=pytest.mark.slow), "lts_tiny"])
def test_bench_model_rows(name):
    rows = bench_model(
        name,
        "cpu",
        64,
        2,
        2,
        [BenchConfig("fp32"), BenchConfig("bf16", channels_last=True)],
        warmup=0,
        repeats=1,
        latency_repeats=1,
    )
    assert [(r["kind"], r["precision"]) for r in rows] == [
        ("train_step", "fp32"),
        ("inference_latency", "fp32"),
        ("inference_throughput", "fp32"),
        ("train_step", "bf16"),
        ("inference_latency", "bf16"),
        ("inference_throughput", "bf16"),
    ]
    for r in rows:
        assert "error" not in r, r.get("error")
        assert MODEL_KEYS <= set(r), MODEL_KEYS - set(r)
        assert r["device_type"] == "cpu" and r["device"].startswith("CPU ") and r["model"] == name
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["median_s"], rel=1e-2)
        assert r["peak_mem_kind"] == "cpu_process_rss_peak" and r["peak_mem_mib"] > 0
        assert "mfu" not in r  # MFU is a GPU figure only
    assert rows[1]["batch"] == 1
    # A train step (forward + backward) costs more FLOPs per image than a forward: about 3x.
    assert 2.0 < rows[0]["flops_per_image"] / rows[1]["flops_per_image"] < 4.0
    json.dumps(rows)  # serialisable as they are


def test_make_batch_checks_the_stride():
    model = torch.nn.Module()
    model.tokenizer = lambda texts: torch.ones(len(texts), 4, dtype=torch.long)
    b = make_batch(model, 3, 64, torch.device("cpu"))
    assert b["image"].shape == (3, 3, 64, 64) and b["tokens"].shape == (3, 4)
    assert b["mask"].shape == (3, 1, 64, 64)
    assert 0 < float(b["mask"].mean()) < 1
    with pytest.raises(ValueError, match="multiple of 32"):
        make_batch(model, 1, 70, torch.device("cpu"))


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="precision"):
        BenchConfig("fp8")
    want = [BenchConfig("fp32"), BenchConfig("bf16", True, True)]
    assert runner.parse_configs("fp32,bf16+cl+compile") == want
    with pytest.raises(Exception, match="unknown flag"):
        runner.parse_configs("fp32+fast")


def test_official_row_is_skipped_with_a_reason(tmp_path):
    rows = compare_train_step("cris_r50", None, "cpu", 64, 2, [BenchConfig()])
    assert len(rows) == 1 and "official-repo" in rows[0]["skipped"]
    assert rows[0]["ours_images_per_s"] is None and rows[0]["official_images_per_s"] is None
    rows = compare_train_step("cris_r50", tmp_path, "cpu", 64, 2, [BenchConfig()])
    assert str(tmp_path) in rows[0]["skipped"]


def test_peak_flops_and_mfu():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16")[0] == pytest.approx(989.4)
    assert peak_tflops("NVIDIA H100 PCIe", "fp16")[0] == pytest.approx(756.0)
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp32")[0] == pytest.approx(156.0)
    assert peak_tflops("Some GPU", "bf16")[0] is None
    assert mfu(10**12, 100.0, 1000.0) == pytest.approx(0.1)
    assert mfu(None, 100.0, 1000.0) is None


def test_rows_are_written_atomically(tmp_path):
    path = write_rows(tmp_path / "cpu_x.json", [{"a": 1}])
    assert read_rows(path) == [{"a": 1}] and list(tmp_path.iterdir()) == [path]
    with pytest.raises(TypeError):
        write_rows(tmp_path / "cpu_y.json", {"a": 1})
    assert not (tmp_path / "cpu_y.json").exists()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        read_rows(tmp_path / "bad.json")


def test_data_and_eval_rows(tmp_path):
    rows = data_rows(
        tmp_path / "d",
        workers_list=(0,),
        image_size=64,
        num_images=8,
        batch_size=2,
        input_size=64,
        num_batches=2,
    )
    assert rows[0]["kind"] == "data_loader" and rows[0]["samples"] == 4 and rows[0]["samples_per_s"] > 0
    assert rows[0]["image_shape"] == [3, 64, 64] and ENV_KEYS <= set(rows[0])
    row = eval_row("lts_tiny", tmp_path / "e", num_sentences=12, image_size=64, input_size=64, batch_size=4)
    assert row["kind"] == "evaluation" and row["sentences"] == 12 and row["sentences_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_run_gpu_refuses_without_cuda(tmp_path, capsys):
    assert run_gpu.main(["--out-dir", str(tmp_path)]) == 2
    assert "no CUDA" in capsys.readouterr().err and not list(tmp_path.iterdir())
