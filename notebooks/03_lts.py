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
# # 3. LTS: Locate then Segment
#
# **What you will learn.** How "Locate then Segment" {cite}`jing2021lts` splits referring segmentation
# into two steps — first *where* the referred object is (a coarse **position prior**), then *which pixels*
# belong to it; what each module computes, in equations, in code and in tensor shapes; how the two
# cross-modal interactions the paper names ("filtering" and "transformer") produce the prior; and what the
# prior is worth, measured by training the model with and without it on the synthetic data of chapter 1.
#
# **No official code.** The authors never released an implementation. The paper fixes the pipeline —
# ConvNet image features and a bi-GRU text encoder, fused; a cross-modal interaction producing the prior;
# the prior concatenated with the fused features and decoded by a light convolutional network — but leaves
# many details open. `refseg_core.models.lts` is, as far as we know, the first open implementation; every
# choice it had to make is a keyword of `build_model("lts", ...)` and is listed in a table at the end of
# the chapter, with the value used and why.
#
# Everything below runs on a CPU in a few minutes with `lts_tiny` (the paper's topology at 1/8 width) on
# small generated images, so the numbers are *smoke-scale*: they show that the pieces work and how they
# interact, not what LTS scores on RefCOCO.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # this book's release of refseg_core
if "google.colab" in sys.modules:  # in Colab only: install the package (nothing else is downloaded)
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", f"refseg_core @ git+{REPO}@{REF}"], check=True
    )

# %% tags=["parameters"]
config = "smoke_lts"  # a configuration shipped with refseg_core (refseg_core/configs/) or a YAML file
overrides = {}  # TrainConfig fields that replace the configuration's values, e.g. {"device": "cuda"}
dry_run = False  # print the resolved configuration and stop before training
# This chapter: three runs of equal budget, one per interaction variant. Each trains `run_epochs` epochs
# (the configuration's milestones scaled from its `epochs` to `run_epochs`).
run_epochs = 3
n_examples = 4  # validation samples in the figures
num_threads = 2  # torch CPU threads; use 1 when other processes share the cores (OpenMP spin-waits)

# %%
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from refseg_core import configs, engine
from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.data.transforms import CLIP_MEAN, CLIP_STD, denormalize
from refseg_core.models import lts as lts_module
from refseg_core.models import lts_fusion, lts_segment, position_prior
from refseg_core.models.darknet import DarkNet53
from refseg_core.models.gru_text import GRUTextEncoder
from refseg_core.notebook import finish_dry_run, resolve_config
from refseg_core.notebook import show_source as show
from refseg_core.viz import attention_to_words, heatmap, overlay

cfg = resolve_config(config, overrides, dry_run)  # what `python -m refseg_core train --config` runs
finish_dry_run(dry_run)

# %%
t_notebook = time.time()
# Small tensors gain little from a second thread, and on a busy machine OpenMP threads waiting for each
# other can make every step many times slower; one thread keeps the runtime predictable.
torch.set_num_threads(num_threads)
published = configs.published()
refer = engine.prepare_data(cfg)  # generates the synthetic dataset on first use
torch.manual_seed(cfg.seed)
untrained = engine.build_model_for(cfg, refer)  # lts_tiny, vocabulary from the training expressions
print(refer)
print(
    f"{type(untrained).__name__}: {sum(p.numel() for p in untrained.parameters()) / 1e6:.2f}M parameters, "
    f"vocabulary of {len(untrained.tokenizer)} words"
)

