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
# gloo); the official training recipe of CRIS {cite}`wang2022cris`, value by value, and what this book
# changed in it and why; the one place where the official code does not do what its configuration says
# (the learning-rate quirk); and what a checkpoint must hold for a run to resume *exactly*.
#
# The chapter then trains both models of the book, CRIS and LTS {cite}`jing2021lts`, through one function,
# `refseg_core.engine.train`. By default it runs the *smoke* configurations: the synthetic dataset of
# chapter 1, tiny model widths, a CPU, a few minutes. The same notebook runs the full recipe on a GPU when
# papermill gives it a full configuration (see "Running it for real"). Every number printed here is
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
config = "smoke_cris"  # the CRIS run: a shipped configuration, or a YAML file
overrides = {}  # TrainConfig fields replacing the configuration's: {"data_root": "/d"}
lts_config = "smoke_lts"  # the second model, trained the same way; None skips it
lts_overrides = {}
dry_run = False  # print the resolved configuration(s) and stop before training
retrain = False  # True: train again even where a finished run of the same configuration is

# %% tags=["hide-input"]
import math
import warnings

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DistributedSampler

from refseg_core import (
    configs,
    engine,
    evidence,
    notebook,
    official_recipe,
    smoke,
    verdicts,
)
from refseg_core.config import load_config, make_config
from refseg_core.engine import distributed as distu
from refseg_core.engine.checkpoint import atomic_torch_save, load_checkpoint
from refseg_core.engine.optim import lr_by_step
from refseg_core.engine.step_timing import time_train_steps
from refseg_core.notebook import (
    finish_dry_run,
    resolve_config,
    show_markdown,
    show_source,
)
from refseg_core.paths import readable
from refseg_core.stride_ceiling import stride_ceiling
from refseg_core.tables import markdown_table, metrics_table
from refseg_core.viz import curves

# The same function as `python -m refseg_core train --config`: same name, same run.
cris_config = resolve_config(config, overrides, dry_run, label=f"config: {config}")
lts_run = None
if lts_config is not None:
    label = f"lts_config: {lts_config}"
    lts_run = resolve_config(lts_config, lts_overrides, dry_run, label=label)
finish_dry_run(dry_run)

# %%
# open_clip imports tqdm.auto, warning that Jupyter widgets are missing: unused here.
warnings.filterwarnings("ignore", message="IProgress not found")
full_recipe = load_config("cris_r50_refcoco")  # the paper-cell configuration
run_device = distu.resolve_device(cris_config.device, distu.env_info())
kind = "synthetic" if cris_config.synthetic else "real"
print(
    f"CRIS run: {cris_config.model} on {cris_config.dataset} ({kind} data), "
    f"{cris_config.epochs} epochs, batch {cris_config.batch_size}, "
    f"precision {cris_config.precision}, device {run_device}"
)
if lts_run is not None:
    r = lts_run
    print(f"LTS run: {r.model}, {r.epochs} epochs, batch {r.batch_size}")

# %% [markdown]
# ## The official recipe, and what this book changed
#
# *The paper* (Sec. 4.1) trains CRIS for 50 epochs with Adam and a step decay, at $416\times416$, on
# several GPUs. *The official code* (DerrickWang005/CRIS.pytorch) fixes the details in
# `config/refcoco/cris_r50.yaml`, `train.py` and `engine/engine.py`. This book keeps those values as
# package data, each with the official file it was read from
# (`refseg_core/configs/official_cris_recipe.yaml`), and `refseg_core.official_recipe.compare` sets them
# next to *the book's* configuration for that table cell, `cris_r50_refcoco`. A departure is printed
# with its reason; a unit test checks that every difference has one:

# %%
show_markdown(official_recipe.table("cris_r50_refcoco"))

