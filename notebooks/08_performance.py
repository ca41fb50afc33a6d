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
# {cite}`jing2021lts` and CRIS {cite}`wang2022cris` are with this book's code; what bf16 or fp16
# autocast, the `channels_last` memory format and `torch.compile` change; whether the data pipeline
# keeps up with the model; and how our CRIS compares with the official implementation given the same
# weights, input and batch.
#
# This chapter measures nothing itself: it shows the rows that `benchmarks/` wrote (`make bench` on a
# CPU, `make gpu-check` or `python benchmarks/run_gpu.py` on a CUDA machine; see `benchmarks/README.md`),
# committed with the package in `refseg_core/evidence/` and read through `refseg_core.evidence.rows`.
# **Every table and figure names the machine that produced its numbers**, and every row records the load
# average when it was measured: a CPU row taken while other work shared the machine says little about
# the switch it measures, and nothing about a GPU.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # the release
if "google.colab" in sys.modules:  # in Colab only: install the package, nothing else
    import subprocess

    package = f"refseg_core @ git+{REPO}@{REF}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["parameters"]
results_dir = None  # a folder of <device>_<section>.json rows; None: the committed ones
sections = ["models", "official", "data", "eval"]

# %%
import matplotlib.pyplot as plt

from refseg_core import configs, evidence
from refseg_core.config import read_config_values
from refseg_core.evidence import speed
from refseg_core.evidence.speed import config_label, load
from refseg_core.notebook import show_markdown
from refseg_core.tables import markdown_table

rows_by_section = {s: speed.section_rows(s, results_dir) for s in sections}
check_rows = speed.section_rows("check", results_dir)  # the GPU check at full size
every_row = [r for rows in rows_by_section.values() for r in rows] + check_rows

# %% [markdown]
# The committed files, the machine of each, and the load it was measured under:

# %%
files = {}
for r in every_row:
    files.setdefault(r["file"], []).append(r)
summary = [
    {
        "file": name,
        "device": rows[0]["device"],
        "date": rows[0]["date"][:10],
        "rows": len(rows),
        "load average": f"{min(map(load, rows)):.1f} to {max(map(load, rows)):.1f}",
        "cores": evidence.cpu_cores(rows[0]),
    }
    for name, rows in files.items()
]
show_markdown(markdown_table(summary))
cpu = [r for r in every_row if r["device_type"] == "cpu"]
shared = [r for r in cpu if evidence.cpu_cores(r) and load(r) > evidence.cpu_cores(r)]
print(f"{len(shared)} of {len(cpu)} CPU rows were measured at a load above the cores.")

# %% [markdown]
# ## What the configurations run
#
# The configurations of the papers' table cells (chapter 7) train CRIS with the official recipe: fp16
# autocast with a gradient scaler, in the default NCHW memory format, without `torch.compile`. bf16
# (`precision: bf16`), `channels_last: true` and `compile: true` are named opt-ins, switched on by a
# configuration key or `--set` and measured on this page. LTS has no official code, so its recipe is
# the book's choice. What each shipped configuration sets:

# %%
recipes = {}
for name in configs.names():
    cfg, _ = read_config_values(name)
    key = (cfg["model"].split("_")[0].upper(), cfg.get("precision", "auto"))
    key += (bool(cfg.get("channels_last")), bool(cfg.get("compile")))
    recipes.setdefault(key, []).append(name)
rows = [[*key, ", ".join(names)] for key, names in recipes.items()]
headers = ["model", "precision", "channels_last", "compile", "configurations"]
show_markdown(markdown_table(rows, headers=headers))

# %% [markdown]
# ## The GPU check at full size
#
# `make gpu-check` (`benchmarks/gpu_check.py`) measures, in one short call on a GPU machine: our
# CRIS-R50 train step at 416 px, batch 32, with the bf16 and `channels_last` opt-ins (eager, and with
# `torch.compile`) against the official CRIS with the same weights in its own recipe (fp16 autocast with
# a gradient scaler, eager, NCHW), timed in alternating rounds in one process; LTS at the same size; a
# short training run of CRIS-R50 from random weights on the synthetic set at 416 px; evaluation
# throughput; and the data loader with 8 workers. MFU divides the model's counted FLOPs by the GPU's
# dense bf16 (or fp16) peak. The speed targets are the book's: our train step at least 1.5 times the
# official one on a GPU, at least as fast on a CPU, and a data loader at least twice the train step.