# %% [markdown]
# ## The pipeline
#
# For an image $I$ and an expression of $L$ words, LTS computes (paper Fig. 2, Sec. 3):
#
# 1. **Visual features** $V_3, V_4, V_5$ at strides 8, 16, 32 from a ConvNet;
# 2. **Text features**: word states $w_1, \dots, w_L$ and a sentence vector $s$ from a bi-GRU;
# 3. **Cross-modal features** $F$ (stride 8): each visual level gated by the sentence and aggregated
#    top-down (Sec. 3.1);
# 4. **Locate**: a cross-modal interaction turns $F$ and the words into a one-channel map of logits $P$,
#    the *position prior*, trained to light up where the object is (Sec. 3.2);
# 5. **Segment**: $[F; \sigma(P)]$ goes through a light convolutional head to the mask logits $M$ at
#    stride 4 (Sec. 3.3).
#
# The loss supervises both outputs:
#
# $$\mathcal{L} = \mathrm{BCE}(M, \hat G_{4}) + \lambda\, \mathrm{BCE}(P, \hat G_{8}),$$
#
# where $\hat G_s$ is the ground-truth mask area-averaged to the stride-$s$ grid (a soft target: the
# fraction of each cell the object covers). How the prior is supervised is not stated in the paper; this
# is one of the open choices (a Gaussian at the object centre is the other option implemented).
#
# To make every shape below concrete we take a real batch of validation samples and run the untrained
# model on it, recording each module's inputs and outputs with forward hooks.

# %%
val_ds = RefSegDataset(refer, "val", untrained.tokenizer, cfg.input_size, train=False)
batch = collate([val_ds[i] for i in range(n_examples)])
print(
    "images",
    tuple(batch["image"].shape),
    "tokens",
    tuple(batch["tokens"].shape),
    "masks",
    tuple(batch["mask"].shape),
)
for m, row in zip(batch["meta"], batch["tokens"]):
    print(f"  {m['sentence']!r:52s} -> {row.tolist()}")


def shape_of(x):
    if torch.is_tensor(x):
        return "×".join(str(s) for s in x.shape)
    if isinstance(x, (tuple, list)):
        return ", ".join(shape_of(v) for v in x if torch.is_tensor(v) or isinstance(v, (tuple, list)))
    return ""


def trace_shapes(net, images, tokens):
    """Shapes of the inputs and outputs of LTS's modules in one real forward pass (via forward hooks)."""
    parts = [
        ("backbone", net.backbone),
        *[(f"backbone.stages[{i}]", s) for i, s in enumerate(net.backbone.stages)],
        ("text", net.text),
        ("fusion", net.fusion),
        ("locator", net.locator),
        ("segment", net.segment),
    ]
    rows, handles = [], []
    for name, mod in parts:
        if mod is not None:
            handles.append(
                mod.register_forward_hook(
                    lambda m, inp, out, name=name: rows.append((name, shape_of(inp), shape_of(out)))
                )
            )
    try:
        with torch.no_grad():
            out = net.forward_features(images, tokens)
    finally:
        for h in handles:
            h.remove()
    order = [name for name, _ in parts]
    rows.sort(key=lambda r: order.index(r[0]))
    return rows, out


untrained.eval()
rows, out = trace_shapes(untrained, batch["image"], batch["tokens"])
table = ["| module | input shape(s) | output shape(s) |", "|---|---|---|"]
table += [f"| `{name}` | {i} | {o} |" for name, i, o in rows]
display(Markdown("\n".join(table)))
print({k: tuple(v.shape) for k, v in out.items() if v is not None})

# %% [markdown]
# Reading the table: the backbone returns $(V_3, V_4, V_5)$; the text encoder returns the word states,
# the sentence vector and the `valid` mask of real (non-padding) tokens; the fusion takes the three
# levels and the sentence and returns $F$; the locator takes $F$, the words, `valid` and the sentence and
# returns the prior logits $P$ (and, when asked, the word attention); the segment head takes $[F; \sigma(P)]$,
# one channel more than $F$, and returns the mask logits at stride 4. The sections below take the modules
# in this order.
#
# ## Visual encoder: DarkNet-53
#
# LTS is reported to use DarkNet-53, the YOLOv3 backbone {cite}`redmon2018yolov3`, pretrained on COCO
# detection with the RefCOCO evaluation images removed (*unverified*: the paper text is the only source).
# DarkNet-53 is a stem convolution and five stages; each stage halves the resolution with a strided
# $3\times3$ convolution and stacks residual blocks $x + \mathrm{conv}_{3\times3}(\mathrm{conv}_{1\times1}(x))$.
# LTS reads the last three stages, $V_3, V_4, V_5$ at strides 8, 16 and 32. `lts_tiny` keeps this topology
# at 1/8 of the channels and 1/4 of the blocks, and starts from random weights (no COCO-trained DarkNet
# weights can be downloaded here).

