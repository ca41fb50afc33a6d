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
# # 6. Evaluation: every split, the papers' numbers, and where the models fail
#
# **What you will learn.** How a trained model is scored the way CRIS {cite}`wang2022cris` scores it —
# the official post-processing, one stage at a time; which checkpoint the papers' tables score; how to
# evaluate LTS {cite}`jing2021lts` and CRIS on every split and put the result next to the papers'
# numbers *without* pretending they are comparable; how much the 0.35 threshold matters; which
# expressions the models get right and wrong; and what happens on gRefCOCO {cite}`liu2023gres`, where an
# expression may refer to several objects or to none.
#
# The models are the runs of the two smoke configurations chapter 5 trains: reused when chapter 5 has
# run here, trained by this chapter otherwise. **The data is synthetic by default**: every image on this
# page is one of chapter 1's generated scenes, and every number is computed on them when the notebook
# runs. Set `real_data_root` to the folder `python -m refseg_core data fetch refcoco` filled and the same
# cells score the models on real photographs and draw those; `real_dataset = "refcoco_m"` (after `data
# fetch refcoco_m`) scores RefCOCO-M instead, RefCOCO val re-segmented with pixel-accurate masks, a
# different benchmark, labelled RefCOCO-M wherever it is printed. The smoke models have never seen a
# photograph: expect them to fail there; a real score needs a full-size configuration
# (`config = "cris_r50_refcoco"`) trained on the real data.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # this book's release of refseg_core
if "google.colab" in sys.modules:  # in Colab only: install the package (nothing else is downloaded)
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", f"refseg_core @ git+{REPO}@{REF}"], check=True
    )

# %% tags=["parameters"]
config = "smoke_cris"  # the CRIS model: a finished run is reused, else trained here
overrides = {}  # TrainConfig fields that replace the configuration's values
lts_config = "smoke_lts"  # the LTS model, the same way
lts_overrides = {}
retrain = False  # True: train both runs again even where a finished run exists
dry_run = False  # print the resolved configurations and stop before training
# Evaluation.
# Real data: a data_root filled by `python -m refseg_core data fetch` (None: synthetic data)
real_data_root = None  # e.g. "~/refseg-book/data"
real_dataset = None  # None: the runs' dataset; "refcoco_m": RefCOCO-M (val only)
splits = None  # None: all but train (RefCOCO: val, testA, testB); must include val
threshold = 0.35  # the official CRIS threshold on the sigmoid
eval_batch = 32
num_threads = 2  # torch CPU threads; 1 when other processes share the cores
focus_model = "cris"  # "cris" or "lts": the model of the step-by-step/threshold parts
example_index = 0  # validation sentence shown in the post-processing figure
num_examples = 4  # best / worst sentences shown
# gRefCOCO.
gref_finetune_items = 1200  # gRefCOCO refs of the focus model's fine-tune (0: none)

# %% tags=["hide-input"]
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.ticker import MaxNLocator
from torch.utils.data import DataLoader

from refseg_core import best_vs_last, engine, per_sentence, published, verdicts
from refseg_core.config import make_config
from refseg_core.data import transforms
from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.data.expression_kind import KINDS, LOCATION_WORDS, RELATION_WORDS
from refseg_core.data.refer import VALID_SPLITS_BY, Refer
from refseg_core.data.rle import rle_to_mask
from refseg_core.data.sources import label
from refseg_core.data.synthetic import ensure_synthetic
from refseg_core.data.transforms import LetterboxParams, inverse_letterbox
from refseg_core.engine import postprocess
from refseg_core.engine.checkpoint import load_checkpoint, model_from_checkpoint
from refseg_core.engine.selection import pick_checkpoint
from refseg_core.metrics import RefSegMetrics
from refseg_core.notebook import (
    finish_dry_run,
    resolve_config,
    show_markdown,
    show_source,
    trained_checkpoint,
)
from refseg_core.paths import readable
from refseg_core.tables import markdown_table, metrics_table
from refseg_core.viz import grid, heatmap, overlay

# open_clip imports tqdm.auto, warning that Jupyter widgets are missing: unused here.
warnings.filterwarnings("ignore", message="IProgress not found")
torch.set_num_threads(num_threads)
run_cfgs = {
    "cris": resolve_config(config, overrides, dry_run, label=config),
    "lts": resolve_config(lts_config, lts_overrides, dry_run, label=lts_config),
}
finish_dry_run(dry_run)

# %% [markdown]
# ## The two models
#
# A checkpoint holds the weights, the keywords that rebuild the architecture (the LTS word vocabulary
# included) and the training configuration, so `model_from_checkpoint` needs nothing else.
# `trained_checkpoint` reuses the `last.pt` in the configuration's `output_dir` when it holds a finished
# run of exactly that configuration (chapter 5 trained it); when this chapter is opened alone, for
# example in Colab, it trains the run first, quietly (its log stays in the run folder). A folder
# holding a different run is never replaced unless `retrain = True`. This page scores each run's
# `last.pt`, the weights after its final epoch; the CRIS run also keeps `best.pt`, the epoch the
# official protocol picks, and {ref}`sec-checkpoint-selection` sets the two side by side.

# %%
if focus_model not in ("cris", "lts"):
    raise ValueError(f"parameter focus_model: 'cris' or 'lts', not {focus_model!r}")
