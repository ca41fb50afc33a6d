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
# # 5. Training: mixed precision, DDP and the CRIS recipe
#
# **What you will learn.** How one training step is made cheaper on a GPU (bf16 autocast, or fp16 with a
# gradient scaler; the `channels_last` memory format); how data-parallel training with `torchrun` splits
# the work (`DistributedSampler`, the global versus the per-process batch, SyncBatchNorm, NCCL versus
# gloo); the official training recipe of CRIS {cite}`wang2022cris` and what this book changed in it and
# why; and what a checkpoint must hold for a run to resume *exactly* after it was stopped.
#
# The chapter then trains both models of the book, CRIS and LTS {cite}`jing2021lts`, through one function,
# `refseg_core.engine.train`. By default it runs the *smoke* configuration: the synthetic dataset of
# chapter 1, tiny model widths, a CPU, a few minutes. The same notebook runs the full recipe on a GPU when
# papermill gives it a full parameter file (see "Running it for real" below). Every number printed here is
# measured when the notebook runs, on the device it names.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # this book's release of refseg_core
if "google.colab" in sys.modules:  # in Colab only: install the package (nothing else is downloaded)
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", f"refseg_core @ git+{REPO}@{REF}"], check=True
    )

# %% tags=["parameters"]
config = "smoke_cris"  # the CRIS run: a configuration shipped with refseg_core, or a YAML file
overrides = {}  # TrainConfig fields that replace the configuration's values, e.g. {"data_root": "/data/refer"}
lts_config = "smoke_lts"  # the second model, trained the same way; None skips it
lts_overrides = {}
dry_run = False  # print the resolved configuration(s) and stop before training

# %%
import inspect
import math
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from matplotlib.ticker import MaxNLocator
from torch.utils.data import DistributedSampler

from refseg_core import configs, engine, smoke
from refseg_core.config import load_config, make_config
from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.engine import distributed as distu
from refseg_core.engine.checkpoint import atomic_torch_save
from refseg_core.notebook import finish_dry_run, resolve_config, show_source
from refseg_core.viz import curves

# The same function as `python -m refseg_core train --config`: the same name and overrides, the same run.
cris_config = resolve_config(config, overrides, dry_run, label=f"config: {config}")
lts_run = (
    resolve_config(lts_config, lts_overrides, dry_run, label=f"lts_config: {lts_config}")
    if lts_config is not None
    else None
)
finish_dry_run(dry_run)

# %%
# A dependency imports tqdm.auto, which warns that Jupyter widgets are missing; the book needs none.
warnings.filterwarnings("ignore", message="IProgress not found")
published = configs.published()
full_recipe = load_config("cris_r50_refcoco")  # the paper-cell configuration: every field, defaults included
run_device = distu.resolve_device(cris_config.device, distu.env_info())
kind = "synthetic" if cris_config.synthetic else "real"
print(
    f"CRIS run: {cris_config.model} on {cris_config.dataset} ({kind} data), {cris_config.epochs} epochs, "
    f"batch {cris_config.batch_size}, precision {cris_config.precision}, device {run_device}"
)
if lts_run is not None:
    print(
        f"LTS run:  {lts_run.model}, {lts_run.epochs} epochs, batch {lts_run.batch_size}, "
        f"precision {lts_run.precision}"
    )

# %% [markdown]
# ## The official recipe, and what this book changed
#
# The CRIS paper trains for 50 epochs with Adam and a step decay, at $416\times416$, on several GPUs. The
# official repository (DerrickWang005/CRIS.pytorch) fixes the details in `config/refcoco/cris_r50.yaml`
# and `train.py`. We keep those values *as data* here, labelled with where they come from, and read ours
# from the configuration the full run uses, `cris_r50_refcoco`:

