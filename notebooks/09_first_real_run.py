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
# # 9. Your first real run
#
# **What you will learn.** How to go from an empty machine to a real number for one cell of the CRIS
# table {cite}`wang2022cris` with this book's own commands: fetch and verify RefCOCO, look at the run
# before starting it, train it on one GPU or eight, know beforehand roughly how many GPU-hours and how
# much memory it takes, what to watch while it trains, score the checkpoint the official protocol
# selects on every split, and set the result next to the paper's number of the same metric.
#
# Each step is one command in a terminal, shown as printed. The book's test suite runs every one of
# them as printed, with only size overrides appended (a tiny model on generated data for one epoch, the
# `data` lines against a stand-in server; `tests/test_readme_commands.py`), so the commands on this page
# are known to work on the code of this release. What the test cannot do is the run itself: real data,
# CLIP's weights, GPUs and hours. **This book has not yet made a full run.** Where this page says what a
# run should look like, it says what is known (the recipe, the measured speed of one machine) and
# nothing more; the code cells compute every number from the package's data when the page is built.
#
# The details live in other chapters: the recipe, mixed precision and `torchrun` in {doc}`05_training`,
# which checkpoint the papers score in {ref}`sec-checkpoint-selection` of {doc}`06_evaluation`, and the
# table of every paper cell in {doc}`07_results`.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # the release
if "google.colab" in sys.modules:  # in Colab only: install the package, nothing else
    import subprocess

    package = f"refseg_core @ git+{REPO}@{REF}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["parameters"]
config = "cris_r50_refcoco"  # the paper cell: a shipped configuration (chapter 7)
overrides = {}  # TrainConfig fields replacing the configuration's, as `--set KEY=VALUE`
gpu_counts = [1, 8]  # the GPU counts of the time and memory estimate

# %%
from pathlib import Path

import matplotlib.pyplot as plt

from refseg_core import configs, engine, evidence, paths, published, run_cost
from refseg_core.config import make_config
from refseg_core.data.fetch import default_root
from refseg_core.models import build_model
from refseg_core.notebook import resolve_config, show_markdown
from refseg_core.tables import markdown_table

cfg = resolve_config(config, overrides)  # what `train --config` resolves, same function
committed = engine.find_results(evidence.RUNS_DIR)  # full runs shipped with the package
full_runs = [r for r in committed if r["synthetic"] is False]
print(f"configuration {config}: {cfg.model} on {cfg.dataset} ({cfg.split_by})")
print(f"full runs committed with this release: {len({r['run'] for r in full_runs})}")

# %% [markdown]
# ## Step 1: the data
#
# One command downloads RefCOCO's annotations, rebuilds them in the REFER layout the loaders read
# (`refcoco/refs(unc).p`, `refcoco/instances.json`), fetches the COCO train2014 images of every split
# one by one, and verifies it all by content; a second re-checks the folder later against the manifest
# the first one wrote:
#
# ```bash
# python -m refseg_core data fetch refcoco --root ~/refseg-book/data \
#     --images all
# python -m refseg_core data verify refcoco --root ~/refseg-book/data
# ```
#
# `fetch` prints where the annotations came from (the source, its address, the revision resolved to a
# commit), then one line per split with its refs, sentences and images, each checked against the
# published count, then how many images it fetched and how many were already in place; it finishes
# without an error only if every mask and every image decodes. A rerun with everything in place makes
# no request, and an interrupted one fetches only what is missing. `verify` prints the same table and
# "the files match the manifest". Where the data comes from and how much of it there is, read from the
# package's data (`refseg_core/data/sources.yaml` and `published.yaml`):

# %%
size = run_cost.data_size(cfg.dataset)
mib = size["mean_image_bytes"] / 2**20
ok = size["verified_here"]
state = "verified" if ok else "unverified: never fetched by this book"
print(
    f"{size['label']} annotations from {size['source']} ({size['address']}, revision "
    f"{size['revision']}; {state})"
)
if size["images"] is None:
    print("no per-split image counts are published for this dataset")
else:
    rows = [[s, n] for s, n in size["images_by_split"].items()]
    show_markdown(markdown_table(rows, headers=["split", "COCO images"]))
    print(
        f"at most {size['images']:,} images ({size['counts_basis']}), about "
        f"{size['images_bytes'] / 1e9:.1f} GB at {mib:.2f} MiB per image (the mean of "
        f"train2014.zip: {size['zip_bytes'] / 1e9:.1f} GB, "
        f"{size['zip_images']:,} images); "
        "`--image-source zip` fetches that whole zip instead"
    )

