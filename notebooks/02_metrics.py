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
# # 2. Measuring a mask: IoU, mIoU, oIoU, Pr@X and the gRefCOCO metrics
#
# **What you will learn.** How a predicted mask is scored against the referred object; why the same
# predictions can get two quite different "IoU" numbers (mIoU and oIoU); why that matters when you compare
# CRIS {cite}`wang2022cris`, which reports mIoU, with LTS {cite}`jing2021lts` and most leaderboards, which
# report overall IoU; and how generalised referring segmentation (gRefCOCO, {cite}`liu2023gres`) scores
# expressions that refer to *nothing*.
#
# Every number on this page is computed when the notebook runs, on the synthetic dataset of chapter 1,
# by `refseg_core.metrics`.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # the release
if "google.colab" in sys.modules:  # in Colab only: install the package, nothing else
    import subprocess

    package = f"refseg_core @ git+{REPO}@{REF}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["parameters"]
config = "smoke_cris"  # a shipped configuration: its data is the chapter's data
overrides = {}  # TrainConfig fields that replace the configuration's values
split = "val"
threshold_shift = 0.4  # system A shifts large objects by this fraction of their width

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from refseg_core import engine, metrics, verdicts
from refseg_core.config import load_config
from refseg_core.metrics import RefSegMetrics, iou
from refseg_core.notebook import show_markdown, show_source
from refseg_core.tables import metrics_table
from refseg_core.viz import overlay

cfg = load_config(config, overrides)  # data_root, dataset, split_by, synthetic_*
refer = engine.prepare_data(cfg)  # generates the synthetic set on first use
samples = [(ref, sent) for ref, sent in refer.sentences(split)]
print(f"{len(samples)} sentences in the {split} split")

# %% [markdown]
# ## Intersection over union
#
# For a predicted binary mask $P$ and the ground truth $G$ of one expression,
#
# $$\mathrm{IoU}(P, G) = \frac{|P \cap G|}{|P \cup G|}.$$
#
# The official CRIS evaluation adds $10^{-6}$ to the denominator, so an empty prediction of an empty
# target scores 0 — harmless on RefCOCO, where every expression refers to an object, but wrong for
# gRefCOCO, which is why it has its own metrics (end of this chapter). The function we use:

# %%
show_source(metrics.intersection_union)
show_source(metrics.iou)

# %% [markdown]
# To have predictions to score without a trained model, we simulate two systems with different
# failure modes, by transforming the ground truth:
#
# * **System A** is exact on small objects but misplaces *large* ones (shifted by a fraction of their
#   width) — it fails rarely, but on many pixels.
# * **System B** makes a fixed-size boundary error on *every* object (its masks are dilated by 3 pixels)
#   — harmless for big objects, devastating for small ones.


# %%
def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.max_pool2d(t, 2 * r + 1, stride=1, padding=r)[0, 0] > 0).numpy()


def shift(mask: np.ndarray, frac: float) -> np.ndarray:
    xs = np.where(mask.any(0))[0]
    dx = int(round(frac * (xs.max() - xs.min() + 1))) if len(xs) else 0
    return np.roll(mask, dx, axis=1) & (np.arange(mask.shape[1]) >= dx)[None, :]


targets = [refer.ref_mask(ref).astype(bool) for ref, _ in samples]
areas = np.array([t.sum() for t in targets])
median_area = np.median(areas)
system_a = [shift(t, threshold_shift) if t.sum() > median_area else t for t in targets]
system_b = [dilate(t, 3) for t in targets]

# %% mystnb={"figure": {"caption": "The two simulated systems on the smallest and the largest validation target. Each prediction is bright with an orange outline, the target a dashed blue outline, and each panel is titled with its IoU. System A is exact on the small object and misses most of the large one; system B's fixed 3-pixel margin costs the small object most of its IoU and the large one far less.", "name": "fig-metrics-systems"}}
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
small, large = int(np.argmin(areas)), int(np.argmax(areas))
for ax, idx, pred, name in [
    (axes[0], small, system_a, "A, small"),
    (axes[1], small, system_b, "B, small"),
    (axes[2], large, system_a, "A, large"),
    (axes[3], large, system_b, "B, large"),
]:
    img = refer.load_image(samples[idx][0])
    title = f"{name}: IoU {iou(pred[idx], targets[idx]):.2f}"
    overlay(ax, img, pred[idx], contour=targets[idx], title=title)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## mIoU and oIoU: two averages of the same predictions
#
# Over a split of $N$ expressions there are two ways to average:
#
# $$\mathrm{mIoU} = \frac{1}{N}\sum_{n} \frac{|P_n \cap G_n|}{|P_n \cup G_n|}, \qquad
#   \mathrm{oIoU} = \frac{\sum_n |P_n \cap G_n|}{\sum_n |P_n \cup G_n|}.$$
#
# mIoU gives every *expression* the same weight; oIoU gives every *pixel* the same weight, so large
# objects dominate it. `RefSegMetrics` accumulates both (and everything below) in a short vector of sums,
# which is what lets it add up across batches and GPUs without keeping masks.