# %% [markdown]
# Beyond these values, the official training script has properties that its users keep running into
# (the issues of DerrickWang005/CRIS.pytorch cited). What this book does about each:
#
# * **Launch.** Official: `mp.spawn` over every visible GPU; only multi-GPU DDP works (issue #22). Here:
#   `python -m refseg_core train` on one GPU or a CPU, `torchrun` for many, the same code — most readers
#   have one GPU.
# * **Logging.** Official: `wandb.login` with a key, online mode (issue #23). Here: `log.csv`,
#   TensorBoard events and `metrics.json` in the run folder — training needs no account and no network.
# * **Data.** Official: LMDB files written with `pyarrow.serialize`, which pyarrow has removed (issues
#   #20, #25). Here: the REFER files are read directly (chapter 1).
# * **Saving.** Official: `torch.save` straight onto the target file, without random-generator or scaler
#   state. Here: `atomic_torch_save` (a temporary file, `fsync`, `os.replace`) with RNG, scaler and the
#   position inside the epoch — a crash while saving keeps the last good checkpoint, and a resumed run
#   continues exactly (the last section).
# * **Signals.** Official: none handled. Here: SIGINT / SIGTERM finish the step, write a checkpoint and
#   exit with status 128 + signal, since clusters pre-empt jobs with SIGTERM.
# * **Token embedding.** Official: `token_embedding.requires_grad_ = False` is an *assignment*, so the
#   token embedding trains. Here it trains too in every `cris_*` configuration; the smoke configuration
#   freezes it (named in `smoke_cris`) to halve the CPU step time.
# * **Speed-ups.** Official: fp16 autocast with a GradScaler, NCHW; so do the `cris_*` configurations.
#   `precision: bf16` and `channels_last: true` are named opt-ins; chapter 8 measures them on a GPU
#   against the official step.
# * **Which checkpoint is scored.** Official: the epoch with the best validation mIoU
#   (`best_model.pth`), selected on testB for the RefCOCO+ configurations. Chapter 6 explains it, in
#   {ref}`sec-checkpoint-selection`.
# * **The first epoch's learning rate.** Reproduced, explained next.
#
# (sec-lr-quirk)=
# ### The learning-rate quirk
#
# *The paper* says the CLIP backbone trains at $0.1\times$ the learning rate. *The official code* builds
# two parameter groups (the CLIP backbone, the rest) that carry only `initial_lr` ($10^{-5}$ and
# $10^{-4}$); `Adam(params, lr=1e-4)` then gives *every* group $10^{-4}$, and the backbone only drops
# to its $10^{-5}$ when `scheduler.step(epoch)` runs after the first epoch. So epoch 1 trains the
# backbone ten times faster than the paper says. `engine.official_epoch_lrs` writes that rule down;
# `engine.lr_by_epoch` runs the schedule `engine.train` uses (`engine.build_optimizer` and
# `engine.end_epoch`) without training. The book's paper-cell configurations set
# `official_lr_quirk: true`, so they run what the official code runs; `false` is the paper's text.
# This is the one place the book explains the quirk; other chapters link here.

# %% tags=["hide-input"]
recipe_probe = make_config(dict(cris_config.to_dict(), pretrained=None))  # no weights
probe_refer = engine.prepare_data(recipe_probe)
probe_model = engine.build_model_for(recipe_probe, probe_refer)  # backbone, head groups
groups = probe_model.param_groups(full_recipe.lr, full_recipe.backbone_lr_mult)
r = full_recipe
rule = (r.lr, r.milestones, r.lr_gamma)
official = [engine.official_epoch_lrs(groups, e, *rule) for e in range(1, r.epochs + 1)]
ours = engine.lr_by_epoch(r, probe_model)  # official_lr_quirk: true
quirk_off = make_config(dict(r.to_dict(), official_lr_quirk=False))
paper = engine.lr_by_epoch(quirk_off, probe_model)
same = all(math.isclose(a, b) for o, w in zip(official, ours) for a, b in zip(o, w))
print(f"official code = cris_r50_refcoco in all {r.epochs} epochs: {same}")
assert same
shown = sorted({1, 2, *r.milestones, *(m + 1 for m in r.milestones), r.epochs})
show_markdown(
    markdown_table(
        [[e, *official[e - 1], *ours[e - 1], *paper[e - 1]] for e in shown],
        headers=[
            "epoch",
            "official: backbone",
            "official: head",
            "cris_r50_refcoco: backbone",
            "cris_r50_refcoco: head",
            "quirk off: backbone",
            "quirk off: head",
        ],
        digits=6,
    )
)

# %% [markdown]
# ## Mixed precision
#
# A GPU multiplies 16-bit numbers several times faster than 32-bit ones and moves half the bytes.
# *Autocast* runs the operations that profit (convolutions, matrix products) in a 16-bit type and keeps
# the ones that need range or accumulate error (reductions, softmax, the loss) in fp32; the weights and
# the optimiser state stay fp32. There are two 16-bit types:
#
# * **fp16** has 5 exponent bits: its largest value is 65504 and gradients smaller than about
#   $6\times10^{-8}$ become 0. So the loss is multiplied by a scale $S$ before `backward` (gradients
#   $\times S$ stay representable), the gradients are divided by $S$ before the optimiser step, and a
#   step whose gradients overflowed is skipped while $S$ is halved. That is `GradScaler`, and it is what
#   the official CRIS code does.
# * **bf16** keeps fp32's 8 exponent bits (same range) with only 7 mantissa bits: no scaling is needed,
#   at the price of coarser values. It is native on NVIDIA Ampere (A100, RTX 30xx) and later.
#
# `engine.train` picks the type from `precision` (`auto` = bf16 on CUDA, fp32 on CPU); the scaler is
# created for every run but only *enabled* for fp16, so the step is one code path:

