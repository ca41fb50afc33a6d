"""GPU benchmarks at full size (416 x 416) on CUDA:

    python benchmarks/run_gpu.py --official-repo /path/to/CRIS.pytorch

The full grid: CRIS-R50, CRIS-R101 and LTS; fp32 / bf16 / fp16 x channels_last x ``torch.compile``;
train step at batch 32, inference latency at batch 1 and throughput at batch 64, peak CUDA memory, FLOPs
and model FLOPs utilisation; our train step against the official CRIS at batches 16 and 64 (target: >= 1.5x);
the data loader with 0-8 workers at 416 (target: >= 2x the train-step rate); evaluation of 10k sentences
with CRIS-R50. Writes ``refseg_core/evidence/<GPU name>_<section>.json``. Without CUDA it stops: GPU numbers
are never produced on another device.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks import runner  # noqa: E402
from benchmarks.env import read_rows  # noqa: E402

DEFAULTS = dict(
    models="cris_r50,cris_r101,lts",
    size=416,
    train_batch=32,
    infer_batch=64,
    configs=",".join(
        f"{p}{cl}{c}" for p in ("fp32", "bf16", "fp16") for cl in ("", "+cl") for c in ("", "+compile")
    ),
    repeats=10,
    official_batches="16,64",
    official_configs="fp16,bf16,fp32,bf16+cl+compile",
    data_workers="0,2,4,8",
    data_batches=50,
    data_images=400,
    eval_model="cris_r50",
    eval_size=416,
    eval_image_size=480,
    eval_sentences=10_000,
    eval_batch=64,
    eval_workers=8,
)


def add_data_target(written: dict) -> None:
    """Annotate the data rows with the brief's target: >= 2x the best CRIS-R50 train-step rate measured."""
    if "data" not in written or "models" not in written:
        return
    train = [
        r["images_per_s"]
        for r in read_rows(written["models"])
        if r["kind"] == "train_step" and r["model"] == "cris_r50" and r.get("images_per_s")
    ]
    if not train:
        return
    rows = read_rows(written["data"])
    for r in rows:
        r["train_images_per_s_ref"] = max(train)
        r["ratio_to_train_step"] = round(r["samples_per_s"] / max(train), 3)
        r["meets_2x_target"] = r["ratio_to_train_step"] >= 2.0
    runner.write_rows(written["data"], rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    runner.add_arguments(ap, DEFAULTS)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "run_gpu.py: no CUDA device is visible; nothing was measured (use run_cpu.py on a CPU)",
            file=sys.stderr,
        )
        return 2
    written = runner.run(args, torch.device("cuda"))
    add_data_target(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