# %%
if check_rows:
    table = [dict(r, result=speed.describe(r), load=load(r)) for r in check_rows]
    for r in table:
        r["date"] = r["date"][:10]
    columns = ["part", "result", "device", "torch", "date", "load"]
    show_markdown(markdown_table(table, columns))
    for r in check_rows:
        if speed.verdict(r):
            print(f"{r['part']}: {speed.verdict(r)}")
else:
    print("no GPU check rows are committed")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Training loss of CRIS-R50 from random weights at 416 px in the GPU check, against the optimiser step (one line per committed run, labelled with its machine and date). The loss falls fast over the first few dozen steps, then slowly; a run that the check's time limit stopped has no validation score, because a score cut off by the clock would depend on the machine's speed.", "name": "fig-perf-gpu-loss"}}
runs = [r for r in check_rows if r["kind"] == "training_run" and r.get("loss_curve")]
if runs:
    fig, ax = plt.subplots(figsize=(6, 3))
    for r in runs:
        steps = [p["step"] for p in r["loss_curve"]]
        label = f"{r['device']}, {r['date'][:10]}"
        ax.plot(steps, [p["loss"] for p in r["loss_curve"]], label=label)
    ax.set(xlabel="optimiser step", ylabel="training loss (BCE + Dice)")
    ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Train step, inference latency and inference throughput
#
# A *train step* is the engine's own (`refseg_core.engine`): autocast forward, loss, backward, Adam step,
# on random weights (speed does not depend on them). *Latency* is one image (batch 1) in eval mode;
# *throughput* a larger batch. The first call is never timed (it pays for compilation and memory
# growth); the median of several repeats is shown.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Images per second of the train step, the one-image latency and the batched throughput of each model, by precision and memory layout (+cl: channels_last), one row of panels per machine with committed rows. The CPU rows were measured while other work shared the machine (see the load column of the tables below), so a difference between two bars of one model may come from the load rather than the switch.", "name": "fig-perf-models"}}
model_rows = [r for r in rows_by_section["models"] if r.get("images_per_s")]
devices = sorted({r["device"] for r in model_rows})
kinds = ["train_step", "inference_latency", "inference_throughput"]
if devices:
    n = len(devices) * len(kinds)
    fig, axes = plt.subplots(n, 1, figsize=(7, 2.3 * n), squeeze=False)
    panels = [(d, k) for d in devices for k in kinds]
    for ax, (device, kind) in zip(axes[:, 0], panels):
        sel = [r for r in model_rows if r["device"] == device and r["kind"] == kind]
        models = sorted({r["model"] for r in sel})
        labels = sorted({config_label(r) for r in sel})
        width = 0.8 / max(len(labels), 1)
        for i, c in enumerate(labels):
            rate = {r["model"]: r["images_per_s"] for r in sel if config_label(r) == c}
            xs = [j + i * width for j in range(len(models))]
            ax.bar(xs, [rate.get(m, 0) for m in models], width, label=c)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))], models)
        size = f"batch {sel[0]['batch']}, {sel[0]['input_size']} px" if sel else ""
        ax.set_title(f"{kind.replace('_', ' ')} ({size}) on {device}", fontsize=9)
        ax.set_ylabel("images / s")
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# The same rows as numbers, machine by machine: speed first, then memory and FLOPs.

# %%
short = {"inference_latency": "latency", "inference_throughput": "throughput"}
for r in model_rows:
    r.update(config=config_label(r), load=load(r), what=short.get(r["kind"], r["kind"]))
    r["GFLOPs"] = r["flops_per_image"] / 1e9 if r.get("flops_per_image") else None
