"""The shared driver behind ``run_cpu.py`` and ``run_gpu.py``: sections (models, official, data, eval),
each written to ``refseg_core/evidence/<device>_<section>.json`` as soon as it is done."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from benchmarks.bench_models import BenchConfig, bench_model
from benchmarks.data_pipeline import data_rows
from benchmarks.env import RESULTS_DIR, device_slug, loadavg, write_rows
from benchmarks.eval_throughput import eval_row
from benchmarks.official_cris import compare_train_step

SECTIONS = ("models", "official", "data", "eval")
ROOT = Path(__file__).resolve().parents[1]


def parse_configs(text: str) -> list[BenchConfig]:
    """``"fp32,fp32+cl,bf16+cl+compile"`` -> configurations (``cl`` = channels_last)."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        prec, *flags = item.split("+")
        bad = set(flags) - {"cl", "compile"}
        if bad:
            raise argparse.ArgumentTypeError(
                f"--configs item {item!r}: unknown flag(s) {sorted(bad)} (use precision[+cl][+compile])"
            )
        out.append(BenchConfig(prec, "cl" in flags, "compile" in flags))
    if not out:
        raise argparse.ArgumentTypeError("--configs is empty")
    return out


def add_arguments(ap: argparse.ArgumentParser, defaults: dict) -> None:
    d = defaults
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    ap.add_argument("--models", default=d["models"], help="comma-separated build_model names")
    ap.add_argument("--size", type=int, default=d["size"], help="square input side (multiple of 32)")
    ap.add_argument("--train-batch", type=int, default=d["train_batch"])
    ap.add_argument("--infer-batch", type=int, default=d["infer_batch"], help="batch of the throughput rows")
    ap.add_argument(
        "--configs",
        type=parse_configs,
        default=parse_configs(d["configs"]),
        help="precision[+cl][+compile], comma-separated",
    )
    ap.add_argument("--repeats", type=int, default=d["repeats"])
    ap.add_argument(
        "--official-repo",
        default=os.environ.get("CRIS_OFFICIAL_REPO"),
        help="checkout of DerrickWang005/CRIS.pytorch (or $CRIS_OFFICIAL_REPO); without it the "
        "official row is skipped",
    )
    ap.add_argument("--official-model", default="cris_r50", choices=["cris_r50", "cris_r101"])
    ap.add_argument("--official-batches", default=d["official_batches"], help="comma-separated train batches")
    ap.add_argument("--official-configs", type=parse_configs, default=parse_configs(d["official_configs"]))
    ap.add_argument("--data-root", default=str(ROOT / "_build" / "bench_data"))
    ap.add_argument(
        "--data-workers", default=d["data_workers"], help="comma-separated DataLoader worker counts"
    )
    ap.add_argument("--data-images", type=int, default=d["data_images"])
    ap.add_argument(
        "--data-batches", type=int, default=d["data_batches"], help="timed batches (after the first)"
    )
    ap.add_argument("--eval-model", default=d["eval_model"])
    ap.add_argument("--eval-size", type=int, default=d["eval_size"])
    ap.add_argument("--eval-image-size", type=int, default=d["eval_image_size"])
    ap.add_argument("--eval-sentences", type=int, default=d["eval_sentences"])
    ap.add_argument("--eval-batch", type=int, default=d["eval_batch"])
    ap.add_argument("--eval-workers", type=int, default=d["eval_workers"])
    ap.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument("--prefix", default=None, help="results file prefix (default: the device, e.g. cpu)")


def run(args, device: torch.device) -> dict[str, Path]:
    """Run the selected sections; returns ``{section: written file}``."""
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = set(sections) - set(SECTIONS)
    if bad:
        raise SystemExit(f"--only: unknown section(s) {sorted(bad)}; valid: {', '.join(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    prefix = args.prefix or device_slug(device)
    la, cores = loadavg(), os.cpu_count() or 1
    if device.type == "cpu" and la and la[0] > cores:
        print(
            f"warning: load average {la[0]} exceeds the {cores} cores: other processes "
            "compete, CPU numbers will be low and noisy (each row records its load average)",
            flush=True,
        )
    written, t_all = {}, time.time()
    for section in sections:
        t0 = time.time()
        print(f"== {section} on {device} ==", flush=True)
        rows = _section(section, args, device)
        written[section] = write_rows(args.out_dir / f"{prefix}_{section}.json", rows)
        print(f"   wrote {written[section]} ({len(rows)} rows, {time.time() - t0:.0f} s)", flush=True)
    print(f"done in {time.time() - t_all:.0f} s", flush=True)
    return written


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _section(section: str, args, device: torch.device) -> list[dict]:
    if section == "models":
        rows = []
        for name in filter(None, args.models.split(",")):
            rows += bench_model(
                name,
                device,
                args.size,
                args.train_batch,
                args.infer_batch,
                args.configs,
                warmup=0,
                repeats=args.repeats,
                latency_repeats=max(args.repeats, 5),
            )
        return rows
    if section == "official":
        rows = []
        for b in _ints(args.official_batches):
            rows += compare_train_step(
                args.official_model,
                args.official_repo,
                device,
                args.size,
                b,
                args.official_configs,
                warmup=0,
                repeats=args.repeats,
            )
        return rows
    if section == "data":
        rows = data_rows(
            Path(args.data_root) / "images480",
            _ints(args.data_workers),
            num_images=args.data_images,
            num_batches=args.data_batches,
            device=device,
            gen_workers=min(os.cpu_count() or 1, 8),
        )
        return rows
    if section == "eval":
        return [
            eval_row(
                args.eval_model,
                Path(args.data_root) / f"eval{args.eval_image_size}",
                args.eval_sentences,
                args.eval_image_size,
                args.eval_size,
                args.eval_batch,
                args.eval_workers,
                device=device,
                gen_workers=min(os.cpu_count() or 1, 8),
            )
        ]
    raise AssertionError(section)