# %%
# The official CRIS.pytorch config/refcoco/cris_r50.yaml and train.py.
OFFICIAL_CRIS = {
    "optimizer": "Adam",
    "lr": 1e-4,
    "backbone_lr_mult": 0.1,
    "weight_decay": 0.0,
    "epochs": 50,
    "milestones": [35],
    "lr_gamma": 0.1,
    "warmup_steps": 0,
    "grad_clip": None,  # max_norm: 0
    "batch_size": 64,  # global: train.py divides it by the number of GPUs
    "input_size": 416,
    "word_len": 17,
    "precision": "fp16",  # torch.cuda.amp autocast + GradScaler; engine.train adds the scaler for fp16
    "channels_last": False,
    "sync_bn": True,
    "official_lr_quirk": True,  # what the code does, see below
    "val_first_sentence_only": True,
    "eval_threshold": 0.35,
}
ours = full_recipe.to_dict()
ours["optimizer"] = "Adam (engine.train)"
rows = [
    "| parameter | official CRIS (config/refcoco/cris_r50.yaml, train.py) | this book (cris_r50_refcoco) | |",
    "|---|---|---|---|",
]
for key, official in OFFICIAL_CRIS.items():
    mine = ours[key]
    same = mine == official or (key == "optimizer" and str(mine).startswith(official))
    rows.append(f"| `{key}` | {official} | {mine} | {'same' if same else '**changed**'} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# Beyond these values, the official training script has properties that users of it keep running into
# (the issues of DerrickWang005/CRIS.pytorch cited below). What we did about each, and why:
#
# | official code | this book | why |
# |---|---|---|
# | `mp.spawn` over every visible GPU; only multi-GPU DDP works (issue #22) | `python -m refseg_core train` on one GPU or CPU, `torchrun` for many; the same code | most readers have one GPU |
# | `wandb.login` with a key, online mode (issue #23) | `log.csv`, TensorBoard events and `metrics.json` in `output_dir` | training must not need an account or a network |
# | data converted to LMDB with `pyarrow.serialize`, removed from pyarrow (issues #20, #25) | the REFER files are read directly (chapter 1) | the official data preparation no longer runs |
# | `torch.save` straight to the target file; no RNG or scaler state | `atomic_torch_save` (temporary file, `fsync`, `os.replace`) with RNG, scaler and position inside the epoch | a crash while saving must not destroy the last good checkpoint; a resumed run must continue exactly |
# | no signal handling | SIGINT / SIGTERM finish the step, write a checkpoint, exit with status 128 + signal | clusters pre-empt jobs with SIGTERM |
# | epoch 1 trains the backbone at the full lr (quirk (a)) | reproduced: `official_lr_quirk: true` in every `cris_*` configuration | a reproduction runs what the official code runs; `--set official_lr_quirk=false` is the opt-in for the paper's stated $\times0.1$ from the first epoch |
# | fp16 autocast + GradScaler, NCHW | the same in every `cris_*` configuration (`precision: fp16`, `channels_last: false`) | opt-in speed-ups, named: `precision: bf16` (no loss scaling; Ampere and later) and `channels_last: true` (memory layout only); chapter 8 shows what they buy on a GPU, measured against the official step |
# | `token_embedding.requires_grad_ = False` is an assignment, so the token embedding trains (quirk (b)) | trains too (`freeze_token_embedding: false`, the default) | the smoke configuration freezes it, named in `smoke_cris`, to halve the CPU step time |
# | best checkpoint chosen on a test split for RefCOCO+ (quirk (c)) | only `last.pt`; evaluation on every split is a separate step (chapter 6) | no selection on test data |
#
# **The learning-rate quirk.** The official parameter groups carry only `initial_lr`; `Adam(params,
# lr=1e-4)` then gives *every* group $10^{-4}$, and the scheduler only switches the backbone to its
# $\times0.1$ rate after the first epoch. `engine.official_epoch_lrs` writes that rule down; next to it,
# the schedule `engine.train` runs — `engine.build_optimizer` (Adam over `model.param_groups`,
# `MultiStepLR`, the optional warm-up) and `engine.end_epoch` after each epoch, here through
# `engine.lr_by_epoch` — both for the full recipe's values. With `official_lr_quirk: true` the same two
# functions give the official rates (checked below).

# %%
_probe_cfg = make_config(dict(cris_config.to_dict(), pretrained=None))  # no weights needed for a schedule
probe_refer = engine.prepare_data(_probe_cfg)
probe_model = engine.build_model_for(_probe_cfg, probe_refer)
groups = probe_model.param_groups(full_recipe.lr, full_recipe.backbone_lr_mult)
ours_by_epoch = dict(enumerate(engine.lr_by_epoch(full_recipe, probe_model), start=1))
quirk_by_epoch = dict(
    enumerate(
        engine.lr_by_epoch(make_config(dict(full_recipe.to_dict(), official_lr_quirk=True)), probe_model),
        start=1,
    )
)
names = [g.get("name", str(i)) for i, g in enumerate(groups)]
show = sorted({1, 2, *full_recipe.milestones, *(m + 1 for m in full_recipe.milestones), full_recipe.epochs})
rows = [
    "| epoch | " + " | ".join([f"official {n}" for n in names] + [f"ours {n}" for n in names]) + " |",
    "|---" * (1 + 2 * len(names)) + "|",
]
for e in range(1, full_recipe.epochs + 1):
    off = engine.official_epoch_lrs(groups, e, full_recipe.lr, full_recipe.milestones, full_recipe.lr_gamma)
    assert all(math.isclose(a, b) for a, b in zip(off, quirk_by_epoch[e])), e  # official_lr_quirk: true
    if e in show:
        rows.append(
            f"| {e} | "
            + " | ".join(f"{v:.0e}" for v in off)
            + " | "
            + " | ".join(f"{v:.0e}" for v in ours_by_epoch[e])
            + " |"
        )
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Mixed precision
#
# A GPU multiplies 16-bit numbers several times faster than 32-bit ones and moves half the bytes.
# *Autocast* runs the operations that profit (convolutions, matrix products) in a 16-bit type and keeps
# the ones that need range or accumulate error (reductions, softmax, the loss) in fp32; the weights and
# the optimiser state stay fp32. There are two 16-bit types:
#
# * **fp16** has 5 exponent bits: its largest value is 65504 and gradients smaller than about $6\times10^{-8}$
#   become 0. So the loss is multiplied by a scale $S$ before `backward` (gradients $\times S$ stay
#   representable), the gradients are divided by $S$ before the optimiser step, and a step whose gradients
#   overflowed is skipped while $S$ is halved. That is `GradScaler`, and it is what the official CRIS code
#   does.
# * **bf16** keeps fp32's 8 exponent bits (same range) with only 7 mantissa bits: no scaling is needed,
#   at the price of coarser values. It is native on NVIDIA Ampere (A100, RTX 30xx) and later.
#
# `engine.train` picks the type from `precision` (`auto` = bf16 on CUDA, fp32 on CPU); the scaler is
# created for every run but only *enabled* for fp16, so the step is one code path:

# %%
for fn in (engine.amp_dtype, engine.autocast, engine.train_step, engine.backward_step):
    print(inspect.getsource(fn))

# %% [markdown]
# **`channels_last`.** A `(B, C, H, W)` tensor is normally stored with the `W` index varying fastest
# ("NCHW"). `channels_last` keeps the same shape but stores the `C` values of one pixel next to each other
# ("NHWC"), the layout GPU convolution kernels (Tensor Cores) read best; a model converted with
# `model.to(memory_format=torch.channels_last)` keeps its weights that way, and `train_step` converts each
# batch. On a CPU the gain, if any, depends on the oneDNN kernels.
#
# **Measured here.** A few optimiser steps of the CRIS model of this run, through the engine's own
# `train_step` and `backward_step`, with each setting. The numbers come from *this* machine: on a CPU
# (where the smoke run is) they say nothing about a GPU — many CPUs have no fast bf16 arithmetic, and a
# shared CPU makes timings noisy. Chapter 8 collects careful benchmarks, GPU ones included.

# %%
dev = run_device
timing_batch = 4 if dev.type == "cpu" else min(cris_config.batch_size, 16)
train_ds = RefSegDataset(
    probe_refer,
    cris_config.train_split,
    probe_model.tokenizer,
    cris_config.input_size,
    train=True,
    seed=cris_config.seed,
)
batch = collate([train_ds[i] for i in range(timing_batch)])
variants = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
if dev.type == "cuda":
    variants += [("fp16", False), ("fp16", True)]


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def make_stepper(prec: str, channels_last: bool):
    """One optimiser step of a fresh model with these settings, through the engine's own functions."""
    cfg = make_config(dict(_probe_cfg.to_dict(), precision=prec, channels_last=channels_last))
    torch.manual_seed(0)
    m = engine.build_model_for(cfg, probe_refer).to(dev)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    loss_module = engine.LossModule(m, cfg.dice_weight)
    optimizer, _, _ = engine.build_optimizer(cfg, m)  # the run's Adam and parameter groups
    scaler = torch.amp.GradScaler(dev.type, enabled=prec == "fp16")
    amp = engine.amp_dtype(prec, dev)

    def step() -> tuple[float, float]:
        sync()
        t0 = time.perf_counter()
        out = engine.train_step(loss_module, batch, dev, amp, channels_last=cfg.channels_last)
        engine.backward_step(out, loss_module, optimizer, scaler, cfg)
        sync()
        return time.perf_counter() - t0, float(out["loss"].detach())

    return step


steppers = {v: make_stepper(*v) for v in variants}
for step in steppers.values():
    step()  # warm-up: first-call allocations and kernel selection
# Interleaved rounds, and the fastest of them: other programs on a shared machine slow single steps
# down, never up, so the minimum is the least disturbed estimate.
samples = {v: [] for v in variants}
for _ in range(3):
    for v, step in steppers.items():
        samples[v].append(step())
timings = {v: (min(t for t, _ in s), s[-1][1]) for v, s in samples.items()}
del steppers
base_t = timings[("fp32", False)][0]
load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if dev.type == "cpu" else ""
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
rows = [
    f"Device: **{name}**{load}; model {cris_config.model}, batch {timing_batch}, "
    f"input {cris_config.input_size}.\n",
    "| precision | channels_last | s / step (fastest of 3) | relative to fp32 | loss after 4 steps |",
    "|---|---|---|---|---|",
]
for (prec, cl), (t, loss) in timings.items():
    rows.append(f"| {prec} | {cl} | {t:.3f} | {t / base_t:.2f}x | {loss:.4f} |")
fastest = min(timings, key=lambda v: timings[v][0])
rows.append(
    f"\nOn this {name}, the fastest setting measured was **{fastest[0]}"
    f"{' + channels_last' if fastest[1] else ''}**; bf16 without channels_last took "
    f"{timings[('bf16', False)][0] / base_t:.2f}x the fp32 time."
)
display(Markdown("\n".join(rows)))

# %% [markdown]
# The losses differ between precisions: the same initial weights and batch, four steps computed with
# fewer bits.
#
# ## Data parallelism: DDP and torchrun
#
# With $W$ GPUs, *distributed data parallel* (DDP) runs $W$ processes, one per GPU, each holding a full
# copy of the model. Every step each process takes its own part of the batch, computes its gradients, and
# DDP averages the gradients across processes (an all-reduce, overlapped with the backward pass) so that
# every copy applies the same update. `torchrun --nproc_per_node W` starts the processes and gives each
# `RANK`, `LOCAL_RANK` and `WORLD_SIZE`; `refseg_core.engine.distributed` reads them and opens the process group:

# %%
show_source(distu.setup)

# %% [markdown]
# * **NCCL or gloo.** NCCL moves CUDA tensors GPU to GPU (NVLink, InfiniBand); gloo works on CPU tensors.
#   The engine takes NCCL on CUDA and gloo on CPU, which is how the test suite runs real two-process DDP on
#   a laptop (`tests/test_ddp.py`).
# * **`DistributedSampler`** gives each rank a disjoint share of one permutation of the data (the same
#   permutation on every rank, seeded by the epoch through `set_epoch`). With `drop_last=True`, as in the
#   engine, the tail that does not divide evenly is dropped; otherwise indices are repeated to pad. For ten
#   samples over four ranks:

# %%
for drop_last in (True, False):
    shares = [
        list(DistributedSampler(range(10), num_replicas=4, rank=r, shuffle=False, drop_last=drop_last))
        for r in range(4)
    ]
    print(f"drop_last={drop_last}: " + "  ".join(f"rank {r}: {s}" for r, s in enumerate(shares)))

# %% [markdown]
# * **Global and per-rank batch.** In this book (as in the official code) `batch_size` is the *global*
#   batch: each of $W$ ranks loads `batch_size / W`. The optimiser then sees the same batch, and the same
#   number of steps per epoch, on 1 GPU or 8, so the learning rate needs no change. For the full recipe on
#   RefCOCO (training refs from `refseg_core.configs.published()`):

# %%
n_train = published["datasets"][full_recipe.dataset]["refs"]["train"]
rows = ["| GPUs (W) | per-rank batch | global batch | steps per epoch |", "|---|---|---|---|"]
for w in (1, 2, 4, 8):
    bs = full_recipe.batch_size
    rows.append(f"| {w} | {bs // w} | {bs} | {n_train // bs:,} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# * **SyncBatchNorm.** BatchNorm normalises with the mean and variance *of the batch it sees*. Under DDP
#   each rank sees only its share — 8 samples per GPU at $W=8$ — so its statistics are noisier than those
#   of the 64 the recipe means. `nn.SyncBatchNorm` all-reduces the statistics across ranks in every
#   forward pass. The engine converts the model when `sync_bn: true` and the run is distributed on CUDA.
#   The conversion itself needs no process group:

# %%
n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in probe_model.modules())
converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(probe_model)
n_sync = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
print(
    f"{cris_config.model}: {n_bn} BatchNorm layers; "
    f"after convert_sync_batchnorm, {n_sync} SyncBatchNorm layers"
)
del probe_model, converted

# %% [markdown]
# ## Running it for real
#
# The smoke run below and a full reproduction are the same code with a different configuration. From the
# command line (`python -m refseg_core train` reads the same configurations as this chapter; `--dry-run`
# prints the resolved one and stops):
#
# ```bash
# # one GPU (or the CPU): batch_size is the global batch, all of it on this process
# python -m refseg_core train --config cris_r50_refcoco --set data_root=/data/refer
# # eight GPUs on one machine: eight processes, 64 / 8 = 8 samples each, NCCL, SyncBatchNorm
# torchrun --nproc_per_node 8 -m refseg_core train --config cris_r50_refcoco --set data_root=/data/refer
# # continue a run that was stopped (pre-empted, Ctrl-C, time limit)
# torchrun --nproc_per_node 8 -m refseg_core train --resume ~/refseg-book/runs/cris_r50_refcoco/last.pt
# ```
#
# or this notebook, with papermill, on a GPU machine (both models, the full recipe):
#
# ```bash
# papermill notebooks/05_training.ipynb 05_training_full.ipynb -p config cris_r50_refcoco \
#     -p lts_config lts_refcoco -y "{overrides: {data_root: /data/refer}, lts_overrides: {data_root: /data/refer}}"
# ```
#
# Runs and generated data go under the *refseg home*, `$REFSEG_HOME` (default `~/refseg-book`): the
# configurations name `runs/<name>` and `data/...` relative to it, so the command line and papermill,
# started from any folder, write the same run. Paths you pass yourself are taken as given.
#
# The full-scale numbers to compare with, from the papers (`refseg_core.configs.published()`; each with its metric —
# chapter 2 explains why CRIS's mIoU and LTS's oIoU are not the same quantity):

# %%
target = full_recipe if cris_config.synthetic else cris_config  # a real run: its own dataset and split
methods = ("CRIS-R101" if target.model == "cris_r101" else "CRIS-R50", "CRIS", "LTS")
rows = ["| method | source | metric | dataset | split | value (%) |", "|---|---|---|---|---|---|"]
for r in published["results"]:
    same_cell = (r["dataset"], r["split"]) == (target.dataset, target.val_split)
    if same_cell and r["method"] in methods:
        rows.append(
            "| "
            + " | ".join(str(r[k]) for k in ("method", "source", "metric", "dataset", "split"))
            + f" | {r['value']:.2f} |"
        )
display(Markdown("\n".join(rows)))
if cris_config.synthetic:
    display(
        Markdown("This run uses the **synthetic** dataset: its scores below are not comparable with these.")
    )

# %% [markdown]
# ## Training CRIS
#
# `engine.train` takes the configuration (a `TrainConfig` or a plain dict of its fields), prepares the data
# (generating the synthetic set if needed), builds the model with `build_model`, and runs the loop:
# Adam over `model.param_groups`, an optional linear warm-up over the first steps, `MultiStepLR` per epoch,
# validation on the first sentence of each validation ref after every epoch (as the official code does),
# and `last.pt` after every epoch. Progress is printed as plain lines. The smoke runs are fixed in epochs
# and seeded, so the same commit prints the same numbers on an idle or a busy machine (up to float rounding
# between thread counts). `time_limit_s`, a stop after that many seconds, exists for users' own runs; the
# book's configurations do not set it, because a run cut by the clock would publish a half-trained model.

# %%
result_cris = engine.train(cris_config, progress=True, overwrite=True)  # replaces a previous build's run
print(f"trained in {result_cris.train_time_s:.0f} s; checkpoint {result_cris.checkpoint}")

# %% [markdown]
# ## Training LTS
#
# The same function trains LTS from its own parameter file; only the model and its optimisation settings
# differ.

# %%
result_lts = engine.train(lts_run, progress=True, overwrite=True) if lts_run is not None else None
if result_lts is not None:
    print(f"trained in {result_lts.train_time_s:.0f} s; checkpoint {result_lts.checkpoint}")

# %% [markdown]
# ## Curves
#
# The loss every `log_every` steps (the mean over those steps) and the learning rate, which shows the
# warm-up and the step decay:

# %%
runs = {"CRIS": result_cris, **({"LTS": result_lts} if result_lts is not None else {})}
step_rows = {n: [r for r in res.history if "images_per_s" in r] for n, res in runs.items()}
epoch_rows = {n: [r for r in res.history if "val_mIoU" in r] for n, res in runs.items()}

fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4.2 * (len(runs) + 1), 3.2))
for ax, (n, rows_) in zip(axes, step_rows.items()):
    curves(ax, rows_, ["loss"], title=f"{n} ({runs[n].config.model}): training loss")
    ax.set_ylabel("loss (mean over log_every steps)")
