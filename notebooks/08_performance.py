# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Performance: speed, memory and the official CRIS side by side
#
# **What you will learn.** How fast one training step, one prediction and one evaluation pass of LTS
# {cite}`jing2021lts` and CRIS {cite}`wang2022cris` are with this book's code; what bf16 / fp16, the
# `channels_last` memory format and `torch.compile` change; whether the data pipeline keeps up with the
# model; and how our CRIS compares with the official implementation given the same weights, input and batch.
#
# This chapter measures nothing itself: it reads the JSON rows that `benchmarks/` wrote (`make bench` on a
# CPU, `python benchmarks/run_gpu.py` on a CUDA machine; see `benchmarks/README.md`) and plots them.
# **Every table and figure names the device that produced its numbers.** CPU numbers are taken at a small
# input size on a small, often shared, machine: they show the *relative* effect of a switch there and say
# nothing about a GPU. Each row also records the load average at the time it was measured.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # the release
if "google.colab" in sys.modules:  # in Colab only: install the package, nothing else
    import subprocess

    package = f"refseg_core @ git+{REPO}@{REF}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["parameters"]
results_dir = None  # folder of <device>_<section>.json rows; None: those committed with refseg_core
sections = ["models", "official", "data", "eval"]

# %%
import json
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from refseg_core import evidence
from refseg_core.notebook import markdown_table

results_dir = results_dir or str(evidence.EVIDENCE_DIR)  # benchmarks/ writes there

# <device>_<section>.json; other files there (e.g. the CRIS chapter's cris_equivalence_cpu.json) are not
# speed results.
files = [f for f in sorted(Path(results_dir).glob("*_*.json")) if f.stem.rpartition("_")[2] in sections]
rows_by_section = defaultdict(list)
first_row = {}
for f in files:
    rows = json.loads(f.read_text())
    first_row[f.name] = rows[0] if rows else {}
    for row in rows:
        rows_by_section[f.stem.rpartition("_")[2]].append(dict(row, _file=f.name))
devices = sorted({r["device"] for rows in rows_by_section.values() for r in rows})
check_rows = [
    dict(r, _file=f.name)
    for f in sorted(Path(results_dir).glob("*_check.json"))
    for r in json.loads(f.read_text())
]
gpu_rows = [r for rows in rows_by_section.values() for r in rows if r.get("device_type") == "cuda"]
gpu_rows += [r for r in check_rows if r.get("device_type") == "cuda"]


def table(rows, columns, headers=None):
    """A Markdown table of ``rows`` (dicts) with the given columns; missing values print as '-'."""
    return Markdown(markdown_table(rows, columns, headers))


def config_label(r):
    return (
        r["precision"]
        + (" +cl" if r.get("channels_last") else "")
        + (" +compile" if r.get("compile") else "")
    )


display(
    table(
        [{"file": name, "device": r.get("device"), "date": r.get("date")} for name, r in first_row.items()],
        ["file", "device", "date"],
    )
)
if not gpu_rows:
    display(
        Markdown(
            "**No GPU results are committed yet.** Every number below was measured on a CPU. "
            "`make gpu-kit`, then `make gpu-check` on a CUDA machine, adds the full-size (416 x 416) "
            "check; this chapter then shows it in its own section."
        )
    )

# %% [markdown]
# ## The GPU check at full size
#
# `make gpu-check` (`benchmarks/gpu_check.py`) measures, in one short call on a GPU machine: our CRIS-R50
# train step at 416 px, batch 32, bf16 with `channels_last` (eager, and with `torch.compile`) against the
# official CRIS with the same weights in its own recipe (fp16 autocast with a GradScaler, eager, NCHW),
# timed in alternating rounds in one process; LTS at the same size; a short training run of CRIS-R50
# from random weights on the synthetic set at 416 px (fixed epochs; a run stopped by the check's time
# guard shows only its loss curve, whose points do not depend on the machine's speed); evaluation
# throughput; and the data loader with 8 workers. MFU divides counted model FLOPs by
# the GPU's dense bf16 (or fp16) peak. Each row names its device, torch version and date.

# %%
if not check_rows:
    print("no GPU check rows are committed")