models, configs, checkpoints, about = {}, {}, {}, []
for key, run_cfg in run_cfgs.items():
    checkpoints[key] = trained_checkpoint(run_cfg, retrain=retrain, progress=False)
    ckpt = load_checkpoint(checkpoints[key])
    models[key], configs[key] = model_from_checkpoint(ckpt), make_config(ckpt["config"])
    n = f"{sum(p.numel() for p in models[key].parameters()) / 1e6:.2f}M"
    c, ran = configs[key], (int(ckpt["epoch"]), int(ckpt["step"]))
    about.append((key, models[key].config["name"], n, c.input_size, c.dataset, *ran))
heads = ["", "model", "params", "input", "data", "epochs", "steps"]
show_markdown(markdown_table(about, headers=heads))
name = {k: m.config["name"] for k, m in models.items()}

# %% [markdown]
# Both are scored on the same data: the data of the CRIS run (the LTS run must have been trained on the
# same dataset), or the real data in `real_data_root` (`real_dataset` names another of its datasets).

# %% tags=["hide-input"]
trained_on = {k: (c.dataset, c.split_by) for k, c in configs.items()}
if trained_on["cris"] != trained_on["lts"]:
    raise ValueError(f"the checkpoints were trained on different data: {trained_on}")
real = {}  # the runs' own data, or the real data in real_data_root
if real_dataset is not None:
    if real_data_root is None:
        raise ValueError("parameter real_dataset needs real_data_root (fetched data)")
    if real_dataset not in VALID_SPLITS_BY or real_dataset == "grefcoco":
        known = sorted(set(VALID_SPLITS_BY) - {"grefcoco"})
        raise ValueError(f"parameter real_dataset: one of {known}, not {real_dataset}")
    real = {"dataset": real_dataset, "split_by": VALID_SPLITS_BY[real_dataset][0]}
if real_data_root is not None:
    real |= {"data_root": str(Path(real_data_root).expanduser()), "synthetic": False}
eval_cfg = {}  # per model: its input size, the evaluation data, this page's threshold
for k, c in configs.items():
    eval_cfg[k] = make_config(dict(c.to_dict(), **real, eval_threshold=threshold))
data = eval_cfg["cris"]
dataset, split_by = data.dataset, data.split_by
refer = engine.prepare_data(data)
synthetic = engine.results.data_is_synthetic(data)
eval_output_dir = Path(configs["cris"].output_dir).parent / "06_evaluation"
ORDER = ["val", "testA", "testB", "test"]  # the papers' order; other splits follow
eval_splits = (
    list(splits)
    if splits
    else sorted(
        (s for s in refer.splits() if s != "train"),
        key=lambda s: (ORDER.index(s) if s in ORDER else len(ORDER), s),
    )
)
# RefCOCO-M is not RefCOCO val: its scores carry its name wherever they are printed
split_name = {s: f"RefCOCO-M {s}" if dataset == "refcoco_m" else s for s in eval_splits}
VAL = split_name.get("val", "val")
n_sent = {s: len(refer.sentences(s)) for s in eval_splits}
sizes = ", ".join(f"{split_name[s]} ({n} sentences)" for s, n in n_sent.items())
data_kind = "synthetic" if synthetic else "real"
print(f"{data_kind} {label(dataset)} ({split_by}) in {readable(data.data_root)}: {sizes}")

# %% [markdown]
# ## From logits to a mask, step by step
#
# Both models output mask logits at stride 4 of the square input: $S/4 \times S/4$ for an $S \times S$
# letterboxed image ($104 \times 104$ at the papers' $S = 416$). The official CRIS inference turns them
# into a mask at the *original* image size in four steps:
#
# 1. $\sigma(\cdot)$: logits to probabilities, still at stride 4;
# 2. bicubic up-sampling of the *probabilities* to $S \times S$, with `align_corners=True` (the corner
#    pixel centres of the two grids coincide; `postprocess` keeps `align_corners=False` only as a
#    labelled option);
# 3. the inverse letterbox: crop the image region out of the square and resize it to $H \times W$;
# 4. threshold: $\hat M = [\,p > 0.35\,]$.
#
# IoU is then computed at $H \times W$ against the original annotation, not against the letterboxed
# one. Steps 1-3 in the package (`postprocess.logits_to_masks` adds step 4; `engine.evaluate` calls
# both):

# %%
show_source(postprocess.logits_to_probs)

# %% [markdown]
# Each stage on one validation sentence, computed separately and checked against the library function
# ({numref}`fig-postprocess`):

# %%
focus, focus_cfg = models[focus_model], configs[focus_model]
ds_val = RefSegDataset(refer, "val", focus.tokenizer, focus_cfg.input_size, train=False)
item = ds_val[example_index]
lb = LetterboxParams.from_dict(item["meta"]["letterbox"])
with torch.no_grad():
    logits = focus(item["image"][None], item["tokens"][None])  # (1, 1, S/4, S/4)