# %%
show(DarkNet53.forward)

# %% [markdown]
# ## Text encoder: a bidirectional GRU
#
# Each word $t_l$ is embedded ($e_l \in \mathbb{R}^{E}$; GloVe-initialised at full scale when a GloVe file
# is given, random here), and a bidirectional GRU reads the sequence:
#
# $$w_l = [\overrightarrow{h}_l; \overleftarrow{h}_l] \in \mathbb{R}^{2H}, \qquad
#   s = [\overrightarrow{h}_L; \overleftarrow{h}_1].$$
#
# The sequence is *packed*, so padding never changes a result, and a `valid` mask marks the real words
# for the attention that follows.

# %%
show(GRUTextEncoder.forward)

# %% [markdown]
# ## Cross-modal fusion (Sec. 3.1)
#
# At each level $i \in \{3, 4, 5\}$ the sentence gates the visual channels by an element-wise product, and
# the normalised pixel coordinates are appended (CoordConv {cite}`liu2018coordconv`) so that later layers
# can express "left" or "top":
#
# $$F_i = \mathrm{conv}_{3\times3}\big(\big[\,\mathrm{BN}(W_i V_i) \odot (U_i s)\,;\; x, y\,\big]\big).$$
#
# A top-down pass upsamples $F_5$, concatenates it with $F_4$, convolves, and repeats with $F_3$, giving one
# map $F \in \mathbb{R}^{D \times H/8 \times W/8}$ that feeds both Locate and Segment.

# %%
show(lts_fusion.Fusion.forward)

# %% [markdown]
# ## Locate: the position prior (Sec. 3.2)
#
# The paper's key idea is to predict *where* the referred object is before segmenting it. A cross-modal
# interaction module compares every position of $F$ with the expression and outputs one logit per
# position, $P \in \mathbb{R}^{1 \times H/8 \times W/8}$. The paper names two interactions.
#
# **Transformer** (the default). The pixels of $F$ (with their coordinates again, since attention has no
# notion of position) become $N = hw$ query tokens $X \in \mathbb{R}^{N \times D}$. Each pre-norm layer
# lets every pixel attend to all other pixels (the whole image, which relations like "left of the ring"
# need) and then to the words $T = W_t [w_1, \dots, w_L]$, with padded words masked out:
#
# $$X \leftarrow X + \mathrm{SelfAttn}(\mathrm{LN}(X)), \quad
#   X \leftarrow X + \mathrm{softmax}\!\Big(\frac{Q K^\top}{\sqrt{d}}\Big) V, \; Q = \mathrm{LN}(X) W_q,\,
#   K = T W_k,\, V = T W_v, \quad X \leftarrow X + \mathrm{FFN}(\mathrm{LN}(X)).$$
#
# A linear layer maps each pixel to one prior logit. The cross-attention weights, averaged over heads,
# say which words each pixel listens to — we plot them after training.

# %%
show(position_prior.InteractionLayer.forward)
show(position_prior.TransformerLocate.forward)

# %% [markdown]
# **Filtering.** The sentence generates $K$ dynamic $1\times1$ kernels $k_j = A_j s$ (with biases $b_j$),
# each a detector for "what the expression describes", applied to a projection $G$ of $F$; a $3\times3$
# convolution mixes the $K$ responses into the prior:
#
# $$R_j = \frac{k_j^\top G}{\sqrt{C}} + b_j, \qquad P = \mathrm{conv}\big(\mathrm{ReLU}(\mathrm{BN}(R))\big).$$
#
# Filtering sees the sentence only as one vector, and each kernel only one position at a time (context
# comes from the fusion's convolutions); the transformer sees every word and every position.

# %%
show(position_prior.FilterLocate.forward)

