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

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # this book's release of refseg_core
if "google.colab" in sys.modules:  # in Colab only: install the package (nothing else is downloaded)
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", f"refseg_core @ git+{REPO}@{REF}"], check=True
    )

# %% tags=["parameters"]
config = "smoke_cris"  # the data of this configuration (shipped with refseg_core) is the chapter's data
overrides = {}  # e.g. {"dataset": "refcoco+"}, or {"data_root": "/data/refer", "synthetic": False}
letterbox_size = 128  # the network's square input shown here (416 in the papers)
real_data_root = None  # a data_root filled by `python -m refseg_core data fetch` (e.g. "~/refseg-book/data")

# %%
import collections
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from refseg_core import configs, engine
from refseg_core.config import load_config
from refseg_core.data import verify as data_verify
from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.data.expression_kind import expression_kind
from refseg_core.data.refcoco_m import pair_with_refcoco
from refseg_core.data.refer import VALID_SPLITS_BY, Refer
from refseg_core.data.sources import DATASETS
from refseg_core.data.sources import label as dataset_label
from refseg_core.data.transforms import CLIP_MEAN, CLIP_STD, LetterboxParams, denormalize, inverse_letterbox
from refseg_core.text import ClipTokenizer, split_words
from refseg_core.viz import grid, overlay

cfg = load_config(config, overrides)  # data_root, dataset, split_by and the synthetic_* values
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
rows = [
    "| dataset | splitBy | " + " | ".join(["train", "val", "testA", "testB", "test"]) + " |",
    "|---" * 7 + "|",
]
for name, info in published["datasets"].items():
    refs = info["refs"]
    rows.append(
        f"| {dataset_label(name)} | {info['splitBy']} | "
        + " | ".join(f"{refs[s]:,}" if s in refs else "–" for s in ["train", "val", "testA", "testB", "test"])
        + " |"
    )
display(Markdown("\n".join(rows)))

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
refer = engine.prepare_data(cfg)  # generates the synthetic set into cfg.data_root on first use
root, dataset = Path(cfg.data_root), cfg.dataset
print("files:", *sorted(str(p.relative_to(root)) for p in (root / dataset).iterdir()), sep="\n  ")
print("splits:", refer.splits())

# %%
ref, sent = refer.sentences("train")[0]
print({k: v for k, v in ref.items() if k != "sentences"})
print(sent)

# %% [markdown]
# Each ref is one object (one annotation) with one or more sentences. A few training refs, the mask
# decoded with pycocotools from the polygons in `instances.json`:

# %%
train_refs = refer.split_refs("train")
fig, axes = grid(8, cols=4)
for ax, ref in zip(axes, train_refs[:8]):
    overlay(ax, refer.load_image(ref), refer.ref_mask(ref), title=ref["sentences"][0]["raw"])
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
rows = ["| split | refs | sentences | images | words per sentence |", "|---|---|---|---|---|"]
for s in refer.splits():
    st = refer.stats(s)
    rows.append(f"| {s} | {st['refs']} | {st['sentences']} | {st['images']} | {st['mean_words']:.1f} |")
display(Markdown("\n".join(rows)))

kinds, lengths = collections.Counter(), []
for _, s in refer.sentences("train"):
    lengths.append(len(split_words(s["raw"])))
    kinds[expression_kind(s["raw"])] += 1

fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
a.hist(lengths, bins=range(1, max(lengths) + 2), color="tab:blue", rwidth=0.85)
a.set_xlabel("words per expression")
a.set_ylabel("sentences")
b.bar(list(kinds), list(kinds.values()), color="tab:orange")
b.set_title("cue used (by keyword)", fontsize=10)
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
print(
    "image",
    tuple(item["image"].shape),
    "tokens",
    tuple(item["tokens"].shape),
    "mask",
    tuple(item["mask"].shape),
)
print("letterbox:", lb)
print("tokens:", item["tokens"].tolist(), "->", repr(tokenizer.decode(item["tokens"])))

back = inverse_letterbox(item["mask"], lb, mode="bilinear")[0] > 0.5
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
overlay(
    axes[0],
    denormalize(item["image"], CLIP_MEAN, CLIP_STD),
    item["mask"][0] > 0.5,
    title=f"letterboxed {letterbox_size}x{letterbox_size}",
)
val_ref, _ = refer.sentences("val")[0]  # evaluation items follow refer.sentences order
assert val_ref["ref_id"] == item["meta"]["ref_id"]
overlay(
    axes[1], refer.load_image(val_ref), item["meta"]["orig_mask"], title=f"original {lb.orig_w}x{lb.orig_h}"
)
inter = np.logical_and(back, item["meta"]["orig_mask"]).sum() / max(
    np.logical_or(back, item["meta"]["orig_mask"]).sum(), 1
)
axes[2].imshow(back, cmap="gray")
axes[2].set_title(f"mask mapped back: IoU with original {inter:.3f}", fontsize=9)
axes[2].axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The round trip is not perfect at the boundary: the mask was resampled down to the input size and back.
# That is the resolution limit every model in this book lives with, and why the official CRIS code
# thresholds an upsampled *probability* map at the original resolution rather than a small binary mask.
#
# A batch stacks images, tokens and masks; the metadata stays a list:

# %%
batch = collate([ds[i] for i in range(4)])
print({k: (tuple(v.shape) if hasattr(v, "shape") else f"list of {len(v)}") for k, v in batch.items()})

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
    rows = ["| dataset | splitBy | split | refs | sentences | images |", "|---|---|---|---|---|---|"]
    notes = []
    for d in fetched:
        rep = data_verify.verify(d, real, progress=False)  # the manifest, the counts, masks and images
        notes.append(f"{dataset_label(d)}: expected counts from {rep.expected_from}")
        for sb, splits in rep.counts.items():
            for s, c in splits.items():
                rows.append(
                    f"| {dataset_label(d)} | {sb} | {s} | {c['refs']:,} | {c['sentences']:,} | {c['images']:,} |"
                )
        for w in rep.warnings:
            print("warning:", w)
    display(Markdown("\n".join(rows) + f"\n\nVerified in `{real}`. " + "; ".join(notes) + "."))

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
# 1. Generate the `refcoco+` flavour (`-y "overrides: {dataset: refcoco+}"`). Which cue disappears from the bar chart?
# 2. Generate the `grefcoco` flavour. How are no-target refs stored, and what does `ref_mask` return?
# 3. Letterbox with `letterbox_size = 32`. How low does the round-trip IoU get for the smallest objects?