p_stride4 = torch.sigmoid(logits)  # step 1
square = (lb.size, lb.size)
p_input = F.interpolate(p_stride4, size=square, mode="bicubic", align_corners=True)
p_orig = inverse_letterbox(p_input[0, 0], lb, mode="bicubic")  # step 3, (H, W)
mask = (p_orig > threshold).numpy()  # step 4
same = np.array_equal(mask, postprocess.logits_to_masks(logits, [lb], threshold)[0])
print(
    f"logits {tuple(logits.shape)} -> {tuple(p_input.shape[-2:])} -> "
    f"{tuple(p_orig.shape)}; "
    f"identical to logits_to_masks: {same}"
)
assert same
target = item["meta"]["orig_mask"].astype(bool)
image = refer.load_image(refer.sentences("val")[example_index][0])
stage_iou = RefSegMetrics().update(mask, target)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The official post-processing on one validation sentence: the letterboxed input, the sigmoid at stride 4, its bicubic up-sampling, the inverse letterbox onto the original image, and the thresholded mask (orange) against the target (dashed blue). Look at how the grey letterbox border disappears in step 3.", "name": "fig-postprocess"}}
fig, axes = plt.subplots(1, 5, figsize=(14, 3.4))
side = logits.shape[-1]
overlay(
    axes[0],
    transforms.denormalize(item["image"], transforms.CLIP_MEAN, transforms.CLIP_STD),
    None,
    title=f"input {lb.size}x{lb.size}: {item['meta']['sentence']}",
)
heatmap(axes[1], p_stride4[0, 0], vmin=0, vmax=1, title=f"1. sigmoid ({side}x{side})")
heatmap(axes[2], p_input[0, 0], vmin=0, vmax=1, title=f"2. bicubic to {lb.size}^2")
heatmap(
    axes[3],
    p_orig,
    image=image,
    vmin=0,
    vmax=1,
    colorbar=True,
    title=f"3. inverse letterbox to {lb.orig_w}x{lb.orig_h}",
)
title = f"4. > {threshold}: IoU {stage_iou:.2f}"
overlay(axes[4], image, mask, contour=target, title=title)
plt.tight_layout()
plt.show()

# %% [markdown]
# The border of the letterbox (grey in the input) is cut away in step 3, so whatever the model predicts
# there never reaches the score. Thresholding *after* the up-sampling gives smoother boundaries than
# up-sampling a $S/4$ binary mask would.
#
# ## Every split
#
# `engine.evaluate` scores every sentence of every ref of a split (CRIS's test protocol) and, with
# `return_records=True`, returns each sentence's IoU and predicted mask too, which the rest of the
# chapter uses. Next to the models, two language-blind baselines a model must clear: the whole image and
# the image's largest object (`engine.trivial_baselines`). Each result is written as
# `eval_<dataset>_<split>.json` by `engine.write_eval`, as `python -m refseg_core evaluate` writes it,
# with a `meta` (`engine.eval_meta`) naming the checkpoint and the data; chapter 7 gathers these files.

# %%
results, records, baselines = {}, {}, {}
every_sentence = dict(batch_size=eval_batch, threshold=threshold, return_records=True)
for key, model in models.items():
    for split in eval_splits:
        size = configs[key].input_size
        results[key, split], records[key, split] = engine.evaluate(
            model, refer, split=split, input_size=size, **every_sentence
        )
        meta = engine.eval_meta(eval_cfg[key], split, checkpoints[key], name[key])
        engine.write_eval(eval_output_dir / name[key], results[key, split], meta)
for split in eval_splits:
    baselines[split] = engine.trivial_baselines(refer, split)
print(f"eval files written to {readable(eval_output_dir)}")

# %% tags=["hide-input"]
cols = ["mIoU", "oIoU", "prec@0.5", "prec@0.7", "prec@0.9"]
table = []
for split in eval_splits:
    named = {name[k]: results[k, split] for k in models}
    named |= {f"*{b.replace('_', ' ')}*": m for b, m in baselines[split].items()}
    for n, m in named.items():
        table.append([split_name[split], n, *(100 * m[c] for c in cols)])
show_markdown(markdown_table(table, headers=["split", "model (percent)"] + cols))

# %% tags=["hide-input"]
lines = []
for key in models:
    for split in eval_splits:
        score = results[key, split]["mIoU"]
        versus = verdicts.versus_baseline(score, baselines[split], name[key])
        lines.append(f"* {split_name[split]}: {versus}")
show_markdown("\n".join(lines))

# %% [markdown]
# ### Next to the papers' numbers
#
# The papers' numbers (`refseg_core.published.lookup`) are on the *real* RefCOCO with full-size models
# (CLIP ResNet-50/101 for CRIS, DarkNet-53 for LTS) trained for 50 epochs on GPUs. Ours are tiny
# models trained for minutes on synthetic shapes. The values are therefore **not comparable**; what
# *is* comparable is the definition: each paper number is placed next to our number of the **same
# metric** — CRIS reports mIoU, LTS reports oIoU ({doc}`02_metrics`). The papers report nothing on
# RefCOCO-M: with `real_dataset = "refcoco_m"` their columns stay empty.


# %% tags=["hide-input"]
def paper(method: str, metric: str, split: str) -> float | None:
    hits = published.lookup(method=method, metric=metric, dataset=dataset, split=split)
    return hits[0]["value"] if hits else None