# %% [markdown]
# The shipped configurations read their data from `data` under the refseg home (`$REFSEG_HOME`,
# default `~/refseg-book`; the book itself is built with a home of its own), which is where `data
# fetch` writes when `--root` is not given: the `--root ~/refseg-book/data` above only says so aloud.
# Data elsewhere is named with `--set data_root=/path` on every command below. For this page's
# configuration:


# %%
print(f"data_root: {paths.readable(cfg.data_root)}")
same = Path(cfg.data_root) == default_root()
print(f"the folder `data fetch` writes by default: {same}")

# %% [markdown]
# ## Step 2: look at the run before starting it
#
# ```bash
# python -m refseg_core train --config cris_r50_refcoco --dry-run
# ```
#
# prints the resolved run as YAML, every field of the configuration after any `--set`, and stops
# without training. The fields that decide what this run is (the same values, read from the
# configuration when the page ran):

# %%
fields = [
    "model", "pretrained", "dataset", "split_by", "val_split", "input_size", "epochs",
    "batch_size", "lr", "backbone_lr_mult", "milestones", "lr_gamma", "precision",
    "official_lr_quirk", "sync_bn", "val_first_sentence_only", "select_best",
    "output_dir",
]  # fmt: skip
values = {f: getattr(cfg, f) for f in fields}  # as YAML writes them, not rounded
values = {f: f"{v:g}" if isinstance(v, float) else v for f, v in values.items()}
values["output_dir"] = f"`{paths.readable(cfg.output_dir)}`"
rows = [[f, v] for f, v in values.items()]
show_markdown(markdown_table(rows, headers=["field", "value"]))

# %% [markdown]
# `pretrained: openai` is CLIP's weights through open_clip: the first run downloads them and caches
# them. `batch_size` is the *global* batch, whatever the number of processes. Chapter 5 sets every
# value next to the official code's, with the reason for each departure.
#
# ## Step 3: train
#
# ```bash
# # one GPU: the global batch of 64 on one process
# python -m refseg_core train --config cris_r50_refcoco
# # continue it after a stop (pre-empted, Ctrl-C) from its last epoch
# python -m refseg_core train \
#     --resume ~/refseg-book/runs/cris_r50_refcoco/last.pt
# # eight GPUs of one machine: 64 / 8 = 8 samples per process, NCCL
# torchrun --nproc_per_node 8 -m refseg_core train --config cris_r50_refcoco
# torchrun --nproc_per_node 8 -m refseg_core train \
#     --resume ~/refseg-book/runs/cris_r50_refcoco/last.pt
# ```
#
# A run prints one line every `log_every` steps (epoch, step, the mean loss, the learning rate,
# images per second), and after each epoch a validation line (mIoU, oIoU, Pr@0.5 on the first sentence
# of each `val` ref); when that mIoU is at least the best so far it writes `best.pt`. At the end it
# prints `wrote .../metrics.json and .../last.pt` and `best val mIoU ... at epoch ...: .../best.pt (what
# evaluate scores)`. The run folder `~/refseg-book/runs/cris_r50_refcoco/` holds `config.yaml`,
# `log.csv` (every logged line), `metrics.json`, `last.pt`, `best.pt` and TensorBoard files in `tb/`.
# `--resume` reads the configuration saved in the checkpoint and continues at the next epoch with the
# optimiser, scaler and random state restored; a second `train --config` into a folder that already
# holds a run refuses to start unless `--overwrite` is given. Under `torchrun` each process loads its
# share of the global batch, and on GPUs `sync_bn: true` makes BatchNorm average its statistics over
# all of them; how the work is split, and what each process sees, is chapter 5's "Running it for
# real".
#
# ## Step 4: how long, and how much memory
#
# No full run has been timed here, but one training step, a short training run and an evaluation pass
# of CRIS-R50 at 416 px were measured on one GPU by `make gpu-check` (`benchmarks/gpu_check.py`),
# committed in `refseg_core/evidence/`. `refseg_core.run_cost` turns them into hours: the training refs
# of the split (one sample per ref and epoch) over the measured step rate, plus the validation refs
# over the measured evaluation rate, times the epochs. The rates it rests on, and the rows they were
# read from:

