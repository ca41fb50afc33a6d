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
# # 1. The task and the data
#
# **What you will learn.** What referring image segmentation asks of a model; how RefCOCO, RefCOCO+,
# G-Ref and gRefCOCO are stored on disk; how this book's synthetic dataset imitates them exactly, so
# every chapter runs in minutes on a laptop CPU and the *same* code reads the real data; and what a
# training sample looks like once it has been letterboxed to the network's square input.
#
# **The task.** Given an image and a referring expression — "the small green triangle", "the square above
# the red circle" — output a binary mask of the object (or, in gRefCOCO, objects) it refers to. Unlike
# semantic segmentation, the class is not fixed: the expression picks *one* instance among others of the
# same kind, by attributes, by location or by its relation to other objects.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # the release
if "google.colab" in sys.modules:  # in Colab only: install the package, nothing else
    import subprocess

    package = f"refseg_core @ git+{REPO}@{REF}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["parameters"]
config = "smoke_cris"  # a shipped configuration: its data is the chapter's data
overrides = {}  # e.g. {"dataset": "refcoco+"}
letterbox_size = 128  # the network's square input shown here (416 in the papers)
real_data_root = None  # a data_root filled by `python -m refseg_core data fetch` (e.g. "~/refseg-book/data")

# %%
import collections
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from refseg_core import configs, engine, metrics
from refseg_core.config import load_config
from refseg_core.data import verify as data_verify
from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.data.expression_kind import expression_kind
from refseg_core.data.refcoco_m import pair_with_refcoco
from refseg_core.data.refer import VALID_SPLITS_BY, Refer
from refseg_core.data.sources import DATASETS
from refseg_core.data.sources import label as dataset_label
from refseg_core.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    LetterboxParams,
    denormalize,
    inverse_letterbox,
)
from refseg_core.notebook import show_markdown
from refseg_core.tables import markdown_table
from refseg_core.text import ClipTokenizer, split_words
from refseg_core.viz import grid, overlay

cfg = load_config(config, overrides)  # data_root, dataset, split_by, synthetic_*
published = configs.published()

# %% [markdown]
# ## The real datasets
#
# RefCOCO and RefCOCO+ {cite}`yu2016refcoco` were collected with the ReferItGame
# {cite}`kazemzadeh2014referitgame` on COCO images: one player wrote an expression, another clicked the
# object. RefCOCO+ forbade absolute location words ("left", "top"), so its expressions must use appearance
# and relations. G-Ref (RefCOCOg) {cite}`mao2016gref` was written without a game and has longer
# expressions; the UMD split {cite}`nagaraja2016umd` is the one used for segmentation. gRefCOCO
# {cite}`liu2023gres` adds expressions that refer to several objects or to none. RefCOCO-M
# (`moondream/refcoco-m`) re-segments RefCOCO's val objects with pixel-accurate masks: a different
# benchmark, always named as such. Their sizes (refs per split, read from the `published.yaml` shipped with
# `refseg_core`, the counts `data fetch` verifies against):

# %%
splits = ["train", "val", "testA", "testB", "test"]
sizes = []
for name, info in published["datasets"].items():
    refs = [f"{info['refs'][s]:,}" if s in info["refs"] else None for s in splits]
    sizes.append([dataset_label(name), info["splitBy"], *refs])
show_markdown(markdown_table(sizes, headers=["dataset", "splitBy", *splits]))