# %% tags=["hide-output"]
for fn in (engine.amp_dtype, engine.autocast):  # the type, and the context it runs in
    show_source(fn)

# %%
for fn in (engine.train_step, engine.backward_step):  # one step: forward, loss, backward
    show_source(fn)

# %% [markdown]
# **`channels_last`.** A `(B, C, H, W)` tensor is normally stored with the `W` index varying fastest
# ("NCHW"). `channels_last` keeps the same shape but stores the `C` values of one pixel next to each other
# ("NHWC"), the layout GPU convolution kernels (Tensor Cores) read best; a model converted with
# `model.to(memory_format=torch.channels_last)` keeps its weights that way, and `train_step` converts each
# batch. On a CPU the gain, if any, depends on the oneDNN kernels.
#
# **Measured here.** A few optimiser steps of this run's CRIS model through the engine's own
# `train_step` and `backward_step`, with each setting, from the same weights on the same batch
# (`refseg_core.engine.step_timing`). The numbers come from *this* machine: on a CPU they say nothing
# about a GPU — many CPUs have no fast bf16 arithmetic, and a shared CPU makes timings noisy. Chapter 8
# collects careful benchmarks, GPU ones included.

# %% tags=["hide-input"]
variants = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
if run_device.type == "cuda":
    variants += [("fp16", False), ("fp16", True)]
timing_batch = 4 if run_device.type == "cpu" else min(cris_config.batch_size, 16)
batch = timing_batch
timings = time_train_steps(recipe_probe, probe_refer, variants, batch, run_device)
on_gpu = run_device.type == "cuda"
where = torch.cuda.get_device_name(run_device) if on_gpu else "CPU"
size = cris_config.input_size
print(f"{where}: {cris_config.model}, batch {timing_batch}, {size} px; fastest of 3")
show_markdown(
    markdown_table(
        timings,
        columns=["precision", "channels_last", "s_per_step", "relative", "loss"],
        headers=["precision", "channels_last", "s / step", "relative to fp32", "loss"],
        digits=4,
    )
)

# %% [markdown]
# The losses after four steps differ between precisions: the same initial weights and batch, computed
# with fewer bits. With `channels_last` alone (fp32) they agree to rounding: it changes the memory
# layout, not the arithmetic.
#
# ## Data parallelism: DDP and torchrun
#
# With $W$ GPUs, *distributed data parallel* (DDP) runs $W$ processes, one per GPU, each holding a full
# copy of the model. Every step each process takes its own part of the batch, computes its gradients, and
# DDP averages the gradients across processes (an all-reduce, overlapped with the backward pass) so that
# every copy applies the same update. `torchrun --nproc_per_node W` starts the processes and gives each
# `RANK`, `LOCAL_RANK` and `WORLD_SIZE`; `refseg_core.engine.distributed` reads them and opens the
# process group:

# %%
show_source(distu.setup)

# %% [markdown]
# * **NCCL or gloo.** NCCL moves CUDA tensors GPU to GPU (NVLink, InfiniBand); gloo works on CPU tensors.
#   The engine takes NCCL on CUDA and gloo on CPU, which is how the test suite runs real two-process DDP
#   on a laptop (`tests/test_ddp.py`).
# * **`DistributedSampler`** gives each rank a disjoint share of one permutation of the data (the same
#   permutation on every rank, seeded by the epoch through `set_epoch`). With `drop_last=True`, as in the
#   engine, the tail that does not divide evenly is dropped; otherwise indices are repeated to pad. For ten
#   samples over four ranks:

# %%
for drop_last in (True, False):
    shares = []
    for rank in range(4):
        sampler = DistributedSampler(range(10), 4, rank, False, drop_last=drop_last)
        shares.append(f"rank {rank}: {list(sampler)}")
    print(f"drop_last={drop_last}: " + "  ".join(shares))

# %% [markdown]
# * **Global and per-rank batch.** In this book (as in the official code) `batch_size` is the *global*
#   batch: each of $W$ ranks loads `batch_size / W`. The optimiser then sees the same batch, and the same
#   number of steps per epoch, on 1 GPU or 8, so the learning rate needs no change. For the full recipe on
#   RefCOCO (the training refs from `refseg_core.configs.published()`; one sample per ref and epoch):