show_markdown(
    markdown_table(
        [
            (
                split_name[split],
                paper("CRIS-R50", "mIoU", split),
                paper("CRIS-R101", "mIoU", split),
                100 * results["cris", split]["mIoU"],
                paper("LTS", "oIoU", split),
                100 * results["lts", split]["oIoU"],
            )
            for split in eval_splits
        ],
        headers=[
            "split",
            "CRIS-R50 paper (mIoU)",
            "CRIS-R101 paper (mIoU)",
            f"{name['cris']}, ours (mIoU)",
            "LTS paper (oIoU)",
            f"{name['lts']}, ours (oIoU)",
        ],
    )
)
sources = {
    p["source"]
    for method in ("CRIS-R50", "CRIS-R101", "LTS")
    for p in published.lookup(method=method, dataset=dataset)
}
print(f"paper numbers on real {label(dataset)}: {'; '.join(sorted(sources)) or 'none'}")
print(f"ours on {data_kind} {label(dataset)}")

# %% [markdown]
# (sec-checkpoint-selection)=
# ## Which checkpoint the papers score
#
# A run leaves one set of weights per epoch; a table reports one of them. The official CRIS code
# (`train.py`, `engine/engine.py`, `test.py` of DerrickWang005/CRIS.pytorch) validates after **every**
# epoch on the **first sentence** of each ref of its configuration's validation split, keeps
# `last_model.pth`, and copies it to `best_model.pth` whenever that mIoU is at least the best so far
# (`>=`: a tie goes to the later epoch); `test.py` then scores `best_model.pth` on **every** sentence.
# So each number of the CRIS table comes from the best of 50 epochs by validation mIoU. The validation
# split is `val` for RefCOCO and G-Ref and **testB** in the official RefCOCO+ configurations, and the
# authors say they used different checkpoints for different splits (issue #15 of the official
# repository); the paper says neither.
#
# The CRIS smoke run follows the same protocol (`select_best: true` in `smoke_cris`): its folder holds
# `best.pt` beside `last.pt`, and `metrics.json["best"]` names the chosen epoch (the LTS smoke run keeps
# `last.pt` only). `python -m refseg_core evaluate --checkpoint <run folder>` scores `best.pt` when the
# folder holds one (`--checkpoint last` scores `last.pt`), and says so, as in the last line below.

# %%
run_folder = checkpoints["cris"].parent
kept_best = (run_folder / "best.pt").is_file()
if kept_best:
    chosen = {w: pick_checkpoint(run_folder, w)[0] for w in ("best", "last")}
    record = best_vs_last.best_record(run_folder)
    last_epoch = int(load_checkpoint(chosen["last"])["epoch"])
    print(
        f"best.pt: epoch {record['epoch']} of {last_epoch}, {record['split']} mIoU "
        f"{100 * record['mIoU']:.2f} during training (first sentence of each ref)"
    )
    print(pick_checkpoint(run_folder)[1])  # what `evaluate --checkpoint <folder>` picks
else:
    print(f"{run_folder} holds no best.pt: its configuration sets select_best: false")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The CRIS run's validation mIoU after each epoch (first sentence of each ref, as the official loop scores it): best.pt is the epoch at the top of this curve (dashed), last.pt the final epoch (dotted). When the curve peaks at its last epoch the two lines coincide, and best.pt holds last.pt's weights. The choice is the maximum of noisy measurements, which is why best.pt's val score is optimistic.", "name": "fig-val-curve"}}