# %% [markdown]
# All of them use the REFER layout (github.com/lichengunc/refer):
#
# ```
# <data_root>/images/train2014/COCO_train2014_000000xxxxxx.jpg     COCO images
# <data_root>/refcoco/instances.json       COCO annotations: images, masks (polygons; crowds: RLE), categories
# <data_root>/refcoco/refs(unc).p          a pickled list of refs: ref_id, ann_id, image_id, split,
#                                          sentences [{raw, sent, sent_id, tokens}]
# <data_root>/grefcoco/grefs(unc).json     gRefCOCO (or grefs(unc).p, read first when present): ann_id may
#                                          be a list; [-1] means "no target" (and no_target is true)
# ```
#
# Three things stay different from the official pipeline on purpose. The EXIF orientation tag of an
# image is ignored: the pixels are used as stored, which is the frame in which `instances.json` gives
# the width, height and polygons (a decoder that applies the tag, as OpenCV's does by default, would
# turn such an image against its mask). Transparent pixels are composited on the CLIP mean colour,
# the colour of the letterbox border, where OpenCV would drop the alpha channel and keep the stored
# colour; COCO's JPEGs have no alpha, so only custom images are concerned. And the letterbox places the
# resized image on whole pixels, where the official affine warp uses a sub-pixel offset: below one pixel,
# and predictions mapped back agree with the official warp with a mask IoU of about 0.995
# (`refseg_core.data.transforms` gives the details).
#
# ## The synthetic dataset
#
# The real images cannot be downloaded here and would take hours per epoch on a CPU, so the book
# generates its own data *in exactly these formats*: scenes of coloured shapes on noisy backgrounds, with
# expressions that need attributes, absolute locations and relations to pick the target. Only the forms
# the real files use are written: every object is a non-crowd polygon list (a ring's hole cut open by a
# zero-width slit, as COCO annotators do), and every gRefCOCO ref carries the boolean `no_target`. The
# same `Refer` loader then reads it as it would read RefCOCO.

# %%
refer = engine.prepare_data(cfg)  # generates the synthetic set on first use
folder = Path(cfg.data_root) / cfg.dataset
print("files:", *sorted(p.name for p in folder.iterdir()), sep="\n  ")
print("splits:", refer.splits())

# %%
ref, sent = refer.sentences("train")[0]
print({k: v for k, v in ref.items() if k != "sentences"})
print(sent)

# %% [markdown]
# Each ref is one object (one annotation) with one or more sentences. A few training refs, the mask
# decoded with pycocotools from the polygons in `instances.json`:

# %% mystnb={"figure": {"caption": "Eight training refs of the synthetic RefCOCO, each titled with its first expression. The referred shape is outlined and everything else is dimmed: the expression picks one shape among others of the same kind or colour, by attribute, position or relation.", "name": "fig-data-refs"}}
train_refs = refer.split_refs("train")
fig, axes = grid(8, cols=4)
for ax, ref in zip(axes, train_refs[:8]):
    title = ref["sentences"][0]["raw"]
    overlay(ax, refer.load_image(ref), refer.ref_mask(ref), title=title)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Statistics of the splits
#
# Split sizes, and the length of the expressions in words: short expressions name attributes, long ones
# describe relations. We also count which kind of cue each expression uses, by its words
# (`refseg_core.data.expression_kind`: a relation word such as "above", "next" or "touching" makes it a
# relation expression, else a location word such as "left" or "top" a location expression, else it names
# attributes only).

# %%
stats = [refer.stats(s) for s in refer.splits()]
columns = ["split", "refs", "sentences", "images", "mean_words"]
headers = ["split", "refs", "sentences", "images", "words per sentence"]
show_markdown(markdown_table(stats, columns, headers, digits=1))

# %% mystnb={"figure": {"caption": "The training expressions: their length in words (left) and the cue each one uses, judged by its words (right). Expressions run from one word to about a dozen, and attribute, location and relation cues all occur in large numbers, so a model has to read all three.", "name": "fig-data-stats"}}
kinds, lengths = collections.Counter(), []
for _, s in refer.sentences("train"):
    lengths.append(len(split_words(s["raw"])))
    kinds[expression_kind(s["raw"])] += 1

fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
a.hist(lengths, bins=range(1, max(lengths) + 2), color="tab:blue", rwidth=0.85)
a.set_xlabel("words per expression")
a.set_ylabel("sentences")
b.bar(list(kinds), list(kinds.values()), color="tab:orange")
b.set_xlabel("cue used (by keyword)")
b.set_ylabel("sentences")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## From a ref to a training sample
#
# The networks take a square input (416×416 in both papers). CRIS, like YOLO-style detectors, keeps the
# aspect ratio: the image is scaled so its longer side fits, centred, and the border is filled with the
# CLIP mean colour — a *letterbox*. The mask goes through the same geometry. To score a prediction we need
# the exact inverse, from the square back to the original image, so every sample carries its letterbox
# parameters.