# %% [markdown]
# The prior is supervised with the mask area-averaged to its grid, $\hat G_8$:

# %%
show(position_prior.prior_target_mask)

# %% [markdown]
# ## Segment (Sec. 3.3)
#
# The prior, as probabilities $\sigma(P)$, is concatenated to $F$ as one more channel, and a light-weight
# head decodes the mask: a $3\times3$ convolution, parallel dilated $3\times3$ convolutions (rates 1, 2, 4:
# context at several ranges), a $1\times1$ merge, upsampling to stride 4, and two more convolutions. The
# prior is not detached, so the mask loss also refines it. Without the prior (`use_prior=False`, the
# ablation below) the same head sees $F$ alone. `LTS.forward_features` runs the whole model and returns
# its intermediates by name: `fused` ($F$), `prior_logits` ($P$), `decoder` ($[F; \sigma(P)]$, what the
# head reads, at `model.decoder_stride` = 8), `word_attention` and `logits`. CRIS returns the same keys
# (chapter 4); `model(images, tokens)` is its `logits`.

# %%
show(lts_segment.SegmentHead.forward)
show(lts_module.LTS.forward_features)

# %% [markdown]
# The loss adds the two binary cross-entropies, $\lambda$ = `prior_weight` (1.0; the paper gives no
# value):

# %%
show(lts_module.LTS.loss)

# %% [markdown]
# ## Training three variants at the same budget
#
# We train three models that differ in one thing only: the **transformer** interaction, the
# **filtering** interaction, and **no prior** at all. Everything else — data, seed, schedule, number of
# steps — is the same. The smoke configuration `smoke_lts` trains one model for its `epochs`; to fit three
# models in this chapter's time budget, each trains `run_epochs` epochs with the learning-rate milestones
# scaled accordingly. Set `run_epochs` to the configuration's `epochs` to give each variant the full
# smoke budget.

# %%
scaled_milestones = sorted(
    {max(1, round(m * run_epochs / cfg.epochs)) for m in cfg.milestones if m < cfg.epochs}
)
variants = {
    "transformer": {"interaction": "transformer"},
    "filtering": {"interaction": "filtering"},
    "no prior": {"use_prior": False},
}
results = {}
for name, variant in variants.items():
    print(f"=== {name} ===")
    run_cfg = dict(
        cfg.to_dict(),
        epochs=run_epochs,
        milestones=scaled_milestones,
        model_overrides=dict(cfg.model_overrides, **variant),
        output_dir=f"{cfg.output_dir}_{name.replace(' ', '_')}",
    )
    results[name] = engine.train(run_cfg, progress=True, overwrite=True)  # replaces the previous build's run
    r = results[name]
    steps = max((row["step"] for row in r.history), default=0)
    print(
        f"{name}: {steps} steps in {r.train_time_s:.0f} s"
        + (" (stopped by the time guard)" if r.stopped_early else "")
    )

# %% [markdown]
# **Training curves.** The loss of each run against the optimiser step (mean over `log_every` steps), and
# the validation mIoU measured during training (each ref's first sentence):

# %%
fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 3.6))
for name, r in results.items():
    pts = [(row["step"], row["loss"]) for row in r.history if "images_per_s" in row]
    val = [(row["step"], 100 * row["val_mIoU"]) for row in r.history if "val_mIoU" in row]
    if pts:
        ax_loss.plot(*zip(*pts), label=name)
    if val:
        ax_val.plot(*zip(*val), marker="o", label=name)