for n, rows_ in step_rows.items():
    axes[-1].plot([r["step"] for r in rows_], [r["lr"] for r in rows_], label=f"{n} ({runs[n].config.model})")
axes[-1].set_yscale("log")
axes[-1].set_xlabel("step")
axes[-1].set_title("learning rate (head group)", fontsize=10)
axes[-1].grid(alpha=0.3)
axes[-1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Validation after every epoch, both averages of chapter 2, with the best language-blind baseline (the
# largest object of the image, or the whole image) as a dotted line:


# %%
def baselines_of(res):
    """The trivial baselines on the validation sentences the run was scored on."""
    if "baselines" in res.extra:
        return res.extra["baselines"]
    cfg = res.config
    return engine.trivial_baselines(
        engine.prepare_data(cfg),
        cfg.val_split,
        cfg.max_eval_items,
        first_sentence_only=cfg.val_first_sentence_only,
    )


baselines = {n: baselines_of(res) for n, res in runs.items()}
fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.4), squeeze=False)
for ax, (n, rows_) in zip(axes[0], epoch_rows.items()):
    # x in epochs trained: a validation forced by time_limit_s falls inside an epoch, not at its end.
    steps_per_epoch = max(r["step"] / r["epoch"] for r in rows_)
    x = [r["step"] / steps_per_epoch for r in rows_]
    for key, style in (("val_mIoU", "-o"), ("val_oIoU", "--s")):
        ax.plot(x, [100 * r[key] for r in rows_], style, ms=3, label=key[4:])
    best_name, best = max(baselines[n].items(), key=lambda kv: kv[1]["mIoU"])
    ax.axhline(100 * best["mIoU"], color="grey", ls=":", label=f"{best_name} (mIoU)")
    ax.set_xlabel("epochs trained")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(f"{n} ({runs[n].config.model}): validation", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Did it learn?
#
# The final validation metrics next to the two baselines that never read the expression: the whole image,
# and the largest annotated object of the image (which even uses the ground-truth instance masks). A model
# that learned to read the expression must beat both by a clear margin. The book's bars for the smoke
# runs (`refseg_core.smoke.BARS`, which `make test-book` also checks): validation mIoU of at least 50 %
# for LTS and 45 % for CRIS, *and* at least 15 points above the best baseline, within 4 (LTS) and 6
# (CRIS) minutes of training on a 2-core CPU.

# %%
keys = ["mIoU", "oIoU", "prec@0.5", "prec@0.7", "prec@0.9"]
rows = ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
for n, res in runs.items():
    rows.append(
        f"| **{n}** ({res.config.model}) | " + " | ".join(f"{100 * res.metrics[k]:.2f}" for k in keys) + " |"
    )
for b, m in baselines["CRIS"].items():
    rows.append(f"| baseline: {b} | " + " | ".join(f"{100 * m[k]:.2f}" for k in keys) + " |")
display(Markdown("\n".join(rows)))

verdicts = []
config_names = {"CRIS": config, "LTS": lts_config}
for n, res in runs.items():
    miou = res.metrics["mIoU"]
    best_name, best = max(baselines[n].items(), key=lambda kv: kv[1]["mIoU"])
    bar = smoke.BARS.get(config_names[n])
    missed = (
        smoke.misses(config_names[n], {**res.metrics, "baselines": baselines[n]}, res.train_time_s)
        if bar
        else None
    )
    verdicts.append(
        f"* **{n}**: validation mIoU {100 * miou:.1f} %, {100 * (miou - best['mIoU']):+.1f} points against the "
        f"best baseline ({best_name}, {100 * best['mIoU']:.1f} %), after {len(epoch_rows[n])} validations and "
        f"{res.history[-1]['step']} steps in {res.train_time_s:.0f} s — "
        + (
            "no smoke bar for this configuration."
            if bar is None
            else "it **meets** its bar."
            if not missed
            else f"it **misses** its bar: {'; '.join(missed)}."
        )
    )
display(Markdown("\n".join(verdicts)))

# %% [markdown]
# ### Why the tiny CRIS learns more slowly on these images
#
# CRIS was designed for $416\times416$ inputs: its FPN neck ends at stride 16 and the transformer decoder
# works on that grid ($26\times26$ at 416 px), and the projector only upsamples it by 4 (Sec. 3.2). LTS
# fuses and segments at stride 8. The smoke runs feed 96-pixel synthetic images to a CPU, so the CRIS grid
# is $6\times6$, and a small shape covers about one cell. How much of a mask can a map of that resolution
# hold at all? `refseg_core.stride_ceiling.stride_ceiling` averages each ground-truth mask over the cells of a
# stride-$s$ grid, interpolates it back and scores it against the original. That gauges how much of a
# shape such a grid keeps. It is not a strict bound: the learned upsampling after the grid (CRIS's
# projector convolves again at stride 4) recovers part of what the averaging blurs, so a model can score
# above it. Computed now on the validation masks of this run, with each model's decoding stride,
# `model.decoder_stride`, checked against the grid of the `decoder` map its `forward_features` returns:

# %%
from refseg_core.stride_ceiling import stride_ceiling

val_masks = [
    probe_refer.ref_mask(r) for r in probe_refer.split_refs(cris_config.val_split)
]  # data of the CRIS run
decode_stride = {}
with torch.no_grad():
    for n, res in runs.items():
        m, size = res.model.eval(), res.config.input_size
        at = next(m.parameters()).device
        probe = m.tokenizer(["the red circle", "a blue square"]).to(at)
        grid = m.forward_features(torch.zeros(2, 3, size, size, device=at), probe)["decoder"]
        assert size // grid.shape[-1] == m.decoder_stride, (n, grid.shape)
        decode_stride[n] = m.decoder_stride
sizes = sorted({res.config.input_size for res in runs.values()} | {160, 416})
strides = (4, 8, 16)
ceiling = {(size, s): stride_ceiling(val_masks, size, s) for size in sizes for s in strides}
fig, ax = plt.subplots(figsize=(6, 3.2))
for s in strides:
    ax.plot(sizes, [100 * ceiling[size, s] for size in sizes], "-o", ms=4, label=f"stride {s}")
for n, res in runs.items():
    c = ceiling[res.config.input_size, decode_stride[n]]
    ax.plot([res.config.input_size], [100 * c], "k*", ms=12)
    ax.plot(
        [res.config.input_size],
        [100 * res.metrics["mIoU"]],
        "rx",
        ms=9,
        label="smoke runs: val mIoU reached" if n == next(iter(runs)) else None,
    )
    ax.annotate(
        f"{n} smoke run\n(stride {decode_stride[n]}, {res.config.input_size} px)",
        (res.config.input_size, 100 * c),
        textcoords="offset points",
        xytext=(8, -4),
        fontsize=8,
    )
ax.set_xlabel("model input size (px)")
ax.set_ylabel("mIoU of the averaged masks (%)")
ax.set_title("how much of the val masks a grid of that stride keeps", fontsize=10)
ax.set_ylim(0, 100)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for n, res in runs.items():
    print(
        f"{n}: decodes at stride {decode_stride[n]}; at {res.config.input_size} px the averaged masks score "
        f"{100 * ceiling[res.config.input_size, decode_stride[n]]:.1f} % mIoU; the run reached "
        f"{100 * res.metrics['mIoU']:.1f} %"
    )

# %% [markdown]
# On the synthetic images the stride-16 grid of CRIS holds far less of a mask than LTS's stride-8 grid.
# At 96 px the CRIS grid is $6\times6$; the smoke configuration therefore feeds CRIS the same 96-pixel
# images letterboxed to 128 px, an $8\times8$ grid, and the figure shows what that buys. It also halves
# the width of the tiny CLIP image encoder (`vision_width: 8`) to pay for the larger input, and trains
# 12 epochs at batch 32. These are the paper's modules at tiny widths; the departures from the paper's
# recipe (random initialisation instead of CLIP weights, a frozen random token embedding, the Dice term,
# the input size) are named in `smoke_cris`. At 416 px the same grid is $26\times26$, and the full-size
# model learns these shapes within one epoch on a GPU (chapter 8's GPU check). The tuning runs that led
# here, and the diagnostics of earlier settings, are in the note [Tuning the CRIS smoke run](../book/smoke_tuning.md).
#
# The smoke CRIS run adds a Dice term to its loss (`dice_weight: 1`, not in the paper;
# `refseg_core.losses`): it gets the tiny model past "predict background" sooner. Set it to 0 in
# `overrides` to see the paper's loss alone.

# %% [markdown]
# ## Checkpoints and exact resume
#
# A long run gets stopped: a cluster pre-empts it, a node fails, someone presses Ctrl-C. Resuming *exactly*
# means that the resumed run produces the same weights as one that never stopped, so a checkpoint must
# hold everything that influences the next step, not only the weights: the optimiser's moments, the
# scheduler (and warm-up) position, the fp16 scale, the random generators (data order, sentence choice,
# dropout) and how far into the epoch the run was. `tests/test_engine.py` checks that a run stopped and
# resumed ends with the same weights as an uninterrupted one.
#
# Writing must not be able to destroy the previous checkpoint, so the file is written next to the target,
# flushed to disk, and renamed over it (a rename within one file system is atomic):

# %%
show_source(atomic_torch_save)

# %% [markdown]
# SIGINT and SIGTERM only set a flag; the loop finishes the current step, all ranks agree to stop (one
# all-reduce), rank 0 writes the checkpoint, and the run ends with `TrainingInterrupted` (the command line
# exits with status 128 + the signal number):

# %%
show_source(engine.StopFlag)

# %% [markdown]
# What the CRIS run just wrote: `last.pt` loads with `torch.load(weights_only=True)`, which refuses
# anything but tensors and plain containers, so a checkpoint from elsewhere cannot run code when loaded.

# %%
ckpt_path = Path(result_cris.output_dir) / "last.pt"
ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)