# %%
tokenizer = ClipTokenizer(word_len=17)
ds = RefSegDataset(refer, "val", tokenizer, input_size=letterbox_size, train=False)
item = ds[0]
lb = LetterboxParams.from_dict(item["meta"]["letterbox"])
print("image", tuple(item["image"].shape), "tokens", tuple(item["tokens"].shape))
print("mask", tuple(item["mask"].shape))
print("letterbox:", lb)
print("tokens:", item["tokens"].tolist())
print("decoded:", repr(tokenizer.decode(item["tokens"])))

# %% [markdown]
# Mapping the mask back is `inverse_letterbox`: crop the image region out of the square, resize it to
# the original size, threshold. Its IoU with the original mask measures what the round trip loses:


# %%
def round_trip_iou(item) -> float:
    """IoU of the letterboxed mask, mapped back to the original size, and the mask."""
    lb = LetterboxParams.from_dict(item["meta"]["letterbox"])
    back = inverse_letterbox(item["mask"], lb, mode="bilinear")[0].numpy() > 0.5
    return metrics.iou(back, item["meta"]["orig_mask"])


print(f"letterboxed to {letterbox_size} px: round-trip IoU {round_trip_iou(item):.4f}")

# %% mystnb={"figure": {"caption": "One validation sample: the letterboxed network input with its mask (left), the original image and mask (middle), and the letterboxed mask mapped back to the original size (right, titled with its IoU against the original).", "name": "fig-data-letterbox"}}
val_ref, _ = refer.sentences("val")[0]  # evaluation items follow refer.sentences order
assert val_ref["ref_id"] == item["meta"]["ref_id"]
back = inverse_letterbox(item["mask"], lb, mode="bilinear")[0].numpy() > 0.5
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
square = denormalize(item["image"], CLIP_MEAN, CLIP_STD)
size_title = f"letterboxed {letterbox_size}x{letterbox_size}"
overlay(axes[0], square, item["mask"][0].numpy() > 0.5, title=size_title)
orig_title = f"original {lb.orig_w}x{lb.orig_h}"
overlay(axes[1], refer.load_image(val_ref), item["meta"]["orig_mask"], title=orig_title)
axes[2].imshow(back, cmap="gray")
axes[2].set_title(f"mapped back: IoU {round_trip_iou(item):.3f}", fontsize=9)
axes[2].axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# For this sample at this size, {numref}`fig-data-letterbox` shows the round trip keeping the mask.
# One sample says little: what the round trip loses depends on how far the image is scaled. We
# letterbox the first validation sentences at several input sizes, from far below the synthetic
# images' side to the size used above, and map each mask back:

# %%
n_round_trip = 200
round_trip = {}
for size in sorted({24, 32, 48, 64, 96, letterbox_size}):
    sized = RefSegDataset(refer, "val", tokenizer, input_size=size, train=False)
    items = [sized[i] for i in range(min(n_round_trip, len(sized)))]
    round_trip[size] = np.array([round_trip_iou(it) for it in items])
lbs = [LetterboxParams.from_dict(it["meta"]["letterbox"]) for it in items]
sides = np.array([max(lb.orig_w, lb.orig_h) for lb in lbs])
print(f"longer side: {sides.min()} to {sides.max()} px, median {np.median(sides):.0f}")
rows = [
    [size, ious.mean(), np.percentile(ious, 5), ious.min(), (ious < 0.999).mean()]
    for size, ious in round_trip.items()
]
head = ["input size", "mean IoU", "5th percentile", "worst", "share below 0.999"]
show_markdown(markdown_table(rows, headers=head, digits=3))