if kept_best:
    epochs_seen, val_scores = best_vs_last.val_curve(run_folder)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.plot(epochs_seen, 100 * np.array(val_scores), marker="o", label="val mIoU")
    ax.axvline(record["epoch"], color="C3", ls="--", lw=1, label="best.pt")
    ax.axvline(last_epoch, color="grey", ls=":", lw=1.5, label="last.pt")
    top = max(1, 105 * max(val_scores))
    ax.set(xlabel="epoch", ylabel="val mIoU (%)", ylim=(0, top))
    ax.set_xlim(0.5, last_epoch + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{name['cris']}: validation during training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Both checkpoints on every split, every sentence: `best.pt` loaded with `model_from_checkpoint` and
# scored by `engine.evaluate` as above, `last.pt`'s scores those of the table above. When validation
# peaked at the last epoch, both files hold the same weights and there is nothing to compare.

# %% tags=["hide-input"]
same_epoch = kept_best and record["epoch"] == last_epoch
if same_epoch:
    print(
        f"Validation peaked at the last epoch ({last_epoch}), so best.pt holds last.pt's weights: in this "
        "run the selection changes no score. A 50-epoch run whose curve flattens and wobbles is where "
        "the two part ways, and the table this cell prints then is the one to read."
    )
elif kept_best:
    scored = {("last", s): results["cris", s] for s in eval_splits}
    best_model = model_from_checkpoint(chosen["best"])
    for split in eval_splits:
        size = configs["cris"].input_size
        scored["best", split] = engine.evaluate(
            best_model, refer, split=split, input_size=size, batch_size=eval_batch
        )
    heads = ["split", "best.pt mIoU", "last.pt mIoU", "best - last"]
    heads += ["best.pt oIoU", "last.pt oIoU"]
    rows = best_vs_last.rows(scored, eval_splits, split_name)
    show_markdown(markdown_table(rows, headers=heads))
    names = {"best": f"best.pt (epoch {record['epoch']})"}
    names["last"] = f"last.pt (epoch {last_epoch})"
    lines = best_vs_last.verdict_lines(scored, eval_splits, names, split_name)
    show_markdown("\n".join(f"* {line}" for line in lines))

# %% [markdown]
# Where the two differ, read the `val` row with care: `best.pt` was *chosen* on val (its first sentences are among those
# scored here), so its val score is the maximum over epochs of a noisy measurement, biased upwards; on
# testA and testB, not used for the choice, the two checkpoints meet on equal terms. The same holds for
# the papers' tables: their RefCOCO and G-Ref `val` columns are the numbers the choice maximised, and
# the RefCOCO+ testB number is the maximum over epochs of the reported quantity itself. Selecting on
# the split you report is biased upwards whatever the model: even if every epoch had the same true
# score, the largest of 50 noisy measurements of it lies above it on average. Measuring the bias needs
# a scored checkpoint per epoch (a training run of its own); exercise 5 simulates it. This book never
# selects on a test split: its RefCOCO+ configurations validate on `val` (so its RefCOCO+ testB score
# and the paper's are chosen differently, and the paper's can be the higher by the selection alone).

# %% [markdown]
# ## How much does the threshold matter?
#
# The official threshold 0.35 was chosen by the CRIS authors; nothing in the metric requires it. To sweep
# it cheaply we keep each validation sentence's probability map at the original size (one forward pass,
# `postprocess.logits_to_probs`) and threshold the *same* maps at every value. At the official threshold
# the sweep must reproduce `engine.evaluate` exactly, which is checked below. Choosing a threshold on
# val and then reporting test splits is fair; choosing it on a test split is not (the same rule as for
# the checkpoint, {ref}`sec-checkpoint-selection`).

# %%
probs, targets = [], []
with torch.no_grad():
    for batch in DataLoader(ds_val, batch_size=eval_batch, collate_fn=collate):
        logits = focus(batch["image"], batch["tokens"])
        boxes = [m["letterbox"] for m in batch["meta"]]
        probs += postprocess.logits_to_probs(logits, boxes)
        targets += [m["orig_mask"] for m in batch["meta"]]
thresholds = sorted(set(np.round(np.arange(0.1, 0.901, 0.1), 2).tolist()) | {threshold})
sweep = {}
for t in thresholds:
    acc = RefSegMetrics()
    acc.update_many([p > t for p in probs], targets)
    sweep[t] = acc.compute()
gap = abs(sweep[threshold]["mIoU"] - results[focus_model, "val"]["mIoU"])
print(f"{name[focus_model]} {VAL} mIoU at {threshold}: sweep - evaluate = {gap:.1e}")
assert gap < 1e-9
best_t = max(thresholds, key=lambda t: sweep[t]["mIoU"])

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Validation mIoU and oIoU of the focus model when its probability maps are thresholded at each value (the official 0.35 dashed). A flat curve near 0.35 means the choice hardly matters for this model.", "name": "fig-threshold"}}
fig, ax = plt.subplots(figsize=(6, 2.8))
for metric in ("mIoU", "oIoU"):
    ys = [100 * sweep[t][metric] for t in thresholds]
    ax.plot(thresholds, ys, marker=".", label=metric)
ax.axvline(threshold, color="grey", ls="--", lw=1, label=f"official {threshold}")
ax.set(xlabel="threshold on the probability", ylabel=f"{VAL} score (%)")
ax.set_title(f"{name[focus_model]}: threshold sensitivity on {VAL}", fontsize=10)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% tags=["hide-input"]
spread = [100 * s["mIoU"] for s in sweep.values()]
print(f"over the swept range {VAL} mIoU spans {min(spread):.2f} to {max(spread):.2f}")
show_markdown(
    verdicts.compare(
        sweep[best_t]["mIoU"],
        sweep[threshold]["mIoU"],
        f"the best swept threshold ({best_t:.2f})",
        f"the official {threshold}",
    )
)

# %% [markdown]
# ## Qualitative results: the best and the worst sentences
#
# The records give each validation sentence's IoU and predicted mask (a COCO RLE, read back with
# `refseg_core.data.rle.rle_to_mask`). {numref}`fig-best-worst-cris` and {numref}`fig-best-worst-lts`
# show each model's best and worst validation sentences; the predicted mask is bright with an orange
# outline, the target a dashed blue outline.

# %%
sentence_of = per_sentence.sentence_index(refer, eval_splits)
ranked = {key: per_sentence.ranked(records[key, "val"]) for key in models}


def best_and_worst(key: str) -> None:
    recs = ranked[key][::-1][:num_examples] + ranked[key][:num_examples]
    fig, axes = grid(len(recs), cols=num_examples, size=2.2)
    per_sentence.draw(axes, recs, refer, sentence_of, wrap=26)
    fig.suptitle(f"{name[key]}: best (top), worst (bottom) on {VAL}", fontsize=10)
    plt.tight_layout()
    plt.show()


# %% tags=["hide-input"] mystnb={"figure": {"caption": "CRIS: the best (top) and worst (bottom) validation sentences by IoU. Orange: the predicted mask; dashed blue: the target. In the worst row, look for whether the model picked another shape of the named colour or position (it read part of the sentence) or nothing at all.", "name": "fig-best-worst-cris"}}
best_and_worst("cris")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "LTS: the best (top) and worst (bottom) validation sentences by IoU, drawn as for CRIS. Compare the worst row with CRIS's: the same kinds of sentence, or different ones?", "name": "fig-best-worst-lts"}}
best_and_worst("lts")