speed_columns = ["model", "what", "batch", "input_size", "config", "images_per_s", "latency_ms"]
speed_headers = ["model", "kind", "batch", "px", "config", "img/s", "ms", "load"]
memory = ["model", "what", "config", "peak_mem_mib", "peak_mem_kind", "GFLOPs", "mfu"]
memory_headers = ["model", "kind", "config", "peak MiB", "peak of", "GFLOPs", "MFU"]
for device in devices:
    rows = [r for r in model_rows if r["device"] == device]
    rows.sort(key=lambda r: (r["model"], r["kind"]))
    show_markdown(f"**Measured on: {device}**")
    show_markdown(markdown_table(rows, speed_columns + ["load"], speed_headers))
    show_markdown(markdown_table(rows, memory, memory_headers))
errors = [r for r in rows_by_section["models"] if r.get("error")]
if errors:
    print("configurations that failed (recorded, not measured):")
    columns = ["device", "model", "kind", "config", "error"]
    failed = [dict(r, config=config_label(r)) for r in errors]
    show_markdown(markdown_table(failed, columns))

# %% [markdown]
# On CUDA, *peak memory* is `torch.cuda.max_memory_allocated` (what the configuration needs); on a CPU
# torch keeps no such statistic and the rows hold the process's peak resident memory, an upper bound that
# also counts Python, the weights and memory the allocator kept from an earlier configuration. *MFU*
# (model FLOPs utilisation) divides the FLOPs the model does per second (counted with
# `torch.utils.flop_counter.FlopCounterMode`; GFLOPs per image above) by the GPU's dense peak at that
# precision; it is reported for GPUs only.
#
# ## Our CRIS against the official code
#
# The official model (DerrickWang005/CRIS.pytorch) is built from its own code, given as a path at run
# time, and loaded with exactly our weights; both train on the same batch in one process. The official
# recipe is fp16 autocast on CUDA, eager, NCHW (on a CPU its autocast does nothing: fp32). *Matched* rows
# use the same precision and no extra switch on our side. Each ratio is judged against its target with
# a margin of `refseg_core.verdicts.SPEED_MARGIN` (the spread of one configuration's timing rounds on
# the GPU), and not at all when the machine was shared:

# %%
official = rows_by_section["official"]
for r in official:
    if r.get("skipped"):
        print(f"{r['device']}: official comparison skipped: {r['skipped']}")
ran = [r for r in official if not r.get("skipped")]
measured = [dict(r, ours=config_label(r), load=load(r)) for r in ran]
columns = ["device", "model", "batch", "input_size", "ours", "official_precision"]
columns += ["matched", "ours_images_per_s", "official_images_per_s", "speedup", "load"]
if measured:
    show_markdown(markdown_table(measured, columns))
for r in measured:
    print(f"{r['device']}, batch {r['batch']}: {speed.verdict(r)}")

# %% [markdown]
# ## Data pipeline
#
# Samples per second of `RefSegDataset` through the engine's DataLoader at 416 x 416 (JPEG decode,
# letterbox, mask decode, tokenisation) with N worker processes, on synthetic images of side about 480
# like COCO's. A 2-core machine can only show 0 to 2 workers; the 8-worker rate, and its ratio to the
# train step, comes from the GPU check above.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Data pipeline rate against the number of DataLoader workers, one line per machine. On the shared 2-core CPU, worker processes are slower than loading in the main process: both cores are already busy with other work (see the load column below).", "name": "fig-perf-data"}}
data = rows_by_section["data"]
if data:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for device in sorted({r["device"] for r in data}):
        sel = [r for r in data if r["device"] == device]
        sel.sort(key=lambda r: r["workers"])
        rate = [r["samples_per_s"] for r in sel]
        ax.plot([r["workers"] for r in sel], rate, "o-", label=device)
    ax.set_xticks(sorted({r["workers"] for r in data}))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("DataLoader workers")
    ax.set_ylabel("samples / s at 416 px")
    ax.legend(fontsize=7)
    plt.tight_layout()
    plt.show()

# %%
for r in data:
    r["load"] = load(r)
columns = ["device", "workers", "batch", "input_size", "image_size", "samples_per_s"]
columns += ["first_batch_s", "load"]
show_markdown(markdown_table(data, columns))