# %% mystnb={"figure": {"caption": "What the letterbox round trip loses, against the input size, over 200 validation sentences; the dotted line is the median longer side of their images. Below that side the mask is down-sampled and boundary pixels are lost, most for small objects (the 5th percentile falls first). Above it the loss is small but not zero: resampling up and back still moves a few boundary pixels.", "name": "fig-data-round-trip"}}
fig, ax = plt.subplots(figsize=(6, 3.4))
xs = list(round_trip)
ax.plot(xs, [v.mean() for v in round_trip.values()], "o-", label="mean")
p5 = [np.percentile(v, 5) for v in round_trip.values()]
ax.plot(xs, p5, "s--", label="5th percentile")
ax.axvline(np.median(sides), color="grey", ls=":", lw=1)
ax.set_xlabel("letterbox input size (px)")
ax.set_ylabel("round-trip IoU")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# So the round trip is nearly exact only when the input is at least as large as the image, and even
# then not perfect. The papers' 416-pixel input is smaller than most COCO images (up to 640 pixels on
# the longer side), so there the mask *is* down-sampled and its boundary is lost. That is the
# resolution limit every model in this book lives with, and why the official CRIS code thresholds an
# up-sampled *probability* map at the original resolution rather than a small binary mask.
#
# A batch stacks images, tokens and masks; the metadata stays a list:

# %%
batch = collate([ds[i] for i in range(4)])
for key, value in batch.items():
    print(key, tuple(value.shape) if hasattr(value, "shape") else f"{len(value)} dicts")

# %% [markdown]
# ## Using the real data
#
# One command fetches a real dataset, converts it to the layout above and verifies it by content
# (`refseg_core/data/fetch.py`; the sources, with their licences, citations and what was verified, are data
# in `refseg_core/data/sources.yaml`). In Colab, put `!` in front of each line. The RefCOCO annotations and
# the 1,500 val images (roughly 0.25 GB: half the 3,000 test images reported as about 0.5 GB) should take a
# few minutes there, RefCOCO-M (about 610 MB, its 1,190 photos included) a few more; these times are not
# measured, since the machines that build this book reach no data host.
#
# ```bash
# python -m refseg_core data fetch refcoco --images val
# python -m refseg_core data verify refcoco
# python -m refseg_core data fetch refcoco_m
# ```
#
# They write under `~/refseg-book/data` (the default `--root`, where the shipped configurations look):
# `refcoco/refs(unc).p` and `refcoco/instances.json` rebuilt from the Hugging Face parquet copy (one row per
# ref), `refcoco/refseg_manifest.json` (source, the revision resolved, SHA-256 of every file, the counts),
# the val images in `images/train2014/`, and `refcoco_m/` with its photos in `refcoco_m/images/`. The refs
# and images of every split must equal the published counts of the table above, every mask must decode
# and every image must decode at its recorded size, or the command stops with one sentence saying which;
# a rerun with everything in place makes no request. `--source archive` takes the original REFER zips
# (kept by the Wayback Machine; the only source of the google splits), `--images all` the training
# images too.
#
# Given such a folder, the cells below verify what is there and show a few real refs; with RefCOCO and
# RefCOCO-M both present, the same objects with their original polygon masks and their re-segmented
# masks. For example with papermill:
#
# ```bash
# papermill notebooks/01_data.ipynb 01_data_real.ipynb -p real_data_root ~/refseg-book/data
# ```
#
# Other chapters read the folder as their data with `overrides: {data_root: ..., synthetic: false}`.

# %%
real = Path(real_data_root).expanduser() if real_data_root else None
fetched = [] if real is None else [d for d in DATASETS if (real / d / "refseg_manifest.json").is_file()]
if real is None:
    print("real_data_root is None: no real data was given to this run, so the real-data cells are skipped.")
elif not fetched:
    print(f"{real} holds no dataset fetched by `data fetch`, so the real-data cells are skipped.")
else:
    rows, notes = [], []
    for d in fetched:
        rep = data_verify.verify(d, real, progress=False)  # the manifest, the counts, masks and images
        notes.append(f"{dataset_label(d)}: expected counts from {rep.expected_from}")
        for sb, splits in rep.counts.items():
            for s, c in splits.items():
                rows.append([dataset_label(d), sb, s, c["refs"], c["sentences"], c["images"]])
        for w in rep.warnings:
            print("warning:", w)
    heads = ["dataset", "splitBy", "split", "refs", "sentences", "images"]
    table = markdown_table(rows, headers=heads)
    show_markdown(table + f"\n\nVerified in `{real}`. " + "; ".join(notes) + ".")