# %% tags=["hide-input"]
n_train = configs.published()["datasets"][full_recipe.dataset]["refs"]["train"]
bs = full_recipe.batch_size
show_markdown(
    markdown_table(
        [(w, bs // w, bs, f"{n_train // bs:,}") for w in (1, 2, 4, 8)],
        headers=["GPUs (W)", "per-rank batch", "global batch", "steps per epoch"],
    )
)

# %% [markdown]
# * **SyncBatchNorm.** BatchNorm normalises with the mean and variance *of the batch it sees*. Under DDP
#   each rank sees only its share — 8 samples per GPU at $W=8$ — so its statistics are noisier than those
#   of the 64 the recipe means. `nn.SyncBatchNorm` all-reduces the statistics across ranks in every
#   forward pass. The engine converts the model when `sync_bn: true` and the run is distributed on CUDA.
#   The conversion itself needs no process group:

# %%
BatchNorm = torch.nn.modules.batchnorm._BatchNorm
n_bn = sum(isinstance(m, BatchNorm) for m in probe_model.modules())
converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(probe_model)
n_sync = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
print(f"{cris_config.model}: {n_bn} BatchNorm; converted: {n_sync} SyncBatchNorm")
del probe_model, converted

# %% [markdown]
# ## Running it for real
#
# The smoke runs below and a full reproduction are the same code with a different configuration. The
# whole route on a GPU — fetch and verify the data, train on one GPU or with `torchrun` on many, resume,
# the hours it costs, evaluate the selected checkpoint, set it next to the paper — is chapter
# {doc}`09_first_real_run`. This notebook itself runs the full recipe when papermill gives it a
# paper-cell configuration (both models, on a GPU machine, with the data that chapter fetches):
#
# ```bash
# papermill notebooks/05_training.ipynb 05_training_cris_r50_refcoco.ipynb \
#     -p config cris_r50_refcoco -p lts_config lts_refcoco
# ```
#
# Runs and generated data go under the *refseg home*, `$REFSEG_HOME` (default `~/refseg-book`): the
# configurations name `runs/<name>` and `data/...` relative to it, so the command line and papermill,
# started from any folder, write the same run. Paths you pass yourself are taken as given.

# %% [markdown]
# ## Training CRIS and LTS
#
# `engine.train` takes the configuration (a `TrainConfig` or a plain dict of its fields), prepares the data
# (generating the synthetic set if needed), builds the model with `build_model`, and runs the loop:
# Adam over `model.param_groups`, an optional linear warm-up over the first steps, `MultiStepLR` per epoch,
# validation on the first sentence of each validation ref after every epoch (as the official code does),
# and `last.pt` after every epoch (with `select_best`, as in `smoke_cris`, also `best.pt`: chapter 6).
# With `progress=False` it prints nothing; every logged step and validation stays in the run folder
# (`log.csv`, TensorBoard events, `metrics.json`), and the page shows one table and the curves.
# Chapters 3 and 4 have already trained these two runs when the book is built in order, so
# `notebook.trained_run` reads a finished run of exactly this configuration back from its folder
# (`engine.finished.read_run`: the weights, the logged history, the metrics and the training time it
# measured) instead of training it twice; opened alone, or with another configuration, the chapter trains
# it here. A folder that holds a different run is never replaced unless `retrain = True`. The smoke runs are fixed in epochs and seeded, so the same commit
# prints the same numbers on an idle or a busy machine (up to float rounding between thread counts).
# `time_limit_s`, a stop after that many seconds, exists for users' own runs; the book's configurations
# do not set it, because a run cut by the clock would publish a half-trained model.

# %%
runs = {"CRIS": notebook.trained_run(cris_config, retrain, progress=False)}
if lts_run is not None:
    runs["LTS"] = notebook.trained_run(lts_run, retrain, progress=False)
show_markdown(
    markdown_table(
        [
            (
                n,
                res.config.model,
                len([h for h in res.history if "val_mIoU" in h]),
                res.history[-1]["step"],
                round(res.train_time_s),
                100 * res.metrics["mIoU"],
                100 * res.metrics["oIoU"],
            )
            for n, res in runs.items()
        ],
        headers=["run", "model", "epochs", "steps", "train s", "val mIoU", "val oIoU"],
    )
)
for n, res in runs.items():
    print(f"{n}: full log {readable(res.output_dir)}/log.csv, checkpoint {res.checkpoint.name}")

# %% [markdown]
# ## Curves
#
# {numref}`fig-train-loss` is the training loss, logged every `log_every` steps as the mean over those
# steps. {numref}`fig-lr-schedule` is the learning rate of every step: the log records it only every
# `log_every` steps (dots), and the smoke configurations warm up over exactly `log_every` steps, so the
# log alone shows the warm-up's end, not the warm-up. The curve is therefore replayed step by step from
# the run's own configuration with `engine.optim.lr_by_step` (the optimiser, warm-up and schedule the
# loop builds, without training; `tests/test_lr_by_step.py` checks it against a run logged at every
# step).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Training loss of each smoke run (the mean over each window of log_every steps). Look for the steep first epoch and the small drop at the learning-rate decay.", "name": "fig-train-loss"}}
fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.2), squeeze=False)
for ax, (n, res) in zip(axes[0], runs.items()):
    step_rows = [h for h in res.history if "images_per_s" in h]
    curves(ax, step_rows, ["loss"], title=f"{n} ({res.config.model}): training loss")
    ax.set_ylabel(f"loss (mean over {res.config.log_every} steps)")