ax_loss.set_xlabel("step")
ax_loss.set_ylabel("training loss (mask + prior BCE)")
ax_loss.set_yscale("log")
ax_val.set_xlabel("step")
ax_val.set_ylabel("validation mIoU (%)")
for ax in (ax_loss, ax_val):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
ax_loss.set_title("the no-prior run has no prior term in its loss", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Evaluation
#
# Each model is scored on *every* sentence of the validation split with the official CRIS
# post-processing (chapter 2), next to two language-blind baselines from
# `engine.trivial_baselines`: the whole image, and the largest object of the image (which even uses the
# ground-truth instance masks). A model that understands the expression must beat both.

# %%
scores = {
    name: engine.evaluate(r.model, refer, split="val", input_size=cfg.input_size, batch_size=cfg.batch_size)
    for name, r in results.items()
}
baselines = engine.trivial_baselines(refer, "val")
keys = ["mIoU", "oIoU", "prec@0.5", "prec@0.7", "prec@0.9"]
rows = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
table_rows = {
    **{f"LTS ({n})": s for n, s in scores.items()},
    **{f"baseline: {n.replace('_', ' ')}": b for n, b in baselines.items()},
}
for name, m in table_rows.items():
    rows.append(f"| {name} | " + " | ".join(f"{100 * m[k]:.2f}" for k in keys) + " |")
n_val = scores["transformer"]["n"]
display(Markdown(f"Validation split, {n_val} sentences (percentages):\n\n" + "\n".join(rows)))

# %% [markdown]
# What the measured numbers say (this paragraph is computed from the table above):


# %%
def describe(scores, baselines, results):
    lines = []
    for metric in ("mIoU", "oIoU"):
        base_name = max(baselines, key=lambda n: baselines[n][metric])
        base = baselines[base_name][metric]
        beat = [n for n, s in scores.items() if s[metric] > base]
        who = f"the {', the '.join(beat)} variant{'s' if len(beat) > 1 else ''}" if beat else "no variant"
        lines.append(
            f"On {metric}, {who} beat{'s' if len(beat) == 1 or not beat else ''} the best "
            f"language-blind baseline ({base_name.replace('_', ' ')}, {100 * base:.1f})."
        )
    lo = baselines["largest_object"]
    lines.append(
        f"The largest-object baseline is exactly right (IoU > 0.9) on {100 * lo['prec@0.9']:.1f}% "
        "of the sentences, those that refer to the largest object of their image: a strong guess "
        "on this data for a model that does not read the expression."
    )
    with_prior = {n: s for n, s in scores.items() if n != "no prior"}
    best_name = max(with_prior, key=lambda n: with_prior[n]["mIoU"])
    best, none = with_prior[best_name]["mIoU"], scores["no prior"]["mIoU"]
    diff = 100 * (best - none)
    if abs(diff) < 2:
        lines.append(
            f"With the prior ({best_name}, {100 * best:.1f} mIoU) and without it ({100 * none:.1f}) "
            f"the scores differ by {diff:+.1f} points, which at smoke scale (one seed, {n_val} "
            "sentences) is within the noise: this run does not show an effect of the prior."
        )
    elif diff > 0:
        lines.append(
            f"The prior helps here: the {best_name} variant scores {100 * best:.1f} mIoU against "
            f"{100 * none:.1f} without a prior ({diff:+.1f} points; one seed, so a hint rather "
            "than a confirmation of the paper's ablation)."
        )
    else:
        lines.append(
            f"The prior does not help here: without it the model scores {100 * none:.1f} mIoU, "
            f"{-diff:.1f} points *more* than the best variant with a prior ({best_name}, "
            f"{100 * best:.1f}). At smoke scale (tiny model, few steps, one seed) the extra module "
            "may need more training than it gets; the paper's ablation is on RefCOCO."
        )
    t, f = scores["transformer"]["mIoU"], scores["filtering"]["mIoU"]
    lines.append(
        f"Between the two interactions, {'transformer' if t >= f else 'filtering'} scores higher "
        f"({100 * t:.1f} vs {100 * f:.1f} mIoU for transformer vs filtering)."
    )
    stopped = [n for n, r in results.items() if r.stopped_early]
    if stopped:
        lines.append(
            f"Caution: on this machine the time guard (`time_limit_s`) stopped {', '.join(stopped)} before "
            f"`run_epochs` epochs, so the runs did not all get the same number of steps "
            f"({', '.join(str(max(row['step'] for row in r.history)) + ' for ' + n for n, r in results.items())})."
        )
    return " ".join(lines)


display(Markdown(describe(scores, baselines, results)))

# %% [markdown]
# For reference, the oIoU that the LTS paper reports at full scale (416×416 inputs, a COCO-pretrained
# DarkNet-53, RefCOCO-size training; *unverified* numbers from the paper, read from
# `refseg_core.configs.published()`). They are not comparable with the smoke numbers above.

# %%
lts_rows = [r for r in published["results"] if r["method"] == "LTS" and r["metric"] == "oIoU"]
rows = ["| dataset | split | metric | LTS (paper) |", "|---|---|---|---|"]
rows += [f"| {r['dataset']} | {r['split']} | {r['metric']} | {r['value']:.2f} |" for r in lts_rows]
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## The position prior, after training
#
# For a few validation expressions: the input image (letterboxed to the network's input), the prior
# $\sigma(P)$ of the transformer model as a heat map over it, and the final mask (bright, orange outline)
# against the target (dashed blue outline). The last two rows show **one image with two different
# expressions**: if the model uses the words, the prior moves with them.


# %%
def pick_examples(refer, n):
    """Indices into the validation sentences: the first sentence of one ref on each of ``n - 2`` images,
    then the first sentences of two different refs on one further image (if some image has two)."""
    first = {}
    for i, (ref, _) in enumerate(refer.sentences("val")):  # the order of the evaluation dataset
        first.setdefault(ref["ref_id"], i)
    by_image = {}
    for ref in refer.split_refs("val"):
        by_image.setdefault(ref["image_id"], []).append(ref)
    images = list(by_image)
    singles = images[: max(0, n - 2)]
    pair = next((by_image[i][:2] for i in images[len(singles) :] if len(by_image[i]) >= 2), None)
    if pair is None:  # no image with two referred objects: two more ordinary samples
        return [first[by_image[i][0]["ref_id"]] for i in images[:n]], False
    return [first[by_image[i][0]["ref_id"]] for i in singles] + [first[r["ref_id"]] for r in pair], True


chosen, has_pair = pick_examples(refer, n_examples)
examples = collate([val_ds[i] for i in chosen])
if not has_pair:
    print("no validation image has two referred objects: the last two rows are ordinary samples")


@torch.no_grad()
def run_locate(net, b):
    net.eval()
    out = net.forward_features(b["image"], b["tokens"])
    prob = torch.sigmoid(
        F.interpolate(out["logits"], size=b["image"].shape[-2:], mode="bilinear", align_corners=False)
    )
    out["mask"] = (prob[:, 0] > cfg.eval_threshold).numpy()
    return out


def show_image(i, b):
    return denormalize(b["image"][i], CLIP_MEAN, CLIP_STD)


out_t = run_locate(results["transformer"].model, examples)
fig, axes = plt.subplots(len(chosen), 3, figsize=(8, 2.7 * len(chosen)), squeeze=False)
for i, m in enumerate(examples["meta"]):
    img, target = show_image(i, examples), examples["mask"][i, 0].numpy() > 0.5
    same = has_pair and i >= len(chosen) - 2
    overlay(axes[i, 0], img, None, title=("(same image) " if same else "") + f"“{m['sentence']}”")
    heatmap(
        axes[i, 1],
        torch.sigmoid(out_t["prior_logits"][i, 0]).numpy(),
        image=img,
        vmin=0,
        vmax=1,
        title="position prior σ(P)",
    )
    overlay(axes[i, 2], img, out_t["mask"][i], contour=target, title="mask vs target (dashed)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Transformer or filtering?
#
# The same samples, the priors of the two interaction variants side by side (their validation scores are
# in the table above):

# %%
out_f = run_locate(results["filtering"].model, examples)
fig, axes = plt.subplots(len(chosen), 3, figsize=(8, 2.7 * len(chosen)), squeeze=False)
for i, m in enumerate(examples["meta"]):
    img, target = show_image(i, examples), examples["mask"][i, 0].numpy() > 0.5
    overlay(axes[i, 0], img, target, title=f"target: “{m['sentence']}”")
    for ax, name, out in [(axes[i, 1], "transformer", out_t), (axes[i, 2], "filtering", out_f)]:
        heatmap(
            ax,
            torch.sigmoid(out["prior_logits"][i, 0]).numpy(),
            image=img,
            vmin=0,
            vmax=1,
            title=f"{name} prior",
        )
plt.tight_layout()
plt.show()

rows = ["| interaction | mIoU | oIoU | prec@0.5 |", "|---|---|---|---|"]
rows += [
    f"| {n} | {100 * scores[n]['mIoU']:.2f} | {100 * scores[n]['oIoU']:.2f} | {100 * scores[n]['prec@0.5']:.2f} |"
    for n in ("transformer", "filtering")
]
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Which words do the pixels attend to?
#
# In the transformer variant every pixel attends to the words of the expression.
# `model.forward_features(...)` returns the last layer's cross-attention, averaged over heads, as
# `word_attention` $(B, L, h, w)$: for word $l$, how much each position attends to it (each pixel's
# weights sum to 1 over the words). One row per expression; bright cells attend strongly to that word.

# %%
attn = out_t["word_attention"]
print("word_attention", tuple(attn.shape))
vocab = results["transformer"].model.tokenizer
for i in range(min(2, len(chosen))):
    toks = [int(t) for t in examples["tokens"][i] if int(t) != 0]
    words = [vocab.itos[t] for t in toks]
    fig, ax = plt.subplots(figsize=(1.6 * max(len(words), 3), 2.1))
    attention_to_words(ax, attn[i, : len(words)].numpy(), words, image=show_image(i, examples))
    fig.suptitle(f"“{examples['meta'][i]['sentence']}”: attention of each pixel to each word", fontsize=9)
    plt.show()

# %% [markdown]
# ## The choices the paper leaves open
#
# Every row is a keyword of `build_model("lts", ...)` / `build_model("lts_tiny", ...)` (and of a run's
# `model_overrides`); the table is rendered from `refseg_core.models.lts.choices_table()`, the same text
# as the module's documentation.

# %%
display(Markdown(lts_module.choices_table()))

# %%
print(f"notebook ran in {time.time() - t_notebook:.0f} s")

# %% [markdown]
# ## Summary
#
# * LTS {cite}`jing2021lts` first *locates* the referred object — a one-channel position prior from a
#   cross-modal interaction of fused image-sentence features with the words — then *segments* it with a
#   light convolutional head that sees the prior as an extra channel.
# * The fused map gates DarkNet-53 {cite}`redmon2018yolov3` features by the bi-GRU sentence vector at three
#   strides, adds coordinates {cite}`liu2018coordconv`, and aggregates them top-down to stride 8.
# * "Transformer" interaction: pixels attend to pixels and to words; "filtering": the sentence generates
#   dynamic kernels. Both are implemented and compared above at the same budget.
# * No official code exists: the supervision of the prior, the loss weight, the head and many sizes are
#   choices, listed in the table above and exposed as parameters.
# * At smoke scale the comparisons are from one seed and a few minutes of CPU training; they show the
#   mechanics, and the full-scale configurations (`lts_refcoco`, `lts_refcoco_plus`, ...) run the same code on RefCOCO.
#
# ## Exercises
#
# 1. Set `run_epochs` to the configuration's `epochs` (papermill: `-p run_epochs 8`). Do the three variants
#    separate more clearly with the longer budget? Does the no-prior model catch up?
# 2. Add `"prior_target": "gaussian"` to the transformer variant's overrides in `variants`. How does the
#    prior's heat map change, and does the mask improve?
# 3. Add `"prior_weight": 0.0` instead (the prior is still concatenated, but only the mask loss trains
#    it). Is the map that the locate module produces still a position prior?
# 4. The prior lives on an $H/8 \times W/8$ grid (see the shapes table: at this chapter's small
#    `input_size` it has only a few cells per side). Which expressions of the synthetic data can a prior
#    this coarse not separate? Try a larger `input_size`.