# %%
def score(preds):
    m = RefSegMetrics()
    ious = m.update_many(preds, targets)
    return m.compute(), np.array(ious)


res_a, ious_a = score(system_a)
res_b, ious_b = score(system_b)
keys = ["mIoU", "oIoU", "prec@0.5", "prec@0.7", "prec@0.9"]
named = {"A (misplaces large objects)": res_a, "B (3-px boundary error)": res_b}
show_markdown(metrics_table(named, keys, label="system"))

# %% [markdown]
# Does the ranking of the two systems depend on the average? A difference counts only when it exceeds
# the book's margin, `refseg_core.verdicts.MARGIN` (2 points: float rounding alone moves a smoke
# run's scores by about that much between two machines):

# %%
for key in ["mIoU", "oIoU"]:
    print(verdicts.compare(res_a[key], res_b[key], "system A", "system B", metric=key))

# %% mystnb={"figure": {"caption": "Per-expression IoU of both systems against the target's area (log scale). System A's points are 1 for small targets and low for large ones, system B's rise with the area. mIoU weighs every point alike; oIoU weighs each by its area, so the large targets on the right decide it.", "name": "fig-metrics-area"}}
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.scatter(areas, ious_a, s=10, alpha=0.6, label="system A")
ax.scatter(areas, ious_b, s=10, alpha=0.6, label="system B")
ax.set_xscale("log")
ax.set_xlabel("target area (pixels, log scale)")
ax.set_ylabel("per-expression IoU")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# **Why it matters.** The official CRIS code computes the per-sentence IoU and reports their *mean*
# (issue 12 of the official CRIS repository), while LTS and most later work report overall IoU, and
# Papers With Code lists CRIS's numbers under "Overall IoU". As the table and the two verdicts show,
# the two averages can differ by many points *and* rank the same systems in opposite orders, so a
# comparison across papers is only fair on the same metric. This book reports both for every run, and
# the comparison table of chapter 7 labels each paper number with its metric.
#
# ## Precision at a threshold
#
# $\Pr@X$ is the fraction of expressions whose IoU is *strictly* greater than $X$, the official CRIS
# convention. It reads the distribution of per-sample IoUs that mIoU summarises by its mean:

# %% mystnb={"figure": {"caption": "Pr@X of both systems as the threshold X sweeps from 0 to 1; the dotted lines are the five official thresholds. System A's curve stays flat at the share of targets it gets exactly right; system B's falls to zero well before X = 1, because its 3-pixel margin caps the IoU of every object.", "name": "fig-metrics-prx"}}
xs = np.linspace(0, 1, 101)
fig, ax = plt.subplots(figsize=(6, 3.2))
for name, ious in [("system A", ious_a), ("system B", ious_b)]:
    ax.plot(xs, [(ious > x).mean() for x in xs], label=name)
for t in metrics.PR_THRESHOLDS:
    ax.axvline(t, color="grey", lw=0.5, ls=":")
ax.set_xlabel("threshold X")
ax.set_ylabel("Pr@X")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The exact rule has a catch. The official code does not compare with the decimal labels: its thresholds
# are `torch.arange(0.5, 1.0, 0.1)`, a *float32* tensor, and float32 cannot hold 0.6, 0.7, 0.8 or 0.9.
# The cut-offs are their nearest float32 values, two of them just below the label and two just above,
# and the (float64) IoU is compared with them by `>`. Together with the $10^{-6}$ in the IoU's
# denominator this decides borderline samples: 70 of 100 pixels gives $70/(100 + 10^{-6}) = 0.69999999$,
# which is *not* above 0.7 but *is* above the float32 cut-off, so it counts for $\Pr@0.7$.
# `metrics.PR_CUTOFFS` holds the official values and `RefSegMetrics` uses them:

# %%
for label, cut in zip(metrics.PR_THRESHOLDS, metrics.PR_CUTOFFS):
    print(f"Pr@{label}: IoU > {cut:.10f}")
seventy = np.zeros((1, 100), bool)
seventy[0, :70] = True
m = metrics.RefSegMetrics()
seventy_iou = m.update(seventy, np.ones((1, 100), bool))
print(f"IoU {seventy_iou:.10f} -> prec@0.7 = {m.compute()['prec@0.7']:.0f}")

# %% [markdown]
# ## Generalised RES: when an expression refers to several objects, or to none
#
# gRefCOCO {cite}`liu2023gres` adds *multi-target* expressions ("all blue shapes": the target is the
# union of the objects) and *no-target* expressions (describing something absent: the target is empty).
# A per-sample IoU is undefined for an empty target with an empty prediction, so the GRES evaluator counts
# four cases, named from the no-target side:
#
# | sample | prediction | count | per-sample term | adds to I, U |
# |---|---|---|---|---|
# | no target | empty | TP | 1 | nothing |
# | no target | non-empty | FN | 0 | U += \|P\| |
# | has target | empty | FP | 0 | U += \|G\| |
# | has target | non-empty | TN | IoU | I, U as usual |
#
# **gIoU** is the mean of the per-sample terms, **cIoU** the cumulative $\sum I / \sum U$, **N-acc**
# $= TP/(TP+FN)$ and **T-acc** $= TN/(TN+FP)$. "No target" is a property of the *expression's ref*
# (`ann_id == [-1]`), as in ReLA's evaluator, not of its mask: a ref that names an object whose annotation
# happens to decode to nothing is still a targeted sample, and an empty prediction for it is an FP. So
# `RefSegMetrics.update` takes the ref's flag (`no_target=`, which `engine.evaluate` passes from the
# dataset); only without one does it fall back to "empty target". We score two simulated systems on the
# synthetic gRefCOCO split: one that always outputs *some* mask (the dilated target, or a blob when
# there is no target) and one that in addition says "nothing" whenever the target is empty.