plt.tight_layout()
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Learning rate of the head group at every optimiser step (lines, replayed with lr_by_step) and as the log records it (dots, every log_every steps). The ramp at the start is the linear warm-up from lr/100; the step down is the milestone decay.", "name": "fig-lr-schedule"}}
fig, ax = plt.subplots(figsize=(7, 3.2))
for n, res in runs.items():
    per_epoch = next(h["step"] for h in res.history if "val_mIoU" in h)
    head = [row[-1] for row in lr_by_step(res.config, res.model, per_epoch)]
    (line,) = ax.plot(range(1, len(head) + 1), head, label=f"{n}: every step")
    logged = [h for h in res.history if "images_per_s" in h]
    ax.plot(
        [h["step"] for h in logged],
        [h["lr"] for h in logged],
        ".",
        color=line.get_color(),
        label=f"{n}: logged every {res.config.log_every} steps",
    )
ax.set(xlabel="optimiser step", ylabel="learning rate", yscale="log")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# {numref}`fig-val-curves` is the validation after every epoch, both averages of chapter 2, with the
# strongest language-blind baseline (the largest object of the image, or the whole image;
# `verdicts.best_baseline`) as a dotted line.

# %%
baselines = {}
for n, res in runs.items():  # train computes them on synthetic data; else computed here
    cfg = res.config
    baselines[n] = res.extra.get("baselines") or engine.trivial_baselines(
        engine.prepare_data(cfg),
        cfg.val_split,
        cfg.max_eval_items,
        first_sentence_only=cfg.val_first_sentence_only,
    )

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Validation mIoU and oIoU after every epoch of each smoke run, against the strongest baseline that never reads the expression (dotted). Look for how far above the dotted line each curve ends.", "name": "fig-val-curves"}}
fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.4), squeeze=False)
for ax, (n, res) in zip(axes[0], runs.items()):
    val = [h for h in res.history if "val_mIoU" in h]
    for key, style in (("val_mIoU", "-o"), ("val_oIoU", "--s")):
        xs, ys = [h["epoch"] for h in val], [100 * h[key] for h in val]
        ax.plot(xs, ys, style, label=key[4:])
    best_name, best = verdicts.best_baseline(baselines[n])
    ax.axhline(100 * best["mIoU"], color="grey", ls=":", label=f"{best_name} (mIoU)")
    ax.set(xlabel="epoch", ylabel="%", ylim=(0, 100))
    ax.set_title(f"{n} ({res.config.model}): validation", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Did it learn?
#
# The final validation metrics next to the two baselines that never read the expression: the whole image,
# and the largest annotated object of the image (which even uses the ground-truth instance masks). A
# model that learned to read the expression must clear both by a clear margin. The verdicts below use a
# margin of 2 points (`refseg_core.verdicts`: float rounding alone moves a smoke run by about that much
# between machines). The book also sets each smoke run a learning target (`refseg_core.smoke.BARS`; the
# sentence after the table states it): a minimum validation mIoU, a minimum lead over the best baseline
# and a training-time budget on a 2-core CPU. The book's tests check the learning part after every build;
# the time depends on the machine, so it is reported as a benchmark (`benchmarks/smoke_times.py`), not
# tested.

# %% tags=["hide-input"]
keys = ["mIoU", "oIoU", "prec@0.5", "prec@0.7", "prec@0.9"]
named = {f"{n} ({res.config.model})": res.metrics for n, res in runs.items()}
named |= {f"baseline: {b.replace('_', ' ')}": m for b, m in baselines["CRIS"].items()}
show_markdown(metrics_table(named, keys))
config_names = {"CRIS": config, "LTS": lts_config}
lines = []
for n, res in runs.items():
    scored = {**res.metrics, "baselines": baselines[n]}
    target_met = smoke.verdict(str(config_names[n]), scored, res.train_time_s)
    versus = verdicts.versus_baseline(res.metrics["mIoU"], baselines[n], n)
    lines.append(f"* {versus} {target_met}")
show_markdown("\n".join(lines))

# %% [markdown]
# ### Why the tiny CRIS learns more slowly on these images
#
# CRIS was designed for $416\times416$ inputs: its FPN neck ends at stride 16 and the transformer decoder
# works on that grid ($26\times26$ at 416 px), and the projector only upsamples it by 4 (Sec. 3.2). LTS
# fuses and segments at stride 8. The smoke data are 96-pixel synthetic images: fed at that size, the
# CRIS grid would be $6\times6$, and a small shape would cover about one cell. How much of a mask can a map of that resolution
# hold at all? `refseg_core.stride_ceiling.stride_ceiling` averages each ground-truth mask over the cells
# of a stride-$s$ grid, interpolates it back and scores it against the original. That gauges how much of
# a shape such a grid keeps. It is not a strict bound: the learned upsampling after the grid (CRIS's
# projector convolves again at stride 4) recovers part of what the averaging blurs, so a model can score
# over it. Computed now on the validation masks of this run, with each model's decoding stride,
# `model.decoder_stride`, checked against the grid of the `decoder` map its `forward_features` returns:

# %% tags=["hide-input"]
val_refs = probe_refer.split_refs(cris_config.val_split)
val_masks = [probe_refer.ref_mask(ref) for ref in val_refs]
decode_stride = {}
with torch.no_grad():
    for n, res in runs.items():
        m, size = res.model.eval(), res.config.input_size
        at = next(m.parameters()).device
        probe = m.tokenizer(["the red circle", "a blue square"]).to(at)
        images = torch.zeros(2, 3, size, size, device=at)
        grid = m.forward_features(images, probe)["decoder"]
        assert size // grid.shape[-1] == m.decoder_stride, (n, grid.shape)
        decode_stride[n] = m.decoder_stride
sizes = sorted({res.config.input_size for res in runs.values()} | {160, 416})
strides = (4, 8, 16)
ceiling = {(z, s): stride_ceiling(val_masks, z, s) for z in sizes for s in strides}
for n, res in runs.items():
    z, s = res.config.input_size, decode_stride[n]
    print(
        f"{n}: decodes at stride {s}; at {z} px the averaged masks score "
        f"{100 * ceiling[z, s]:.1f} % mIoU; it reached {100 * res.metrics['mIoU']:.1f}."
    )

# %% tags=["hide-input"] mystnb={"figure": {"caption": "How much of the validation masks a grid of each stride keeps (mIoU of the masks averaged over its cells and interpolated back), by input size. Stars: where each smoke run decodes; crosses: the mIoU it reached. CRIS's stride-16 grid keeps far less of these small shapes than LTS's stride-8 grid.", "name": "fig-stride-ceiling"}}
fig, ax = plt.subplots(figsize=(6.5, 3.4))
for s in strides:
    ys = [100 * ceiling[z, s] for z in sizes]
    ax.plot(sizes, ys, "-o", ms=4, label=f"stride {s}")
for i, (n, res) in enumerate(runs.items()):
    size = res.config.input_size
    ax.plot([size], [100 * ceiling[size, decode_stride[n]]], "k*", ms=12)
    reached = "smoke runs: val mIoU reached" if i == 0 else None
    ax.plot([size], [100 * res.metrics["mIoU"]], "rx", ms=9, label=reached)
    ax.annotate(
        f"{n} (stride {decode_stride[n]}, {size} px)",
        (size, 100 * ceiling[size, decode_stride[n]]),
        textcoords="offset points",
        xytext=(8, -4),
        fontsize=8,
    )
ax.set(xlabel="model input size (px)", ylabel="averaged masks: mIoU (%)", ylim=(0, 100))
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The smoke configuration therefore feeds CRIS the 96-pixel images letterboxed to 128 px, an $8\times8$
# grid, and {numref}`fig-stride-ceiling` shows what that buys.
# It also halves the width of the tiny CLIP image encoder (`vision_width: 8`) to pay for the larger input,
# and trains 12 epochs at batch 32. These are the paper's modules at tiny widths; the departures from the
# paper's recipe (random initialisation instead of CLIP weights, a frozen random token embedding, the Dice
# term, the input size) are named in `smoke_cris`. The tuning runs that led here are in the note
# [Tuning the CRIS smoke run](../book/smoke_tuning.md).
#
# At 416 px the same grid is $26\times26$. What the committed GPU rows
# (`refseg_core/evidence/NVIDIA_H200_check.json`) say about the full-size model on these shapes:

# %% tags=["hide-input"]
gpu_rows = evidence.rows("NVIDIA_H200_check")
gpu_runs = [r for r in gpu_rows if r["kind"] == "training_run"]
for r in gpu_runs:
    loss, first = [p["loss"] for p in r["loss_curve"]], r["loss_curve"][0]["step"]
    ran = f"{r['steps']} steps of batch {r['batch']} ({r['train_time_s']:.0f} s)"
    if r["stopped_by_guard"]:
        ran = f"the check's time limit stopped it after {ran}, before its {r['epochs']}"
        ran += " epochs, so it has no finished score"
    print(
        f"{r['model']} from random weights, {r['input_size']} px, {r['device']} "
        f"({r['date'][:10]}): {ran}. Its training loss went from {loss[0]:.2f} at step "
        f"{first} to {min(loss[-10:]):.2f}-{max(loss[-10:]):.2f} in its last 10 logs"
    )
if not gpu_runs:
    print("no committed GPU training row")

# %% [markdown]
# So the rows show the full-size loss falling on a GPU within minutes; they do not show how well, or after
# how many epochs, the full-size model segments these shapes — that needs a finished run
# (`python -m refseg_core train --config cris_r50_refcoco`, chapter 8).
#
# The smoke CRIS run adds a Dice term to its loss (`dice_weight: 1`, not in the paper;
# `refseg_core.losses`): it gets the tiny model past "predict background" sooner.
#
# ## Checkpoints and exact resume
#
# A long run gets stopped: a cluster pre-empts it, a node fails, someone presses Ctrl-C. Resuming
# *exactly* means that the resumed run produces the same weights as one that never stopped, so a
# checkpoint must hold everything that influences the next step, not only the weights: the optimiser's
# moments, the scheduler (and warm-up) position, the fp16 scale, the random generators (data order,
# sentence choice, dropout) and how far into the epoch the run was. `tests/test_engine.py` checks that a
# run stopped and resumed ends with the same weights as an uninterrupted one.
#
# Writing must not be able to destroy the previous checkpoint, so the file is written next to the
# target, flushed to disk, and renamed over it (a rename within one file system is atomic):

# %% tags=["hide-output"]
show_source(atomic_torch_save)

# %% [markdown]
# SIGINT and SIGTERM only set a flag; the loop finishes the current step, all ranks agree to stop (one
# all-reduce), rank 0 writes the checkpoint, and the run ends with `TrainingInterrupted` (the command line
# exits with status 128 + the signal number):

# %% tags=["hide-output"]
show_source(engine.StopFlag)

# %% [markdown]
# What the CRIS run just wrote: `last.pt` loads with `torch.load(weights_only=True)` (inside
# `load_checkpoint`), which refuses anything but tensors and plain containers, so a checkpoint from
# elsewhere cannot run code when loaded.

# %% tags=["hide-input"]
ckpt_path = runs["CRIS"].checkpoint
ckpt = load_checkpoint(ckpt_path)


def describe(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor {tuple(v.shape)}"
    if isinstance(v, dict):
        more = " ..." if len(v) > 5 else ""
        return f"dict of {len(v)}: " + ", ".join(map(str, list(v)[:5])) + more
    return f"list of {len(v)}" if isinstance(v, list) else repr(v)


print(f"{readable(ckpt_path)}: {ckpt_path.stat().st_size / 1e6:.1f} MB")
contents = [(f"`{k}`", describe(v)) for k, v in ckpt.items()]
show_markdown(markdown_table(contents, headers=["key", "holds"]))

# %% [markdown]
# To continue a run — for instance for more epochs — pass the checkpoint as `resume`; the model is
# rebuilt from the checkpoint's own `model_config` (same vocabulary, same shapes):
#
# ```python
# more = dict(cris_config.to_dict(), epochs=cris_config.epochs + 5)
# engine.train(more, resume=Path(cris_config.output_dir) / "last.pt")
# ```
#
# or `python -m refseg_core train --resume .../last.pt --set epochs=17`. Chapter 6 evaluates the two
# runs of the same configurations: it reuses the checkpoints this chapter wrote to their `output_dir`
# (under the refseg home) when they are there, and trains them itself when it is opened alone.
#
# ## Summary
#
# * bf16 autocast runs convolutions and matrix products in 16 bits with fp32's range and needs no loss
#   scaling; fp16 needs a `GradScaler`. `channels_last` stores activations in the layout GPU convolutions
#   prefer. On a CPU, measure before you believe either pays.
# * DDP runs one process per GPU; `DistributedSampler` shares the data out; `batch_size` is the global
#   batch; SyncBatchNorm pools the BatchNorm statistics; NCCL on GPUs, gloo on CPUs; `torchrun` launches
#   it.
# * The official CRIS recipe — Adam, lr $10^{-4}$, backbone $\times0.1$, 50 epochs, decay at 35, batch 64,
#   fp16 AMP, SyncBN, DDP — is package data with its sources, and the configuration `cris_r50_refcoco`
#   runs it, its epoch-1 learning-rate quirk included.
# * One function, `engine.train`, trains both models from a notebook, the command line and `torchrun`,
#   and writes atomic checkpoints that resume exactly.
#
# ## Exercises
#
# 1. Train the smoke runs in bf16: `overrides = {"precision": "bf16"}` (papermill:
#    `-y "overrides: {precision: bf16}"`). Does CRIS still reach its learning target, and how long does
#    the run take on your machine?
#
# ```{dropdown} Solution
# Set the parameter and run the chapter again. On a CPU, autocast then runs the convolutions and matrix
# products in bf16. Read the "Did it learn?" table and verdicts for the scores and the summary table
# after training for the time. Many CPUs have no fast bf16 units, so the run may well be *slower* than
# fp32; the table under "Measured here" gives a first hint. Expect the scores to move a little, since
# every step is computed with 7 mantissa bits; the verdicts say whether they moved by more than the
# 2-point margin.
# ```
#
# 2. Run `python -m refseg_core train --config smoke_cris --set epochs=4 --set output_dir=runs/a`, stop
#    it with Ctrl-C during epoch 3, resume it with `--resume runs/a/last.pt`, and compare its
#    `metrics.json` with an uninterrupted 4-epoch run into `runs/b`.
#
# ```{dropdown} Solution
# Ctrl-C makes the loop finish its step, write `last.pt` (with the position inside epoch 3, the RNG,
# optimiser and scheduler state) and exit with status 130 (128 + SIGINT). The same `train` command
# with `--resume runs/a/last.pt` continues from that step. The validation
# numbers in `runs/a/metrics.json` and `runs/b/metrics.json` are the same: the resumed run takes the
# same batches in the same order with the same optimiser state (on the same machine and thread count;
# `tests/test_engine.py` checks this for a SIGTERM inside an epoch).
# ```
#
# 3. Start two CPU processes with `torchrun --nproc_per_node 2 -m refseg_core train --config smoke_cris
#    --set epochs=1 --set output_dir=runs/ddp_try`. What is the per-rank batch, and how many steps does
#    an epoch have?
#
# ```{dropdown} Solution
# `batch_size: 32` is the global batch, so each of the 2 ranks loads 16. The number of steps per epoch
# is the same as on one process: the training refs divided by 32, rounded down (`drop_last`). Compare
# the `step` column of `runs/ddp_try/log.csv` with the CRIS row of the training table above divided by
# its epochs. The loss differs a little from the one-process run: each rank normalises its BatchNorm
# layers over its 16 samples (SyncBatchNorm is for CUDA runs).
# ```
#
# 4. The learning-rate quirk changes nothing in `smoke_cris`, whose backbone trains at the full rate
#    anyway (`backbone_lr_mult: 1`). Give the smoke run the paper's backbone rate and switch the quirk
#    on and off: `overrides = {"backbone_lr_mult": 0.1, "official_lr_quirk": True}`, then `False`. What
#    is the backbone's rate in epoch 1 and epoch 2 in each case, and does the validation mIoU differ by
#    more than the 2-point margin?
#
# ```{dropdown} Solution
# The log records only the head group's rate, so read the backbone's from the schedule:
# `lr_by_step(cfg, model, steps_per_epoch)` returns a row per step whose first value is the backbone
# group. With the quirk on, epoch 1 runs the backbone at `lr` (0.002) and epoch 2 at 0.0002; with it
# off, at 0.0002 from the first step (after the warm-up). Compare the two runs' validation mIoU with
# `verdicts.compare(a, b, "quirk on", "quirk off")`: it prints a difference only when it exceeds the
# 2-point margin.
# ```
#
# 5. Train CRIS with the paper's loss alone: `overrides = {"dice_weight": 0}`. How do the loss curve
#    and the validation curve change, and does the run still reach its learning target?
#
# ```{dropdown} Solution
# Without the Dice term the loss is the plain per-pixel BCE of CRIS, so its curve is not comparable in
# value with the Dice run's. Watch the first epochs of the validation curve: BCE on a mask that is mostly
# background is already low when the model predicts nothing, which is why the smoke configuration adds
# the Dice term (it counts the referred pixels however few they are). The verdict sentences under "Did it
# learn?" say whether this run still reaches the target at this budget; the page cannot know in advance.
# ```