# %%
est = {g: run_cost.estimate(cfg, g) for g in gpu_counts}
one = est[gpu_counts[0]]
print(f"rows: {one['device']}, torch {one['torch']}, measured {one['date']}")


def rate(value, unit):
    return "–" if value is None else f"{value:.1f} {unit}"


ratio = one["loop_ratio"]
bases = [
    ["training step", rate(one["step_images_per_s"], "img/s"), one["step_basis"]],
    ["whole run / step", "–" if ratio is None else f"{ratio:.2f}", one["loop_basis"]],
    ["validation", rate(one["eval_sentences_per_s"], "sentences/s"), one["eval_basis"]],
    ["peak memory", rate(one["memory"]["gib"], "GiB"), one["memory"]["basis"]],
    ["train / val refs", f"{one['train_refs']} / {one['val_refs']}", "published.yaml"],
]
show_markdown(markdown_table(bases, headers=["rate", "value", "rests on"]))

# %% [markdown]
# And what they give for this configuration. "Step rate alone" leaves out everything but the step
# (data loading, logging, the loss sync); "with the loop ratio" scales the step rate by the ratio of a
# whole short training run to the step alone, measured once on the bf16 path of the same GPU:

# %%
hours = run_cost.hours_text
per_gpu = list(est.values())
table = [
    ["per-GPU batch", *(e["per_gpu_batch"] for e in per_gpu)],
    ["hours, step rate alone", *(hours(e["hours_step_bound"]) for e in per_gpu)],
    ["hours, with the loop ratio", *(hours(e["hours_loop_measured"]) for e in per_gpu)],
    ["peak memory per GPU, GiB", *(e["memory"]["gib"] for e in per_gpu)],
    ["memory as a bound", *(e["memory"]["bound"] for e in per_gpu)],
]
headers = [config, *(f"{g} GPU{'s' if g > 1 else ''}" for g in gpu_counts)]
show_markdown(markdown_table(table, headers=headers, digits=1))
for g, e in est.items():
    for note in e["notes"]:
        print(f"{g} GPU(s): {note}")

# %% [markdown]
# Read these as one machine's measurements, not as a promise. The rows are of one NVIDIA H200 in one
# session (the device, torch version and date are printed above); another GPU, another driver or a
# busy disk changes every rate. The step rate of the paper's recipe (fp16, NCHW) is the official
# code's step on the same GPU, the closest measured to what this configuration runs. Several GPUs divide
# the time by their number: that is ideal scaling, an upper bound of the speed-up (gradient
# all-reduce, SyncBatchNorm and the smaller per-GPU batch all cost time), so the eight-GPU hours are a
# lower bound. The CRIS memory rows are one process's step with two models resident (this book's and
# the official one), measured at the batch they name: they bound a step at that batch or below, not a
# larger one. The other paper cells, from the same rows (a dash where no row covers the model or no
# split size is published):

# %%
papers = [n for n in configs.names() if not n.startswith("smoke_")]
papers = [config, *(n for n in papers if n != config)] if config in papers else papers
rows, headers = run_cost.hours_table(papers, gpu_counts)
show_markdown(markdown_table(rows, headers=headers))

# %% [markdown]
# ## Step 5: what the curves should look like
#
# This book cannot show the curves of a full run, since it has not made one. What is known before the
# run starts comes from the configuration: how many epochs and steps there are, when the learning rate
# drops, and what the validation line measures.

# %%
train_refs = run_cost.estimate(cfg)["train_refs"]
steps = None if train_refs is None else train_refs // cfg.batch_size  # drop_last
print(f"{cfg.epochs} epochs, lr x{cfg.lr_gamma} after epoch(s) {cfg.milestones}")
if steps is not None:
    print(
        f"{steps} optimiser steps per epoch ({train_refs} train refs // global batch "
        f"{cfg.batch_size}), {steps * cfg.epochs} in all; "
        f"a log line every {cfg.log_every} steps"
    )
print(
    f"validation after every epoch on {cfg.val_split}, first sentence of each ref: "
    f"{cfg.val_first_sentence_only}; best.pt kept: {cfg.select_best}"
)