for r in check_rows:
    if r["kind"] == "train_step_vs_official":
        r["_what"] = (
            f"CRIS-R50 ours ({r['ours_config']}) {r['ours_images_per_s']} img/s vs official "
            f"({r['official_config']}) {r['official_images_per_s']} img/s = x{r['speedup']}; "
            f"MFU {r['ours_mfu']} vs {r['official_mfu']}; peak {r['ours_peak_mem_mib']} / "
            f"{r['official_peak_mem_mib']} MiB"
            + (f"; compile {r['compile_s']} s" if r.get("compile_s") else "")
        )
    elif r["kind"] == "train_step":
        r["_what"] = (
            f"{r['model']} {r['images_per_s']} img/s, peak {r['peak_mem_mib']} MiB, MFU {r.get('mfu')}"
        )
    elif r["kind"] == "training_run" and r.get("stopped_by_guard"):
        # A run cut by the clock is not a result: its score would depend on the machine's speed.
        r["_what"] = (
            f"CRIS-R50 from random weights: stopped by the check's time guard after {r['steps']} steps "
            f"({r['train_time_s']} s), so no validation score is shown; its loss curve is below"
        )
    elif r["kind"] == "training_run":
        r["_what"] = (
            f"CRIS-R50 from random weights: val mIoU {r['val_mIoU']:.3f} after {r['steps']} steps "
            f"({r['epochs']} epoch(s), {r['train_time_s']} s); best language-blind baseline "
            f"{r['best_baseline']} {r['baselines'][r['best_baseline']]:.3f}"
        )
    elif r["kind"] == "evaluation":
        r["_what"] = (
            f"{r['sentences_per_s']} sentences/s ({r['sentences']} sentences, official post-processing)"
        )
    elif r["kind"] == "data_loader":
        r["_what"] = (
            f"{r['samples_per_s']} samples/s with {r['workers']} workers = x{r['ratio_to_train_step']} "
            "the eager train step"
        )
    else:
        r["_what"] = r.get("error") or r.get("skipped")
display(
    table(
        check_rows,
        ["part", "_what", "device", "torch", "date"],
        ["part", "result", "device", "torch", "date"],
    )
)
runs = [r for r in check_rows if r["kind"] == "training_run" and r.get("loss_curve")]
for r in runs:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([p["step"] for p in r["loss_curve"]], [p["loss"] for p in r["loss_curve"]])
    ax.set(
        xlabel="optimiser step",
        ylabel="training loss (BCE + Dice)",
        title=f"CRIS-R50 at 416 px on {r['device']} ({r['date'][:10]})",
    )
    plt.show()

# %% [markdown]
# ## Train step, inference latency and inference throughput
#
# A *train step* is the engine's own (`refseg_core.engine`): autocast forward, loss, backward, Adam step,
# on random weights (speed does not depend on them). *Latency* is one image (batch 1) in eval mode;
# *throughput* a larger batch. The first call is never timed (it pays for compilation and memory
# growth); the median of several repeats is shown.

# %%
model_rows = [r for r in rows_by_section["models"] if r.get("images_per_s")]
for device in devices:
    rows = [r for r in model_rows if r["device"] == device]
    if not rows:
        continue
    kinds = ["train_step", "inference_latency", "inference_throughput"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, kind in zip(axes, kinds):
        sel = [r for r in rows if r["kind"] == kind]
        models = sorted({r["model"] for r in sel})
        configs = sorted({config_label(r) for r in sel})
        width = 0.8 / max(len(configs), 1)
        for i, c in enumerate(configs):
            vals = [
                next((r["images_per_s"] for r in sel if r["model"] == m and config_label(r) == c), 0)
                for m in models
            ]
            ax.bar([j + i * width for j in range(len(models))], vals, width, label=c)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))], models)
        size = sel[0]["input_size"] if sel else "?"
        batch = sel[0]["batch"] if sel else "?"
        ax.set_title(f"{kind.replace('_', ' ')} (batch {batch}, {size} px)")
        ax.set_ylabel("images / s")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Measured on: {device}", fontsize=10)
    fig.tight_layout()
    plt.show()
    display(
        table(
            sorted(rows, key=lambda r: (r["model"], r["kind"])),
            [
                "model",
                "kind",
                "batch",
                "input_size",
                "precision",
                "channels_last",
                "compile",
                "images_per_s",
                "latency_ms",
                "peak_mem_mib",
                "peak_mem_kind",
                "flops_per_image",
                "mfu",
                "loadavg",
            ],
        )
    )
errors = [r for r in rows_by_section["models"] if r.get("error")]
if errors:
    display(Markdown("Configurations that failed (recorded, not measured):"))
    display(table(errors, ["device", "model", "kind", "precision", "channels_last", "compile", "error"]))

# %% [markdown]
# On CUDA, *peak memory* is `torch.cuda.max_memory_allocated` (what the configuration needs); on a CPU torch
# keeps no such statistic and the rows hold the process's peak resident memory, an upper bound that also
# counts Python, the weights and memory the allocator kept from an earlier configuration. *MFU* (model FLOPs
# utilisation) divides the FLOPs the model does per second (counted with
# `torch.utils.flop_counter.FlopCounterMode`) by the GPU's dense peak at that precision; it is reported
# for GPUs only.
#
# ## Our CRIS against the official code
#
# The official model (DerrickWang005/CRIS.pytorch) is built from its own code, given as a path at run
# time, and loaded with exactly our weights; both train on the same batch in one process. The official
# recipe is fp16 autocast on CUDA, eager, NCHW (on a CPU its autocast does nothing: fp32). *Matched* rows
# use the same precision and no extra switch on our side; the others put our faster settings against the
# official recipe. Targets of issue 7: our train step at least 1.5x the official on a GPU at batch 16-64,
# at least 1.0x on a CPU.