# %% [markdown]
# ## Evaluation throughput
#
# A full `refseg_core.engine.evaluate` pass over about 10,000 sentences (data loading, model, the
# official CRIS post-processing at the original image size, metrics). On a CPU this uses the tiny model on
# small generated images, so it measures the pipeline's overhead more than a real model.

# %%
evals = [dict(r, load=load(r)) for r in rows_by_section["eval"]]
columns = ["device", "model", "input_size", "batch", "workers", "sentences", "seconds"]
columns += ["sentences_per_s", "load"]
show_markdown(markdown_table(evals, columns))

# %% [markdown]
# ## Reading these numbers
#
# * A row measured while the machine's load average exceeded its core count shared the CPU with other
#   work: its absolute value is low, and a difference between two such rows may be the load. The
#   verdicts above say "cannot tell" for them.
# * CPU rows say what a switch does on that CPU: bf16 autocast is slow on CPUs without native bf16
#   instructions, and `channels_last` is faster only where the convolution library has fast NHWC
#   kernels. Neither tells what the switch does on a GPU.
# * The GPU check compares our opt-ins (bf16, `channels_last`, `torch.compile`) with the official fp16
#   recipe; the CRIS configurations of the papers' cells keep the official recipe, so a reproduction run
#   is comparable with the paper's, and a faster one is a key away.
#
# ## Summary
#
# * Every number on this page comes from the JSON rows committed with the package
#   (`refseg_core/evidence/`, written by `benchmarks/`), and each row names the machine, the torch
#   version, the date and the load it was measured under.
# * Speed verdicts apply a margin and are withheld for rows measured on a shared machine.
# * The data pipeline and the evaluation pass are measured apart from the model, so a slow step can be
#   traced to its part.
#
# ## Exercises
#
# 1. Run `make bench` on a quiet machine of your own (nothing else running) and execute this chapter
#    again. Which verdicts change?
#
# ```{dropdown} Solution
# `make bench` rewrites the `cpu_*.json` rows in `refseg_core/evidence/`. Measured at a load below the
# core count, the CPU comparison with the official code gets a verdict instead of "cannot tell": a ratio
# more than 10 % above 1.0 counts as reaching the target, one more than 10 % below as falling short,
# and anything in between stays "cannot tell". Absolute rates change with the CPU; the effect of `channels_last`
# depends on whether its convolution library has fast NHWC kernels.
# ```
#
# 2. For each model, compute the ratio of its `channels_last` train step to its NCHW one from
#    `model_rows` and judge it against 1.0 with `speed.speed_verdict`. For which models can this page
#    tell?
#
# ````{dropdown} Solution
# ```python
# for model in sorted({r["model"] for r in model_rows}):
#     steps = {r["config"]: r for r in model_rows
#              if r["model"] == model and r["kind"] == "train_step"}
#     if "fp32" in steps and "fp32 +cl" in steps:
#         ratio = steps["fp32 +cl"]["images_per_s"] / steps["fp32"]["images_per_s"]
#         what = f"{model} with channels_last"
#         print(speed.speed_verdict(ratio, 1.0, what, steps["fp32 +cl"]))
# ```
#
# With the committed CPU rows, for none: every one was measured at a load above the core count, so each
# verdict is "cannot tell". The wide spread of the ratios between models (some far above 1, some far
# below) is itself a sign that the load, not the memory format, moved them.
# ````
#
# 3. The GPU check's LTS row gives `flops_per_image`, `images_per_s` and the GPU's `peak_tflops`.
#    Compute its MFU from them. Does it equal the row's `mfu`?
#
# ````{dropdown} Solution
# ```python
# lts = next(r for r in check_rows if r["kind"] == "train_step" and r["model"] == "lts")
# print(lts["flops_per_image"] * lts["images_per_s"] / (lts["peak_tflops"] * 1e12), lts["mfu"])
# ```
#
# They agree: MFU is FLOPs per image times images per second over the dense peak. A low MFU means
# the step spends its time on memory traffic, small kernels and Python overhead, not on arithmetic.
# ````