# %% [markdown]
# ## Failure cases by kind of expression
#
# Chapter 1 sorted the expressions by the cue they use, from their words: a *relation* word ("above",
# "next", "of" ...) makes it a relation expression, else a *location* word ("left", "top" ...) a
# location expression, else it names attributes only (colour, size, shape). The same rule, applied to
# every evaluated sentence of every split (`per_sentence.by_kind`):

# %% tags=["hide-input"]
print("relation words:", " ".join(sorted(RELATION_WORDS)))
print("location words:", " ".join(sorted(LOCATION_WORDS)))
every = {k: [r for split in eval_splits for r in records[k, split]] for k in models}
kinds = {k: per_sentence.by_kind(every[k], sentence_of) for k in models}
scores = {k: per_sentence.kind_scores(kinds[k]) for k in models}
heads = [f"{name[k]} {m}" for k in models for m in ("mIoU", "Pr@0.5")]
show_markdown(
    markdown_table(
        [
            [kind, scores["cris"][kind]["n"]]
            + [100 * scores[k][kind][m] for k in models for m in ("mIoU", "prec@0.5")]
            for kind in KINDS
        ],
        headers=["kind", "n"] + heads,
    )
)

# %% [markdown]
# Is one kind harder? The hardest kind against the easiest, with the margin of `refseg_core.verdicts`:

# %% tags=["hide-input"]
lines = []
for k in models:
    seen = [kd for kd in KINDS if scores[k][kd]["n"]]
    hard = min(seen, key=lambda kd: scores[k][kd]["mIoU"])
    easy = max(seen, key=lambda kd: scores[k][kd]["mIoU"])
    a, b = scores[k][hard]["mIoU"], scores[k][easy]["mIoU"]
    lines.append(f"* {name[k]}: " + verdicts.compare(a, b, f"{hard} expressions", easy))
show_markdown("\n".join(lines))

# %% [markdown]
# {numref}`fig-worst-by-kind` shows the two worst sentences of each kind for the focus model, and
# {numref}`fig-iou-vs-size` every sentence's IoU against the size of its target — small objects are
# where a stride-4 prediction loses the most.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The two worst sentences of each kind of expression for the focus model (orange: prediction; dashed blue: target). A failure that lands on a shape matching only part of the sentence shows which cue the model ignored.", "name": "fig-worst-by-kind"}}
groups = per_sentence.by_kind(every[focus_model], sentence_of)
worst = [r for kind in KINDS for r in per_sentence.ranked(groups[kind])[:2]]
fig, axes = grid(len(worst), cols=min(6, len(worst)))
per_sentence.draw(
    axes,
    worst,
    refer,
    sentence_of,
    wrap=24,
    title=lambda r, ref, s: f"IoU {r['iou']:.2f}: {s['raw']}",
)
fig.suptitle(f"{name[focus_model]}: the two worst sentences of each kind", fontsize=10)
plt.tight_layout()
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Per-sentence IoU against the area of the target (log scale), for both models on every evaluated split. Look at the left edge: the smallest targets are where the scores spread down to zero.", "name": "fig-iou-vs-size"}}
fig, ax = plt.subplots(figsize=(6, 2.8))
for key in models:
    areas = [refer.mask_area(sentence_of[r["sent_id"]][0]) for r in every[key]]
    ax.scatter(areas, [r["iou"] for r in every[key]], s=8, alpha=0.4, label=name[key])
ax.set(xscale="log", xlabel="target area (pixels, log)", ylabel="per-sentence IoU")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## gRefCOCO: several targets, or none
#
# gRefCOCO {cite}`liu2023gres` keeps the RefCOCO images but adds expressions that refer to *several*
# objects (the target is their union) and expressions that refer to *nothing* (the target is empty).
# Its metrics (chapter 2) are **gIoU** (mean per-sample score, an empty prediction of an empty target
# scoring 1), **cIoU** (cumulative $\sum I / \sum U$), **N-acc** (no-target sentences answered with an
# empty mask) and **T-acc** (target sentences answered with a non-empty mask).
#
# We first evaluate the RefCOCO-trained models on the gRefCOCO val split as they are. They were never
# shown an expression without a target, so nothing taught them to output an empty mask: N-acc measures
# whether they do so anyway.

# %% tags=["hide-input"]
gref_ok = synthetic or (Path(data.data_root) / "grefcoco").is_dir()
if not gref_ok:
    print(f"{data.data_root}/grefcoco does not exist: the gRefCOCO section is skipped")
if synthetic:
    ensure_synthetic(
        data.data_root,
        "grefcoco",
        data.synthetic_seed,
        data.synthetic_num_images,
        data.synthetic_image_size,
    )
GKEYS = ["gIoU", "cIoU", "N-acc", "T-acc", "mIoU", "oIoU"]
gres, grec, gcfg = {}, {}, {}
if gref_ok:
    grefer = Refer(data.data_root, "grefcoco", "unc")
    gsentence_of = per_sentence.sentence_index(grefer, ["val"])
    for key, model in models.items():
        gref_data = dict(dataset="grefcoco", split_by="unc")
        gcfg[key] = make_config(dict(eval_cfg[key].to_dict(), **gref_data))
        gres[key], grec[key] = engine.evaluate(
            model,
            grefer,
            split="val",
            input_size=configs[key].input_size,
            batch_size=eval_batch,
            threshold=threshold,
            return_records=True,
        )
        meta = engine.eval_meta(gcfg[key], "val", checkpoints[key], name[key])
        engine.write_eval(eval_output_dir / name[key], gres[key], meta)
    gbase = engine.trivial_baselines(grefer, "val")
    groups = per_sentence.by_target_kind(grec["cris"], grefer, gsentence_of)
    counts = ", ".join(f"{len(v)} {k}" for k, v in groups.items())
    print(f"grefcoco val: {len(gsentence_of)} sentences ({counts})")