# %%
shown = [d for d in fetched if d != "refcoco_m"]
if shown:  # a few real refs of the first dataset whose images are in place
    real_refer = Refer(real, shown[0], VALID_SPLITS_BY[shown[0]][0])
    with_images = [r for r in real_refer.split_refs("val") if real_refer.image_path(r).is_file()][:4]
    if with_images:
        fig, axes = grid(len(with_images), cols=4)
        for ax, r in zip(axes, with_images):
            overlay(ax, real_refer.load_image(r), real_refer.ref_mask(r), title=r["sentences"][0]["raw"])
        plt.tight_layout()
        plt.show()

# %%
pairs = []
if {"refcoco", "refcoco_m"} <= set(fetched):  # the same objects, RefCOCO's polygons vs RefCOCO-M's masks
    m_refer, c_refer = Refer(real, "refcoco_m", "unc"), Refer(real, "refcoco", "unc")
    pairs = pair_with_refcoco(m_refer, c_refer)
    print(
        f"{len(pairs):,} of {len(m_refer.refs):,} RefCOCO-M objects overlap a RefCOCO val object of their image"
    )
if pairs:
    ious = np.array([iou for _, _, iou in pairs])
    print(
        f"IoU between the two masks of each such object: median {np.median(ious):.3f}, mean {ious.mean():.3f}"
    )
    fig, axes = plt.subplots(2, min(3, len(pairs)), figsize=(10, 6), squeeze=False)
    for k, (mr, cr, iou) in enumerate(pairs[:3]):
        img = m_refer.load_image(mr)
        overlay(axes[0, k], img, c_refer.ref_mask(cr), title=f"RefCOCO: {cr['sentences'][0]['raw']}")
        overlay(axes[1, k], img, m_refer.ref_mask(mr), title=f"RefCOCO-M (IoU {iou:.2f})")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Summary
#
# * A sample is (image, expression) -> mask of the referred object(s).
# * The REFER layout: `instances.json` + `refs(<splitBy>).p` (+ `grefs(unc).json` for gRefCOCO) + COCO images.
# * The synthetic set is written in that layout, so the real loader reads both.
# * Letterboxing keeps the aspect ratio; its parameters travel with the sample to map predictions back.
#
# ## Exercises
#
# 1. Generate the `refcoco+` flavour (`overrides = {"dataset": "refcoco+"}`, or
#    `-y "overrides: {dataset: refcoco+}"` with papermill). Which cue disappears from the bar chart of
#    {numref}`fig-data-stats`, and why?
#
# ```{dropdown} Solution
# The *location* bar is gone. RefCOCO+ forbade absolute location words ("left", "top"), and the
# generator follows that rule: its `refcoco+` expressions use attributes and relations only, and its
# relations keep "near" and "touching" but drop the directions ("above", "left of").
# ```
#
# 2. Generate the `grefcoco` flavour (`overrides = {"dataset": "grefcoco", "split_by": "unc"}`). How are
#    no-target refs stored, and what does `refer.ref_mask` return for one?
#
# ````{dropdown} Solution
# A no-target ref has `ann_id == [-1]` and `no_target: True` (`refer.is_no_target(ref)` reads them);
# `refer.ref_mask(ref)` returns an all-zero mask of the image's size. A multi-target ref lists several
# annotation ids and its mask is their union:
#
# ```python
# grefer = engine.prepare_data(load_config(config, {"dataset": "grefcoco", "split_by": "unc"}))
# empty = next(r for r in grefer.split_refs("val") if grefer.is_no_target(r))
# print(empty["ann_id"], grefer.ref_mask(empty).sum())  # [-1] 0
# ```
# ````
#
# 3. `round_trip_iou` maps the mask back with bilinear resampling and a 0.5 threshold. Map it back with
#    `mode="nearest"` instead and redraw {numref}`fig-data-round-trip`. Which mode loses less below the
#    image size, and why does the official pipeline resample probabilities rather than binary masks?
#
# ```{dropdown} Solution
# Replace `mode="bilinear"` by `mode="nearest"` in `round_trip_iou` and rerun the last cells. Nearest
# neighbour copies whole pixels, so a down-sampled boundary comes back as a staircase and the IoU falls
# further than with bilinear resampling, which interpolates a soft edge that the threshold then places
# between pixels. A network's output is a probability map for the same reason: a soft map resampled to
# the original size and thresholded there keeps sub-pixel boundary information that a binary mask has
# already thrown away.
# ```