def describe(v):
    if isinstance(v, torch.Tensor):
        return f"tensor {tuple(v.shape)}"
    if isinstance(v, dict):
        return f"dict with {len(v)} keys: {', '.join(map(str, list(v)[:6]))}{' ...' if len(v) > 6 else ''}"
    if isinstance(v, list):
        return f"list of {len(v)}"
    return repr(v)


print(f"{ckpt_path} ({ckpt_path.stat().st_size / 1e6:.1f} MB)")
for k, v in ckpt.items():
    print(f"  {k:13s} {describe(v)}")
print(
    f"model tensors: {len(ckpt['model'])}, "
    f"optimizer state for {len(ckpt['optimizer']['state'])} parameters, "
    f"scheduler last_epoch {ckpt['scheduler']['last_epoch']}"
)

# %% [markdown]
# To continue a run — for instance for more epochs — pass the checkpoint as `resume`; the model is rebuilt
# from the checkpoint's own `model_config` (same vocabulary, same shapes):
#
# ```python
# more = dict(cris_config.to_dict(), epochs=cris_config.epochs + 5)
# engine.train(more, resume=Path(cris_config.output_dir) / "last.pt")
# ```
#
# or `python -m refseg_core train --resume .../last.pt --set epochs=12`. Chapter 6 evaluates the two
# runs of the same configurations: it reuses the checkpoints this chapter wrote to their `output_dir`
# (under the refseg home) when they are there, and trains them itself when it is opened alone.
#
# ## Summary
#
# * bf16 autocast runs convolutions and matrix products in 16 bits with fp32's range and needs no loss
#   scaling; fp16 needs a `GradScaler`. `channels_last` stores activations in the layout GPU convolutions
#   prefer. On a CPU, measure before you believe either helps.
# * DDP runs one process per GPU; `DistributedSampler` shares the data out; `batch_size` is the global batch;
#   SyncBatchNorm pools the BatchNorm statistics; NCCL on GPUs, gloo on CPUs; `torchrun` launches it.
# * The official CRIS recipe — Adam, lr $10^{-4}$, backbone $\times0.1$, 50 epochs, decay at 35, batch 64,
#   AMP, SyncBN, DDP — is the configuration `cris_r50_refcoco`, with its epoch-1 learning-rate quirk as a flag.
# * One function, `engine.train`, trains both models from a notebook, the command line and `torchrun`, and
#   writes atomic checkpoints that resume exactly.
#
# ## Exercises
#
# 1. Set `overrides = {"precision": "bf16"}` in the parameters cell (papermill: `-y "overrides: {precision: bf16}"`). Does the smoke
#    run still learn? How long does it take on your machine?
# 2. Run `python -m refseg_core train --config smoke_cris --set epochs=4 --set output_dir=runs/resume_try`, stop it with Ctrl-C
#    during epoch 3, resume with `--resume`, and compare `metrics.json` with an uninterrupted 4-epoch run.
# 3. Start two CPU processes with `torchrun --nproc_per_node 2 -m refseg_core train --config
#    smoke_cris --set epochs=1 --set output_dir=runs/ddp_try`. What is the per-rank batch, and how many steps does an epoch
#    have?
# 4. Train CRIS with `official_lr_quirk: true`. Where in the learning-rate curve does it differ?