# %% [markdown]
# ### Fine-tuning briefly on gRefCOCO
#
# A short fine-tune shows what the no-target expressions ask of a model. `engine.train` with
# `init_from=` starts a new run from the focus model's weights (and its vocabulary), with a fresh
# optimiser at the learning rate that run ended with, on the gRefCOCO training split (whose no-target
# samples have an all-zero mask) for one epoch over its first `gref_finetune_items` refs; then it is
# evaluated like the others. (`train` ends with a validation of its own; `max_eval_items` keeps that
# one short, since every sentence is scored below.)

# %% tags=["hide-input"]
if gref_ok and gref_finetune_items > 0:
    ck = load_checkpoint(checkpoints[focus_model])
    ft_cfg = {
        **ck["config"],
        "dataset": "grefcoco",
        "split_by": "unc",
        "data_root": data.data_root,
        "synthetic": synthetic,
        "init_from": str(checkpoints[focus_model]),
        "lr": max(g["lr"] for g in ck["optimizer"]["param_groups"]),  # its last rate
        "milestones": [],
        "warmup_steps": 0,
        "output_dir": str(eval_output_dir) + "_grefcoco",
        "epochs": 1,
        "max_train_items": gref_finetune_items,
        "time_limit_s": None,
        "max_eval_items": 64,
    }
    ft = engine.train(ft_cfg, progress=False, overwrite=True)
    ft_steps = max(r["step"] for r in ft.history)
    ft_key = f"{focus_model} + grefcoco"
    name[ft_key] = f"{name[focus_model]} + {ft_steps} steps on grefcoco"
    gres[ft_key], grec[ft_key] = engine.evaluate(
        ft.model,
        grefer,
        split="val",
        input_size=configs[focus_model].input_size,
        batch_size=eval_batch,
        threshold=threshold,
        return_records=True,
    )
    bs = ft.config.batch_size
    print(f"fine-tuned: {ft_steps} steps of batch {bs} ({gref_finetune_items} refs)")

# %% tags=["hide-input"]
if gref_ok:
    named = {f"{name[k]}": r for k, r in gres.items()}
    named |= {f"*{b.replace('_', ' ')}*": m for b, m in gbase.items()}
    label = f"model ({data_kind} data, percent)"
    show_markdown(metrics_table(named, GKEYS, label))
    papers = [
        p
        for m in ("LTS", "CRIS", "ReLA")
        for p in published.lookup(method=m, dataset="grefcoco", split="val")
    ]
    show_markdown(
        "The papers, on the real gRefCOCO val split (not comparable in value):\n\n"
        + markdown_table(papers, columns=["method", "metric", "value", "source"])
    )

# %% [markdown]
# What the sentences of each kind get, per model: the mean IoU over single- and multi-target sentences,
# and over no-target sentences the number answered with an empty mask (that is N-acc).

# %% tags=["hide-input"]
if gref_ok:
    rows = []
    for key, recs in grec.items():
        groups = per_sentence.by_target_kind(recs, grefer, gsentence_of)
        empty = [rle_to_mask(r["mask"]).sum() == 0 for r in groups.get("no target", [])]
        rows.append(
            (
                name[key],
                100 * per_sentence.mean_iou(groups.get("single", [])),
                100 * per_sentence.mean_iou(groups.get("multi", [])),
                f"{sum(empty)} of {len(empty)}",
            )
        )
    heads = ["model", "single: IoU", "multi: IoU", "no target: empty"]
    show_markdown(markdown_table(rows, headers=heads))
    last = list(grec)[-1]
    if last != focus_model:  # the fine-tuned model against the one it started from
        moves = []
        for k in ("gIoU", "cIoU", "N-acc", "T-acc"):
            after, before = gres[last][k], gres[focus_model][k]
            verdict = verdicts.compare(after, before, "fine-tuned", "before", k)
            moves.append(f"* {verdict}")
        show_markdown("\n".join(moves))