# %% [markdown]
# {numref}`fig-run1-schedule` is the learning rate of each parameter group in every epoch, replayed
# with `engine.lr_by_epoch` from the configuration (the optimiser and schedule `engine.train` builds,
# without a training step; the model of the same family at tiny width has the same two groups).

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Learning rate of the backbone and of the rest of the model in every epoch of the page's configuration, replayed from it without training. Look for the first epoch, where the official code runs the backbone at the full rate, and the drop after each milestone.", "name": "fig-run1-schedule"}}
tiny = "cris_tiny" if cfg.model.startswith("cris") else "lts_tiny"
same_recipe = make_config(dict(cfg.to_dict(), model=tiny, pretrained=None))
lrs = engine.lr_by_epoch(same_recipe, build_model(tiny))
edges = range(1, cfg.epochs + 2)  # epoch e spans [e, e + 1)
fig, ax = plt.subplots(figsize=(7, 3))
for i, (label, style) in enumerate([("backbone", "-"), ("rest of the model", "--")]):
    lr = [row[i] for row in lrs]
    ax.stairs(lr, edges, baseline=None, label=label, ls=style, lw=2.5 - i)
for m in cfg.milestones:
    ax.axvline(m + 1, color="grey", ls=":", lw=1)
    ax.annotate(f"milestone {m}", (m + 1, lrs[0][-1]), xytext=(4, -12),
                textcoords="offset points", fontsize=8, color="grey")  # fmt: skip
if cfg.official_lr_quirk and len(lrs) > 1 and lrs[0][0] != lrs[1][0]:
    ax.annotate("epoch 1: backbone at the full rate (official code)", (2, lrs[0][0]),
                xytext=(12, -30), textcoords="offset points", fontsize=8,
                arrowprops={"arrowstyle": "->", "lw": 0.8})  # fmt: skip