# %%
gcfg = load_config(config, {**overrides, "dataset": "grefcoco", "split_by": "unc"})
grefer = engine.prepare_data(gcfg)
gsamples = grefer.sentences(split)
gtargets = [grefer.ref_mask(ref).astype(bool) for ref, _ in gsamples]
# no target: read from the ref, as ReLA decides
gno_target = [grefer.is_no_target(ref) for ref, _ in gsamples]


def blob(shape):
    m = np.zeros(shape, dtype=bool)
    h, w = shape
    m[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = True
    return m


always = [blob(t.shape) if nt else dilate(t, 1) for t, nt in zip(gtargets, gno_target)]
abstains = [np.zeros_like(t) if nt else p for t, nt, p in zip(gtargets, gno_target, always)]
gkeys = ["gIoU", "cIoU", "N-acc", "T-acc", "mIoU", "oIoU"]
gres = {}
for name, preds in [
    ("always predicts a mask", always),
    ("says 'nothing' when nothing is there", abstains),
]:
    m = RefSegMetrics()
    m.update_many(preds, gtargets, gno_target)
    gres[name] = m.compute()
n_empty = sum(gno_target)
n_multi = sum(len(grefer.ann_ids(ref)) > 1 for ref, _ in gsamples)
print(f"{len(gsamples)} sentences: {n_empty} no-target, {n_multi} multi-target")
show_markdown(metrics_table(gres, gkeys, label="system"))

# %% [markdown]
# The first system can never score on a no-target expression (N-acc 0). The classic mIoU punishes the
# second system for its *correct* empty answers (the official formula gives $0/(0+10^{-6}) = 0$), while
# gIoU rewards them; cIoU is unchanged by correct empty answers, because they add nothing to either sum.
#
# ## Summary
#
# * IoU scores one mask; mIoU averages per expression, oIoU per pixel. They can rank systems differently.
# * CRIS reports mIoU; LTS and most leaderboards report oIoU. Compare like with like.
# * Pr@X reads the IoU distribution at thresholds (strictly greater than the float32 value of X).
# * gRefCOCO scores no-target expressions with gIoU, cIoU, N-acc and T-acc.
#
# ## Exercises
#
# 1. Change `threshold_shift` (a papermill parameter: `-p threshold_shift 0.1`) to 0.1, 0.2 and 0.6.
#    For which shifts does oIoU rank the systems differently from mIoU by more than the margin?
#
# ````{dropdown} Solution
# Sweep the shift and print the verdicts (the cells above, in a loop):
#
# ```python
# for frac in [0.1, 0.2, 0.3, 0.4, 0.6]:
#     a = score([shift(t, frac) if t.sum() > median_area else t for t in targets])[0]
#     print(frac, verdicts.compare(a["oIoU"], res_b["oIoU"], "A", "B", metric="oIoU"))
# ```
#
# A larger shift costs system A more pixels on the large objects, and only there. oIoU, which the
# large objects dominate, falls quickly with the shift; mIoU falls slowly, because the half of the
# expressions with small targets keeps an IoU of 1. So for small shifts A wins both averages, in
# between the oIoU verdict is "cannot tell", and for large shifts oIoU puts B above A while mIoU still
# puts A above B.
# ````
#
# 2. Replace system B's 3-pixel error by an error proportional to the object's size, for example a
#    dilation radius of `max(1, round(0.1 * np.sqrt(t.sum())))`. Which average moves, and why?
#
# ```{dropdown} Solution
# mIoU moves up, to about oIoU. With a fixed radius a small object loses a large fraction of its IoU and
# a big one almost none, so per-expression IoUs spread widely and their mean (mIoU) sits far from the
# pixel-weighted oIoU. With a radius proportional to the size every object loses about the same
# fraction, the per-expression IoUs become alike, and the two averages nearly agree.
# ```
#
# 3. Add a third gRefCOCO system that predicts an empty mask for *every* expression. Before you run
#    it, say what its gIoU, cIoU, N-acc and T-acc will be; then check.
#
# ```{dropdown} Solution
# Every no-target expression is a TP (term 1) and every targeted one an FP (term 0): gIoU is the share
# of no-target expressions, N-acc is 100 and T-acc is 0. Nothing is ever intersected, so cIoU is 0.
# Add `("predicts nothing", [np.zeros_like(t) for t in gtargets])` to the list of systems.
# ```