# %% [markdown]
# {numref}`fig-grefcoco` shows multi-target and no-target examples, predicted by the last model of the
# table. For a no-target sentence the correct answer is an empty image: nothing bright, no orange
# outline.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "gRefCOCO val: multi-target sentences (left; the dashed blue target is the union of the objects) and no-target sentences (right; the correct answer is no orange outline at all), predicted by the last model of the table.", "name": "fig-grefcoco"}}
if gref_ok:
    half = max(1, num_examples // 2)

    def of_kind(kind):
        return lambda r, ref: per_sentence.target_kind(grefer, ref) == kind

    shown = []
    for tk in ("multi", "no target"):
        keep = of_kind(tk)
        shown += per_sentence.first_per_image(grec[last], gsentence_of, half, keep)

    def what(r, ref, s):
        if grefer.is_no_target(ref):
            pixels = int(rle_to_mask(r["mask"]).sum())
            return f"no target, predicted {pixels} px: {s['raw']}"
        return f"{len(grefer.ann_ids(ref))} targets, IoU {r['iou']:.2f}: {s['raw']}"

    fig, axes = grid(len(shown), cols=num_examples)
    per_sentence.draw(axes, shown, grefer, gsentence_of, title=what)
    fig.suptitle(f"{name[last]}: predictions on grefcoco val", fontsize=10)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Summary
#
# * Evaluation follows the official CRIS path: sigmoid at stride 4, bicubic to the input size, inverse
#   letterbox to the original size, threshold 0.35; IoU at the original resolution, every sentence.
# * The CRIS table scores `best_model.pth`, the best of 50 epochs by validation mIoU (testB for the
#   official RefCOCO+ configurations); `best.pt` is its counterpart here, scored next to `last.pt`. A
#   score on the split the checkpoint was chosen on is optimistic; this book never selects on a test
#   split.
# * Paper numbers sit next to ours only under the same metric (CRIS: mIoU; LTS: oIoU; GRES: cIoU/gIoU),
#   and smoke-scale numbers on synthetic data are not comparable in value to the papers'.
# * The threshold is a free choice; sweep it on val only.
# * Per-sentence records turn a single score into failure analysis: by kind of expression, by object
#   size.
# * On gRefCOCO a model must also learn to answer "nothing"; N-acc measures it, gIoU rewards it.
#
# ## Exercises
#
# 1. Re-run with `focus_model = "lts"`. Is LTS more or less sensitive to the threshold than CRIS?
#
# ```{dropdown} Solution
# Set `focus_model = "lts"` in the parameters cell and run the chapter again: the step-by-step figure,
# the sweep and {numref}`fig-threshold` are then LTS's. Compare the spread printed under the figure and
# the verdict sentence with those of the CRIS run; a model whose probabilities sit close to 0 or 1
# (confident) has a flat curve, one with many values near the threshold a steep one.
# ```
#
# 2. Replace step 2 of the post-processing by nearest-neighbour up-sampling of a *binary* stride-4 mask.
#    How much mIoU is lost, and on which object sizes?
#
# ````{dropdown} Solution
# Threshold first, then up-sample the binary mask, then undo the letterbox:
#
# ```python
# acc = RefSegMetrics()
# for batch in DataLoader(ds_val, batch_size=eval_batch, collate_fn=collate):
#     with torch.no_grad():
#         logits = focus(batch["image"], batch["tokens"])
#     for lg, m in zip(logits, batch["meta"]):
#         box = LetterboxParams.from_dict(m["letterbox"])
#         binary = (torch.sigmoid(lg[None]) > threshold).float()
#         up = F.interpolate(binary, size=(box.size, box.size), mode="nearest")
#         acc.update(inverse_letterbox(up[0, 0], box, mode="nearest") > 0.5, m["orig_mask"])
# print(acc.compute()["mIoU"], results[focus_model, "val"]["mIoU"])
# ```
#
# Keep the per-sentence IoUs (`acc.update` returns each) and plot them against the target area as in
# {numref}`fig-iou-vs-size`: the loss concentrates on the small targets, whose edges fall inside one
# stride-4 cell.
# ````
#
# 3. Sort the failure cases by image instead of by expression kind: are some scenes hard for both
#    models?
#
# ```{dropdown} Solution
# Group the records by `sentence_of[r["sent_id"]][0]["image_id"]` and average each image's IoUs per
# model; then take the images that are in the lowest quarter for both models and draw their sentences
# with `per_sentence.draw`. Look at what those images share: many shapes of one colour, say, where an
# attribute alone does not single out the object, or small targets (compare {numref}`fig-iou-vs-size`).
# ```
#
# 4. Raise `gref_finetune_items` (or fine-tune for more epochs). How do N-acc and T-acc trade off as the
#    model learns to say "nothing"?
#
# ```{dropdown} Solution
# Set, for example, `gref_finetune_items = 4000` (a number larger than the training split means all of
# it) or add `"epochs": 3` to `ft_cfg`. N-acc rises as the model
# learns to leave no-target images empty; T-acc falls if it starts answering "nothing" to sentences
# that do have a target. The verdict sentences under the table say which moves exceed the margin.
# ```
#
# 5. Selecting on the split you report is biased upwards. Simulate it without training: give every
#    epoch the same true mIoU, add measurement noise, keep the largest. How far above the true score
#    does the kept one land, and how does that grow with the number of epochs?
#
# ````{dropdown} Solution
# Draw many runs of `n` noisy epochs and average the largest score of each run:
#
# ```python
# rng = np.random.default_rng(0)
# true, noise = 0.50, 0.01  # every epoch's true mIoU, the noise of one measurement
# for n in (1, 12, 50):
#     kept = (true + noise * rng.standard_normal((10_000, n))).max(axis=1)
#     print(f"{n} epochs: the kept score is {100 * (kept.mean() - true):+.2f} points off")
# ```
#
# One epoch is unbiased; with `n` epochs the expected maximum of Gaussian noise grows roughly like
# `noise * sqrt(2 ln n)`, so it keeps growing with the number of candidates, slowly. A real run's epochs
# differ in true score too, which is what selection is for; the bias is the part of the kept score that
# the noise put there, and only a split not used for the choice (testA, testB) measures the checkpoint
# without it.
# ````