ax.set(xlabel="epoch", ylabel="learning rate", yscale="log", title=config)
ax.grid(alpha=0.3)
ax.legend(fontsize=9, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# What the curves themselves will look like is not known here. Chapter 5's smoke runs show the *shape*
# this code produces on generated data with tiny models (a steep first epoch, a small step at the
# learning-rate drop, a validation curve that flattens); their values say nothing about a real run.
# What `log.csv` can tell you early is whether the run learns at all: a run that learns shows a
# falling loss and a rising validation mIoU over its first epochs, and a loss that stays flat or
# becomes `nan` is a run to stop (chapter 5 explains the switches it would involve: the precision,
# the learning rate). The validation numbers in the log score each ref's first sentence
# only, so they are not the paper's protocol, which the next step applies.
#
# ## Step 6: score the selected checkpoint on every split
#
# ```bash
# python -m refseg_core evaluate \
#     --checkpoint ~/refseg-book/runs/cris_r50_refcoco \
#     --split val --split testA --split testB
# ```
#
# Given the run folder, `evaluate` scores `best.pt`, the epoch the run selected on its validation split
# (the official protocol, {ref}`sec-checkpoint-selection`), and says so on its first line; `--checkpoint
# .../last.pt` scores the last epoch instead. It scores *every* sentence of every ref of each split
# with the official post-processing, prints one line per split (`n`, mIoU, oIoU, Pr@0.5 to Pr@0.9) and
# writes `eval_refcoco_<split>.json` beside the checkpoint, each with the checkpoint and epoch it
# scored. What it will score, and about how long that takes at the measured evaluation rate:

# %%
counts = configs.published().get("datasets", {}).get(cfg.dataset, {})
speed = one["eval_sentences_per_s"]
sentences = counts.get("sentences", {})
rows = [
    [s, n, sentences[s], None if not speed else sentences[s] / speed]
    for s, n in counts.get("refs", {}).items()
    if s != cfg.train_split and s in sentences
]
headers = ["split", "refs", "sentences", "seconds at the measured rate"]
show_markdown(markdown_table(rows, headers=headers, digits=0))
print(f"sentence counts: {counts.get('source', {}).get('sentences')}")

# %% [markdown]
# ## Step 7: next to the paper's numbers
#
# ```bash
# python -m refseg_core gather ~/refseg-book/runs
# ```
#
# reads every result file under the runs folder and prints one Markdown table: each file's run, model,
# dataset, split and metrics, with the paper's number of the same metric beside a real-data result (a
# smoke run on generated data gets none). It writes the table to `results.md` and every row with its
# metadata to `results.json` in that folder. The numbers the paper reports for this cell, read from
# `published.yaml`:

# %%
method = published.paper_method(cfg.model, cfg.dataset)
targets = published.lookup(method=method, dataset=cfg.dataset)
columns = ["method", "dataset", "split", "metric", "value", "source"]
show_markdown(markdown_table(targets, columns))
mine = [r for r in full_runs if r["run"] == config]
print(f"committed full runs of {config}: {len(mine)} result file(s)")

# %% [markdown]
# The CRIS numbers are the mean of per-sentence IoUs (mIoU, chapter 2); on RefCOCO they are the best of
# 50 epochs chosen on `val`. `evaluate` writes both mIoU and oIoU, and `gather` sets the paper's number
# only next to the same metric. Your `val` number is chosen the same way and is optimistic the same
# way; on testA and testB the selection was made on other data. Whether a difference from the paper is
# a difference needs more than one run: runs of the same recipe with other seeds differ too, and this
# book has no full run from which to say by how much. To add your run to the book, copy its folder
# without the checkpoints into `refseg_core/evidence/runs/` (its `README.md` says how): chapter 7 then
# shows it next to the paper.
#
# ## Summary
#
# * Seven commands take a reader from nothing to a real number: `data fetch` and `data verify`, `train
#   --dry-run`, `train` (or `torchrun ... train`, and `--resume`), `evaluate` on the run folder, and
#   `gather`. The book's tests run each of them as printed, at a tiny size.
# * The time and memory estimate is computed from one GPU's committed measurements, with the rate
#   each number rests on; several GPUs are counted with ideal scaling, an upper bound of the speed-up.
# * The book has made no full run yet: the page shows what the recipe fixes in advance (epochs, steps,
#   the schedule) and the paper's numbers, not a curve or a score it has not measured.
#
# ## Exercises
#
# 1. The configuration's `precision: fp16` and `channels_last: false` are the official recipe; chapter 8
#    measures this book's bf16 and `channels_last` path as faster. Execute this page with
#    `overrides = {"precision": "bf16", "channels_last": True}`. Which rates change, and which do not?
#
# ```{dropdown} Solution
# The training-step rate switches from the official code's fp16 NCHW step to this book's own bf16 +
# `channels_last` step of the same rows, and the memory to that step's; the hours change with them.
# The loop ratio, the evaluation rate and the split sizes do not change: they were measured once, or
# are the dataset's. The evaluation row is of the bf16 path, so its basis no longer says "not fp16".
# Whether bf16 changes the final mIoU is a different question that only two full runs can answer.
# ```
#
# 2. Score the last epoch as well, into a folder of its own, so that its eval files sit beside, not over,
#    those of `best.pt`:
#    `python -m refseg_core evaluate --checkpoint ~/refseg-book/runs/cris_r50_refcoco/last.pt --split val --out ~/refseg-book/runs/cris_r50_refcoco_last`.
#    Which of the two `val` numbers do you expect to be the larger, and why is that no reason to prefer
#    `best.pt` on testA?
#
# ```{dropdown} Solution
# `best.pt` is the epoch whose first-sentence `val` mIoU was the largest, so on `val` (all sentences,
# a close relative of what it was chosen on) it usually scores at least as well as the last epoch; it
# can still lose, since all sentences are not the first ones. That is exactly why its `val` number is
# optimistic: it is the maximum of many noisy measurements of the same split. On testA nothing was
# chosen, so the two checkpoints are two honest measurements, and only their difference beyond the
# run-to-run spread would mean anything. `gather` lists both folders as separate rows.
# ```
#
# 3. Set `gpu_counts = [2, 4]` and execute the page again. How do the per-GPU batch and the hours
#    change, and why are the four-GPU hours the less trustworthy of the two?
#
# ```{dropdown} Solution
# The per-GPU batch is the global 64 divided by the GPU count (32, then 16), and the hours are the
# one-GPU hours divided by the count. Both assume ideal scaling, so both are lower bounds. With 16 per
# GPU, below the batch of 32 at which the step was measured, each step also does less work for its
# fixed costs (the notes under the table say so), which the step rate of batch 32 does not see: the
# four-GPU hours are the further from what a run will take. The memory at 32 and 16 per GPU is bounded
# by the measured row; at 64 on one GPU it is not.
# ```