# %%
official = rows_by_section["official"]
skipped = [r for r in official if r.get("skipped")]
measured = [r for r in official if not r.get("skipped")]
for r in skipped:
    display(Markdown(f"*{r['device']}*: official comparison skipped: {r['skipped']}"))
for device in sorted({r["device"] for r in measured}):
    rows = [dict(r, ours=config_label(r)) for r in measured if r["device"] == device]
    target = 1.5 if rows[0]["device_type"] == "cuda" else 1.0
    for r in rows:
        r["meets_target"] = None if r.get("speedup") is None else r["speedup"] >= target
    display(Markdown(f"**Measured on: {device}** (target x{target})"))
    display(
        table(
            rows,
            [
                "model",
                "batch",
                "input_size",
                "ours",
                "official_precision",
                "matched",
                "ours_images_per_s",
                "official_images_per_s",
                "speedup",
                "meets_target",
                "loadavg",
            ],
        )
    )

# %% [markdown]
# ## Data pipeline
#
# Samples per second of `RefSegDataset` through the engine's DataLoader at 416 x 416 (JPEG decode,
# letterbox, mask decode, tokenisation) with N worker processes, on synthetic images of side ~480 like
# COCO's. The target is twice the GPU train-step rate with 8 workers; a CPU-only machine with 2 cores can
# only show 0-2 workers, so the 8-worker number comes from the GPU machine's run.

# %%
data = rows_by_section["data"]
if data:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for device in sorted({r["device"] for r in data}):
        sel = sorted((r for r in data if r["device"] == device), key=lambda r: r["workers"])
        ax.plot([r["workers"] for r in sel], [r["samples_per_s"] for r in sel], "o-", label=device)
    ax.set_xlabel("DataLoader workers")
    ax.set_ylabel("samples / s at 416 px")
    ax.legend(fontsize=7)
    ax.set_title("Data pipeline (each line names the machine)")
    plt.show()
    display(
        table(
            data,
            [
                "device",
                "workers",
                "batch",
                "input_size",
                "image_size",
                "samples_per_s",
                "first_batch_s",
                "ratio_to_train_step",
                "meets_2x_target",
                "loadavg",
            ],
        )
    )

# %% [markdown]
# ## Evaluation throughput
#
# A full `refseg_core.engine.evaluate` pass over ~10k sentences (data loading, model, the official CRIS
# post-processing at the original image size, metrics). On a CPU this uses the tiny model on small generated
# images, so it measures the pipeline's overhead more than a real model.

# %%
display(
    table(
        rows_by_section["eval"],
        [
            "device",
            "model",
            "input_size",
            "batch",
            "workers",
            "sentences",
            "seconds",
            "sentences_per_s",
            "loadavg",
        ],
    )
)

# %% [markdown]
# ## Reading these numbers
#
# * A row measured while the machine's load average exceeded its core count shares the CPU with other
#   work: its absolute value is low; compare rows taken at similar loads.
# * CPU rows say what a switch does on that CPU: bf16 autocast is slow on CPUs without native bf16
#   instructions, and `channels_last` helps only where the convolution library has fast NHWC kernels.
#   Neither tells what the switch does on a GPU.
# * The book's training recipe on a GPU (bf16 autocast, `channels_last`, `torch.compile`) is chosen from the
#   GPU rows, when present.
#
# ## Summary
#
# * Every number on this page comes from the JSON rows committed with the package
#   (`refseg_core/evidence/`, written by `benchmarks/`), and each row names the machine,
#   the torch version, the date and the load it was measured under.
# * The CPU rows compare our CRIS with the official code on the same weights, input and batch; the GPU
#   rows (`make gpu-check`, `python benchmarks/run_gpu.py`) are only shown when a GPU run has been committed.
# * The data pipeline and the evaluation pass are measured separately from the model, so a slow step can
#   be traced to its part.
#
# ## Exercises
#
# 1. Run `make bench` on your machine and re-execute this chapter. Which rows change most, and why?
# 2. On a GPU, run `python benchmarks/run_gpu.py --official-repo PATH`. Does bf16 with `channels_last`
#    beat fp32 for CRIS-R50 at batch 64? By how much does `torch.compile` change the first step?
# 3. Use `benchmarks/flops.py` to count the FLOPs of one LTS train step at 416 and compare them with
#    CRIS-R50's. Which model would you expect to train faster per image, and does the measurement agree?
