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
# # 4. CRIS: CLIP-driven referring image segmentation
#
# **What you will learn.** Why CRIS {cite}`wang2022cris` builds on CLIP {cite}`radford2021clip`; what each
# of its four parts does — the dense CLIP encoders, the sentence-gated neck, the vision-language decoder
# and the text-to-pixel head — with the tensor shapes of real forward passes; the paper's loss written as
# its equation next to the form the official code computes; which of the paper's ablations this page can
# test; what a trained model predicts and attends to when the same image is described by two sentences;
# and three things about the official code that a reproduction has to get right (or deliberately copy).
#
# Every number on this page is computed when the notebook runs. The model is trained from random weights
# on the synthetic data of chapter 1 (no download), so the numbers show the *mechanics*, not the paper's
# accuracy.

# %%
import sys

# This book's release of refseg_core; Colab only: install it (nothing else downloads).
REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"
if "google.colab" in sys.modules:
    import subprocess

    pkg = f"refseg_core @ git+{REPO}@{REF}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", pkg], check=True)

# %% tags=["parameters"]
config = "smoke_cris"  # a configuration shipped with refseg_core, or a YAML file
overrides = {}  # TrainConfig fields replacing the configuration's, e.g. {"epochs": 2}
dry_run = False  # print the resolved configuration and stop before training
retrain = False  # True: train the configuration's run again even if it exists
# This chapter only (not training parameters).
full_model = "cris_r50"  # the full-size model whose shapes are shown (or cris_r101)
full_input_size = 416
# "openai": the full-size model loads OpenAI's CLIP weights through open_clip (a ~250 MB
# download, for Colab) and the page shows CLIP's own pixel-text similarity; None: random
# weights, no download, that figure is skipped.
pretrained = None
n_pairs = 2  # images shown under two sentences each

# %% tags=["hide-input"]
import textwrap
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.cbook import get_sample_data
from PIL import Image
from torch import nn

from refseg_core import diagrams, engine, evidence, notebook, verdicts
from refseg_core.clip_similarity import text_similarity
from refseg_core.config import make_config
from refseg_core.data.dataset import RefSegDataset, collate
from refseg_core.data.transforms import (
    denormalize,
    letterbox_image,
    letterbox_mask,
    normalize,
)
from refseg_core.engine.checkpoint import load_checkpoint, model_from_checkpoint
from refseg_core.models import build_model
from refseg_core.models.clip import DenseClipBackbone
from refseg_core.models.cris import CRIS
from refseg_core.models.cris_neck import CRISNeck
from refseg_core.models.text_to_pixel import TextToPixelProjector
from refseg_core.models.vl_decoder import DecoderLayer, VisionLanguageDecoder
from refseg_core.notebook import finish_dry_run, resolve_config, show_markdown
from refseg_core.notebook import show_source as show
from refseg_core.published import lookup
from refseg_core.sentence_pairs import first_sentence_items, same_image_pairs
from refseg_core.tables import markdown_table, metrics_table
from refseg_core.viz import attention_to_words, curves, heatmap, overlay
from refseg_core.word_attention import own_versus_other, words_on_region

# The same function as `python -m refseg_core train --config`:
cfg = resolve_config(config, overrides, dry_run)
finish_dry_run(dry_run)

# %%
refer = engine.prepare_data(cfg)  # generates the synthetic dataset on first use

# %% [markdown]
# ## Why CLIP
#
# CLIP {cite}`radford2021clip` trained an image encoder and a text encoder on 400 million image–caption
# pairs so that matching pairs have similar embeddings: it aligns *whole images* with *whole sentences*.
# Referring segmentation needs a finer alignment — between a sentence and the *pixels* of the object it
# describes. CRIS's idea (Sec. 1 and Fig. 1 of the paper) is to keep CLIP's two encoders and to add what
# turns sentence-image alignment into sentence-pixel alignment: multi-scale visual maps gated by the
# sentence, a decoder in which every pixel reads the words, and a head that scores every pixel embedding
# against the sentence. Training pulls the embeddings of the referred pixels towards the sentence and
# pushes the others away (the paper's "text-to-pixel contrastive learning").
#
# ## The full-size model, one forward pass
#
# We build the paper's model (`full_model`, CLIP ResNet-50 by default; random weights unless
# `pretrained = "openai"`) and run one letterboxed synthetic image at `full_input_size` through it, in
# eval mode and without gradients. The parameter count of each part is computed now; next to it are the
# counts of the official code with the same random weights, read from the committed comparison with the
# official implementation (`refseg_core.evidence`, described at the end of the page);
# {numref}`fig-cris-pipeline` then draws the model with the shapes this pass produced.


# %%
def no_tokens(texts):  # the dataset needs a tokenizer; the full model's come below
    return torch.zeros(len(texts), 1, dtype=torch.long)


val_ds = RefSegDataset(refer, "val", no_tokens, full_input_size, train=False)
sample = val_ds[0]
sample_text = sample["meta"]["sentence"]

t0 = time.time()
torch.manual_seed(cfg.seed)
big = build_model(full_model, pretrained=pretrained).eval()
image, tokens = sample["image"][None], big.tokenizer([sample_text])
big_shapes, big_feats = diagrams.forward_shapes(big, image, tokens, outputs=True)
print(f"built and ran {full_model} at {full_input_size} px in {time.time() - t0:.1f} s")

# %% tags=["hide-input"]
EVIDENCE = dict(cris_r50="cris_equivalence_cpu", cris_r101="cris_equivalence_cpu_rn101")
official = evidence.rows(EVIDENCE[full_model])["params"]["official"]
parts = dict(clip=big.backbone, fpn=big.neck, decoder=big.decoder)
parts["projector"] = big.projector
parts["total"] = big
rows = []
for name, m in parts.items():
    ours = sum(p.numel() for p in m.parameters())
    rows.append((name, ours / 1e6, official[name] / 1e6))
headers = ["part", "ours (M, counted now)", "official code (M, same random weights)"]
show_markdown(markdown_table(rows, headers=headers))

# %% mystnb={"figure": {"caption": "CRIS as the paper's Fig. 2 and the official code build it: CLIP's image encoder read at three scales, its text encoder read per word (words) and per sentence (state); the neck gates the coarsest map by the sentence; the decoder lets every pixel attend to the words; the head turns the sentence into a 3×3 kernel (plus a bias) applied to the pixel embeddings. Each box gives the shapes of its outputs in the full-size forward pass above (batch dimension left out).", "name": "fig-cris-pipeline"}}
fig = diagrams.cris_pipeline(big_shapes)
plt.show()

# %% [markdown]
# The image encoder returns three maps: $v_3$ (ResNet layer2, stride 8), $v_4$ (layer3, stride 16) and
# $v_5$ (the attention pool, stride 32). {numref}`fig-cris-scales` reduces each to one channel by its
# first principal component over channels.


# %% tags=["hide-input"]
def first_pc(feat: torch.Tensor) -> np.ndarray:
    """``(C, h, w)`` -> ``(h, w)``: each pixel projected on the first principal axis."""
    c, h, w = feat.shape
    x = feat.reshape(c, h * w).t().double()
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    return (x @ v[0]).reshape(h, w).numpy()


# %% tags=["hide-input"] mystnb={"figure": {"caption": "The three visual scales of the full-size model for one input, each reduced to its first principal component (colour bar: the projection, arbitrary units). Look at the resolution each scale keeps. With random weights (the default, `pretrained = None`) the maps carry no semantics: they show the grid and the receptive field, not what CLIP sees.", "name": "fig-cris-scales"}}
image_full = denormalize(sample["image"])
fig, axes = plt.subplots(1, 4, figsize=(12, 3.0))
overlay(axes[0], image_full, None, title=f"input {full_input_size} px")
for ax, key in zip(axes[1:], ["v3", "v4", "v5"]):
    f = big_feats[key][0]
    title = f"{key}: {f.shape[0]} ch, {f.shape[1]}x{f.shape[2]}"
    heatmap(ax, first_pc(f), title=title, cmap="viridis", colorbar=True)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### What CLIP already knows, pixel by pixel
#
# With OpenAI's weights, CLIP's image features can be compared with a sentence's embedding at every
# position, before any segmentation training: `refseg_core.clip_similarity` reads the value path of the
# attention pool at each position (as MaskCLIP does) and takes the cosine with the text — the alignment
# CRIS starts from. With `pretrained = "openai"` (Colab: open_clip downloads the weights) the next cell
# draws four phrases against a real photograph that ships with matplotlib; without it, it says so.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "CLIP's own cosine similarity between four phrases and every position of a real photograph (stride 32, colour bar shared within the row), with OpenAI's weights and no training for segmentation: look for each phrase's region standing out; CLIP's alignment is coarse at this stride, which is what CRIS's neck, decoder and head are trained to sharpen.", "name": "fig-cris-clip"}}
PROMPTS = ["a flag", "a face", "a pair of glasses", "a navy uniform"]
if pretrained == "openai":
    sample_photo = get_sample_data("grace_hopper.jpg", asfileobj=True)
    photo = Image.open(sample_photo).convert("RGB")
    x_photo, _ = letterbox_image(photo, full_input_size)
    prompts = big.tokenizer(PROMPTS)
    sims = text_similarity(big.backbone, normalize(x_photo)[None], prompts).numpy()
    lo, hi = float(sims.min()), float(sims.max())
    fig, axes = plt.subplots(1, len(PROMPTS) + 1, figsize=(15, 3.2))
    overlay(axes[0], photo, None, title="input (matplotlib's sample photograph)")
    for ax, prompt, sim in zip(axes[1:], PROMPTS, sims):
        kw = dict(image=x_photo, vmin=lo, vmax=hi, colorbar=True)
        heatmap(ax, sim, title=f"“{prompt}”", **kw)
    plt.tight_layout()
    plt.show()
else:
    show_markdown(
        "*Skipped: `pretrained` is None, so the full-size model has random weights "
        "and CLIP's similarity cannot be shown; nothing was downloaded and no figure "
        'is drawn. Set `pretrained = "openai"` (Colab) to see it.*'
    )

# %% [markdown]
# ### Every intermediate, at two sizes
#
# `CRIS.forward_features` returns every intermediate by name. The table lists them for the full model
# (the pass above) and for the tiny model this page trains, run on a real training batch of the
# synthetic data. The tiny model is the *same code* with smaller widths and one decoder layer. `fused`,
# `decoder`, `word_attention` and `logits` are the keys LTS's `forward_features` returns too
# (chapter 3).

# %% tags=["hide-input"]
engine.seed_everything(cfg.seed)  # as engine.train does before it builds the model
tiny0 = engine.build_model_for(cfg, refer)  # the tiny model as training builds it
size, thr = cfg.input_size, cfg.eval_threshold
train_ds = RefSegDataset(refer, "train", tiny0.tokenizer, size, seed=cfg.seed)
batch = collate([train_ds[i] for i in range(cfg.batch_size)])
images, tokens, masks = batch["image"], batch["tokens"], batch["mask"]
tiny_shapes, tiny_feats = diagrams.forward_shapes(tiny0, images, tokens, outputs=True)

MEANING = {
    "v3": "layer2, stride 8",
    "v4": "layer3, stride 16",
    "v5": "dense attention pool, stride 32",
    "words": "per-token text states",
    "state": "sentence vector",
    "pad_mask": "True at padding",
    "fused": "neck output, stride 16",
    "decoder": "decoder output",
    "word_attention": "pixel->word weights",
    "pixel_embeddings": "head: pixels, stride 4",
    "kernel": "head: 3x3 kernel",
    "bias": "head: bias",
    "logits": "mask logits, stride 4",
}
rows = [(f"`{k}`", tiny_shapes[k], big_shapes[k], what) for k, what in MEANING.items()]
sizes = [f"{cfg.model}, {size} px", f"{full_model}, {full_input_size} px"]
headers = ["name", *sizes, "what"]
show_markdown(markdown_table(rows, headers=headers))
paper_layers = big.config["num_layers"]  # the paper's decoder depth, for the ablations
del big, big_feats  # about 0.6 GB of weights; the rest of the page uses the tiny model

# %% [markdown]
# ## 1. Image and text encoders
#
# **The paper's idea (Sec. 3.1).** Keep CLIP's encoders, but read them densely. CLIP's ResNet ends in an
# *attention pool*: one query (the image's mean feature) attends to the $7\times7$ grid and gives one
# vector. CRIS makes it dense: every pixel is a query, the positional embedding is resized (bicubic) to
# the feature map, and a new residual branch $\mathrm{BN}(\mathrm{Conv}_{1\times1}(x))$ is added before a
# ReLU. `v3` and `v4` are simply the outputs of layer2 and layer3. The CLIP transformer is causal, so the
# state at the end-of-text (EOT) token has read the whole sentence: projected by `text_projection` it is
# the *sentence vector* (`state`); every token's state (`words`, not projected) is kept for the decoder.
# The sequence is cut to `word_len` tokens (17 for RefCOCO in the official configs). The class wraps
# open_clip's modules and changes only how they are read out (open the listing to read it):

# %% tags=["hide-output"]
show(DenseClipBackbone)

# %% [markdown]
# ## 2. Cross-modal neck
#
# **The paper's idea (Sec. 3.2).** An FPN that mixes the sentence in at the coarsest scale:
# $f_5 = \mathrm{BN\text{-}ReLU}\big(\phi(v_5) \odot \psi(s)\big)$, where $\psi$ is Linear-BN-ReLU and
# $\odot$ is element-wise — every channel of every pixel of $v_5$ is scaled by the sentence. $f_5$ is then
# merged top-down with $v_4$ and bottom-up with $v_3$ (average-pooled to stride 16), the three levels are
# aggregated, and two normalised coordinate channels are appended before a $3\times3$ convolution
# (CoordConv {cite}`liu2018coordconv`), so that "left" or "top" can be read off a position. The neck
# (open the listing to read it; the decoder and the head below, the paper's two contributions, are
# shown open):

# %% tags=["hide-output"]
show(CRISNeck)

# %% [markdown]
# ## 3. Vision-language decoder
#
# **The paper's idea (Sec. 3.3).** Let every pixel read the words. The neck output is flattened into
# $h \cdot w$ pixel tokens; one layer lets the pixels attend to each other (self-attention), then to the
# words (cross-attention: pixels are the queries, words the keys and values, padding masked), then
# applies a feed-forward network:

# %%
show(DecoderLayer)

# %% [markdown]
# The decoder stacks `num_layers` such layers (three in the paper) with sine positions — 2-D for
# pixels, 1-D for words — and a final LayerNorm. The result is a map in which every pixel has read the
# whole expression (open the listing to read it):

# %% tags=["hide-output"]
show(VisionLanguageDecoder)

# %% [markdown]
# ## 4. The text-to-pixel head and its loss
#
# **The paper's idea and equation (Sec. 3.4).** Score every pixel against the sentence. The decoder's
# map is upsampled to stride 4 into pixel embeddings $z_v^i \in \mathbb{R}^{C}$ (one per pixel $i$), the
# sentence vector is projected to $z_t \in \mathbb{R}^{C}$, and the logit of pixel $i$ is their product,
# one pixel at a time (a $1\times1$ product). With $\mathcal{P}$ the pixels of the referent and
# $\mathcal{N}$ the others, the paper's text-to-pixel loss is
#
# $$\mathcal{L}_{\mathrm{con}}^{i} =
#   \begin{cases} -\log \sigma\big(z_t \cdot z_v^i\big), & i \in \mathcal{P},\\
#                 -\log\big(1 - \sigma(z_t \cdot z_v^i)\big), & i \in \mathcal{N},\end{cases}
#   \qquad
#   \mathcal{L}_{\mathrm{con}} = \frac{1}{|\mathcal{P} \cup \mathcal{N}|}
#   \sum_{i \in \mathcal{P} \cup \mathcal{N}} \mathcal{L}_{\mathrm{con}}^{i}.$$
#
# The paper calls it *contrastive*: it pulls the referred pixels' embeddings towards $z_t$ and pushes
# the others away. Written out, it is a per-pixel sigmoid binary cross-entropy against the mask, averaged
# over all pixels — no softmax over pixels, no negatives from other images, and no other term in the loss
# (official issues #5 and #8 ask where the contrastive loss is).
#
# **The official code's form.** The head does not take a $1\times1$ product. One linear layer maps the
# sentence vector to $C \cdot 3 \cdot 3 + 1$ numbers, a $3\times3$ kernel $K(s)$ and a bias $b(s)$,
# applied to the pixel embeddings as a dynamic convolution (a grouped convolution applies each sample's
# kernel to its own map), and the loss is PyTorch's mean BCE with logits:
#
# $$y_i = \sum_{j \in \mathcal{N}_{3\times3}(i)} K(s)_{j - i} \cdot z_v^{j} + b(s), \qquad
#   \mathcal{L} = -\frac{1}{N}\sum_{i=1}^{N}\big[\tilde g_i \log \sigma(y_i)
#   + (1 - \tilde g_i)\log\big(1 - \sigma(y_i)\big)\big],$$
#
# i.e. `F.binary_cross_entropy_with_logits(logits, F.interpolate(mask, size=logits.shape[-2:],
# mode="nearest"))`, where $\tilde g$ is the letterboxed mask resized to $H/4$ by nearest neighbour (its
# values are soft at the object's edges, since the mask is warped with linear interpolation; the paper's
# $\mathcal{P}$ and $\mathcal{N}$ are hard). The paper's form is the special case of a kernel that is zero
# except at its centre and a zero bias. The head, as the official code builds it, and the model's loss
# (the paper's BCE, nothing else):

# %%
show(TextToPixelProjector)
show(CRIS.loss)

# %% [markdown]
# Three checks on the tiny model's batch: one plain convolution per sample gives the grouped
# convolution's logits; a kernel kept only at its centre, with no bias, gives exactly the paper's
# per-pixel products $z_t \cdot z_v^i$; and `CRIS.loss` equals the BCE written by hand.

# %% tags=["hide-input"]
z, kern, bias = tiny_feats["pixel_embeddings"], tiny_feats["kernel"], tiny_feats["bias"]


def conv_each(kernels, biases=None):
    """One plain convolution per sample: sample i's kernel on sample i's map."""
    out = []
    for i in range(len(z)):
        b = None if biases is None else biases[i : i + 1]
        out.append(F.conv2d(z[i : i + 1], kernels[i : i + 1], b, padding=1))
    return torch.cat(out)


grouped_gap = (conv_each(kern, bias) - tiny_feats["logits"]).abs().max()
centre = torch.zeros_like(kern)
centre[:, :, 1, 1] = kern[:, :, 1, 1]  # z_t of the paper: the kernel's centre tap
paper_form = torch.einsum("bc,bchw->bhw", kern[:, :, 1, 1], z)[:, None]
centre_gap = (paper_form - conv_each(centre)).abs().max()
with torch.no_grad():
    ours = tiny0.loss(images, tokens, masks)["loss"]
    logits = tiny0(images, tokens)
    g = F.interpolate(masks, size=logits.shape[-2:], mode="nearest")
    by_hand = -(g * F.logsigmoid(logits) + (1 - g) * F.logsigmoid(-logits)).mean()
rows = [
    ("grouped conv vs one conv per sample", f"{grouped_gap:.1e}"),
    ("centre-only kernel vs z_t · z_v", f"{centre_gap:.1e}"),
    ("model.loss vs the BCE by hand", f"{abs(ours - by_hand):.1e}"),
]
show_markdown(markdown_table(rows, headers=["check", "max |difference|"]))

# %% [markdown]
# ## The paper's ablations
#
# The paper's ablation study (Sec. 4) tests its two contributions: the text-to-pixel contrastive learning
# (on or off), the vision-language decoder (on or off), and the decoder's depth (the number of layers).
# What this package and this page can do with each at smoke scale:

# %% tags=["hide-input"]
tiny_layers = tiny0.config["num_layers"]
in_models = f"{paper_layers} in `{full_model}`, {tiny_layers} in `{cfg.model}`"
depth = f"`num_layers` ({in_models})"
margin = f"{100 * verdicts.MARGIN:.0f}-point margin"
rows = [
    ("contrastive learning on / off",
     "no switch: the sentence-made kernel is the only head",
     "not tested: the head the paper uses instead is not in the official code"),
    ("decoder on / off", "`num_layers: 0` in `model_overrides`",
     "not tested: one more smoke run (exercise 1)"),
    ("decoder depth", depth, "not tested: one more smoke run per depth (exercise 2)"),
]  # fmt: skip
headers = ["the paper's ablation", "in this package", "on this page"]
show_markdown(markdown_table(rows, headers=headers))
show_markdown(
    "Each untested row costs a smoke run of several CPU minutes, and one seed at this "
    f"scale can only separate variants whose scores differ by more than the {margin}: "
    "inside it the answer would be *cannot tell at this scale*."
)

# %% [markdown]
# ## The trained model
#
# The figures below need a model that has learned to read the sentence. `trained_checkpoint` returns
# the finished run of the configuration (`smoke_cris`, the run chapter 5 trains): it reuses the
# checkpoint when that run exists and trains it otherwise (several minutes on a CPU; the log stays in
# the run folder). One of its values is not the paper's: `dice_weight` adds a Dice term to the BCE
# above (`refseg_core.losses`; chapter 5 says why the tiny model needs it). Next to the score, the two
# language-blind baselines of `engine.trivial_baselines`: the whole image, and the largest object of the
# image (which even uses the ground-truth instance masks).

# %%
run = notebook.trained_checkpoint(cfg, retrain=retrain, progress=False)
ckpt = load_checkpoint(run)
trained = model_from_checkpoint(ckpt)

# %% tags=["hide-input"]
val_metrics = engine.evaluate(trained, refer, input_size=size, threshold=thr)
baselines = engine.trivial_baselines(refer, "val")
print(f"{cfg.model} after {int(ckpt['epoch'])} epochs ({int(ckpt['step'])} steps)")
named = {"CRIS (trained)": val_metrics}
named.update({k.replace("_", " "): v for k, v in baselines.items()})
show_markdown(metrics_table(named, label=f"val, {val_metrics['n']} sentences (%)"))
verdict = verdicts.versus_baseline(val_metrics["mIoU"], baselines, "The trained CRIS")
show_markdown(verdict)

# %% [markdown]
# {numref}`fig-cris-curve` shows how the run got there. The page uses the run's last epoch; which
# checkpoint the papers score (the best epoch on a validation or a test split) is the subject of
# {doc}`06_evaluation`.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The training run behind the figures below: loss (BCE plus the Dice term, log scale) against the step, and validation mIoU after each epoch (each ref's first sentence, as the official code validates during training). Look for the loss falling steeply in the first epochs, and for whether the validation curve has levelled off by the last epoch: a fixed smoke budget stops the run, not convergence.", "name": "fig-cris-curve"}}
history = ckpt["history"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
logged = [r for r in history if "images_per_s" in r]
curves(axes[0], logged, ["loss"], x="step", title="training loss", logy=True)
val = [(r["epoch"], 100 * r["val_mIoU"]) for r in history if "val_mIoU" in r]
axes[1].plot(*zip(*val), marker="o")
axes[1].set(xlabel="epoch", ylabel="val mIoU (%)", title="validation mIoU")
axes[1].grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The sentence matters
#
# {numref}`fig-cris-sentences` takes the first validation images that hold two referred objects and
# shows each under the first sentence of each object: the image is the same in both halves of a row,
# only the words change. For each sentence, the left panel is the head's output $\sigma(y)$ at stride 4;
# the right one is the final mask — $\sigma(y)$ upsampled bicubically, mapped back to the original
# image and thresholded at `eval_threshold` (the official code's value), scored against the target.

# %% tags=["hide-input"]
items = first_sentence_items(refer, "val")
pairs = same_image_pairs(refer, "val", n_pairs)
shown = [items[i] for pair in pairs for i in pair]


@torch.no_grad()
def read(net, ref, sent):
    """Letterboxed input, features, final mask and IoU of one sentence."""
    text = refer.sentence_text(sent)
    x, params = letterbox_image(refer.load_image(ref), size)
    feats = net.forward_features(normalize(x)[None], net.tokenizer([text]))
    _, mask = engine.predict(net, refer.load_image(ref), text, size, threshold=thr)
    target = refer.ref_mask(ref) > 0
    iou = (mask & target).sum() / max((mask | target).sum(), 1)
    boxed = letterbox_mask(target.astype(np.uint8), params).numpy()  # in input coords
    out = dict(text=text, x=x, feats=feats, mask=mask, target=target, iou=iou)
    return dict(out, boxed=boxed)


reads = [read(trained, ref, sent) for ref, sent in shown]

# %% tags=["hide-input"] mystnb={"figure": {"caption": "One image under two sentences in each row, for the trained tiny CRIS: for each sentence, the head's probability σ(y) at stride 4 over the letterboxed input (colour bar) and the final mask (bright, orange outline) with its IoU against the target (dashed blue outline). Look at whether the bright region moves from one object to the other when only the sentence changes. A panel with a low IoU is a failure, shown as it is (the titles carry the measured IoU): at this scale the model still confuses objects that share a colour or a shape.", "name": "fig-cris-sentences"}}
fig, axes = plt.subplots(len(pairs), 4, figsize=(12, 3.3 * len(pairs)), squeeze=False)
for k, ((ref, _), r) in enumerate(zip(shown, reads)):
    ax_prob, ax_mask = axes[k // 2, 2 * (k % 2)], axes[k // 2, 2 * (k % 2) + 1]
    photo = refer.load_image(ref)
    prob = torch.sigmoid(r["feats"]["logits"])[0, 0].numpy()
    heatmap(ax_prob, prob, image=r["x"], vmin=0, vmax=1, colorbar=True)
    ax_prob.set_title(textwrap.fill(f"σ(y): “{r['text']}”", 30), fontsize=10)
    title = f"final mask, IoU {r['iou']:.2f}"
    overlay(ax_mask, photo, r["mask"], contour=r["target"], title=title)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Where the pixels look
#
# `forward_features(..., return_attention=True)` returns, for the last decoder layer and averaged over
# heads, how much every pixel attends to every token, `word_attention` (B, L, h, w) (padding gets weight
# 0; each pixel's weights sum to 1 over the tokens). {numref}`fig-cris-attention` shows them for the
# first image above, under its two sentences; the table after it measures whether the two rows differ
# where it matters.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Cross-attention of every pixel of the trained model's decoder (its last layer, mean over heads, on the stride-16 grid) to each token, for one image under two sentences: the first sentence in the top row, the second in the bottom row (colour bar shared within a row, in attention weight). Compare the rows token by token: the maps need not differ just because the words do. Whether each sentence's words draw more attention on its own object than on the other one is measured in the table under the figure, not read off the colours.", "name": "fig-cris-attention"}}
tok = trained.tokenizer


def token_names(text):
    """The real tokens of ``text`` (SOT ... EOT, no padding)."""
    t = tok([text])[0]
    n = int((t != 0).sum())
    return ["<sot>", *[tok.decode(t[j : j + 1]) for j in range(1, n - 1)], "<eot>"]


fig = plt.figure(figsize=(14, 5.0))
grid = fig.add_gridspec(2, 1, hspace=0.45)
for i, r in enumerate(reads[:2]):
    names = token_names(r["text"])
    attn = r["feats"]["word_attention"][0, : len(names)].numpy()
    ax = fig.add_subplot(grid[i, 0])
    attention_to_words(ax, attn, names, image=r["x"], colorbar=True)
    row = "top" if i == 0 else "bottom"
    ax.set_title(f"{row}: “{r['text']}”", fontsize=11, pad=24)
plt.show()

# %% [markdown]
# For each sentence of the pair: the attention a pixel pays to the sentence's words proper (all tokens
# but `<sot>` and `<eot>`), averaged over its own target and over the other sentence's target
# (`refseg_core.word_attention`; cells weighted by how much of them the object covers). If the last
# decoder layer singled out the named object, each row's first value would exceed its second. Where it
# does not, the sentence can still steer the mask ({numref}`fig-cris-sentences`) through the neck's gate
# and the head's kernel, both made from the sentence vector.

# %% tags=["hide-input"]
rows, gaps = [], []
for r, other in [(reads[0], reads[1]), (reads[1], reads[0])]:
    attn = r["feats"]["word_attention"][0, : len(token_names(r["text"]))].numpy()
    own = words_on_region(attn, r["boxed"])
    elsewhere = words_on_region(attn, other["boxed"])
    values = (f"{own:.3f}", f"{elsewhere:.3f}", f"{own - elsewhere:+.3f}")
    rows.append((f"“{r['text']}”", *values))
    gaps.append(own - elsewhere)
headers = ["sentence", "on its own target", "on the other target", "own − other"]
show_markdown(markdown_table(rows, headers=headers))
show_markdown(own_versus_other(gaps))

# %% [markdown]
# ## Reproduction notes
#
# ### mIoU is not oIoU
#
# The official evaluation reports the *mean* of per-sentence IoUs (CRIS issue #12), while LTS and most
# leaderboards report overall IoU ({doc}`02_metrics`). Both, for the model just trained, on the same
# predictions, and the published CRIS numbers with the metric they are:

# %% tags=["hide-input"]
gap = 100 * (val_metrics["mIoU"] - val_metrics["oIoU"])
mi, oi = 100 * val_metrics["mIoU"], 100 * val_metrics["oIoU"]
show_markdown(f"val: mIoU {mi:.2f}, oIoU {oi:.2f} (mIoU − oIoU = {gap:+.2f} points).")
cols = ["method", "source", "metric", "dataset", "split", "value"]
show_markdown(markdown_table(lookup(method="CRIS-*", split="val"), columns=cols))

# %% [markdown]
# ### The learning rate of the first epoch
#
# The recipe (the `cris_r50_refcoco` configuration, read below): Adam, the CLIP backbone at a tenth of
# the base rate, one decay step. The official parameter groups carry only `initial_lr`, so Adam gives
# every group the base rate, and the scheduler corrects the backbone only after the first epoch.
# `official_epoch_lrs` writes that rule down. The engine's own optimiser and schedule
# (`engine.build_optimizer`, then `engine.end_epoch` after each epoch; open the listing to read the
# three functions) take epoch 1's rates from it when `official_lr_quirk: true`, as
# every `cris_*` configuration (the paper cells) sets it; with `false` (the `TrainConfig` default) they
# run the intended schedule. `engine.lr_by_epoch` runs those two functions without training, for both
# settings, and {numref}`fig-cris-lr` draws the result.

# %% tags=["hide-output"]
show(engine.official_epoch_lrs)
show(engine.build_optimizer)
show(engine.end_epoch)

# %% tags=["hide-input"]
paper = resolve_config("cris_r50_refcoco")  # the official recipe, as a configuration
intended = make_config(dict(paper.to_dict(), official_lr_quirk=False))
groups = tiny0.param_groups(paper.lr, paper.backbone_lr_mult)
epochs = range(1, paper.epochs + 1)
lr_args = (paper.lr, paper.milestones, paper.lr_gamma)
rule = [engine.official_epoch_lrs(groups, e, *lr_args) for e in epochs]
official_lrs = np.array(rule)
intended_lrs = np.array(engine.lr_by_epoch(intended, tiny0))  # uses only its groups
quirk_lrs = np.array(engine.lr_by_epoch(paper, tiny0))
assert np.allclose(quirk_lrs, official_lrs)  # with the quirk: the official schedule
same = np.isclose(official_lrs[:, 0], intended_lrs[:, 0])
diff = [e for e, s in zip(epochs, same) if not s]
print(
    f"backbone lr differs in epoch(s) {diff}: official {official_lrs[0, 0]:.0e}, "
    f"intended {intended_lrs[0, 0]:.0e}"
)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Learning rate per epoch of the two parameter groups under the official recipe: the official code (thick, pale) and the schedule the paper states (dashed). Look at epoch 1: only there do they differ, where the official code runs the CLIP backbone at the full base rate.", "name": "fig-cris-lr"}}
fig, ax = plt.subplots(figsize=(7, 2.5))
e_axis = np.array(epochs)
for j, g in enumerate(groups):
    name, off, want = g["name"], official_lrs[:, j], intended_lrs[:, j]
    ax.step(e_axis, off, where="post", lw=2.5, alpha=0.5, label=f"{name}, official")
    ax.step(e_axis, want, where="post", ls="--", label=f"{name}, intended")
ax.set(yscale="log", xlabel="epoch", ylabel="learning rate")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# With pretrained CLIP weights, one epoch at the full rate can move the backbone away from what CLIP
# learned. The paper-cell configurations reproduce the official behaviour exactly
# (`official_lr_quirk: true`); `--set official_lr_quirk=false` is the named opt-in for the schedule the
# paper states.
#
# ### A token embedding that was meant to be frozen
#
# The official CLIP wrapper contains `self.token_embedding.requires_grad_ = False`. That assigns an
# attribute (hiding the method) instead of calling it, so nothing is frozen:

# %%
emb = nn.Embedding(10, 4)
emb.requires_grad_ = False  # the official line: an assignment, not a call
print("requires_grad after the assignment:", emb.weight.requires_grad)

# %% [markdown]
# Our CRIS copies the official behaviour by default (`freeze_token_embedding=False`): the token embedding
# receives a gradient. `freeze_token_embedding=True` does what was meant. (The smoke configuration sets
# it in `model_overrides` for speed: Adam on every row of CLIP's vocabulary is much of a tiny model's CPU
# step time.) The table: one backward pass of each setting on the batch above, and what training changed
# in the run this page uses.


# %% tags=["hide-input"]
def token_embedding_grad(net):
    net.eval()  # eval mode: BatchNorm statistics stay untouched
    net.zero_grad(set_to_none=True)
    net.loss(images, tokens, masks)["loss"].backward()
    g = net.backbone.token_embedding.weight.grad
    net.zero_grad(set_to_none=True)
    return g


tiny_kw = {**cfg.model_overrides, "word_len": cfg.word_len}
default = build_model(cfg.model, **{**tiny_kw, "freeze_token_embedding": False})
frozen = build_model(cfg.model, **{**tiny_kw, "freeze_token_embedding": True})
g_default, g_frozen = token_embedding_grad(default), token_embedding_grad(frozen)
frozen_w = frozen.backbone.token_embedding.weight
in_groups = any(p is frozen_w for g in frozen.param_groups(cfg.lr) for p in g["params"])
w0, w1 = tiny0.backbone.token_embedding.weight, trained.backbone.token_embedding.weight
moved = int(((w1 - w0).abs().sum(1) > 0).sum())
setting = cfg.model_overrides.get("freeze_token_embedding", False)
rows = [
    ("default (official)", default.backbone.token_embedding.weight.requires_grad,
     int((g_default.abs().sum(1) > 0).sum()), "–"),
    ("freeze_token_embedding=True", frozen_w.requires_grad,
     "none" if g_frozen is None else "present", in_groups),
    (f"this page's run (freeze_token_embedding={setting})", "–",
     f"rows changed by training: {moved} of {w0.shape[0]}", "–"),
]  # fmt: skip
headers = ["model", "requires_grad", "gradient rows on one batch", "in the optimiser"]
show_markdown(markdown_table(rows, headers=headers))

# %% [markdown]
# ### Which checkpoint is scored
#
# The official code keeps the best epoch on a validation split — a test split (testB) in its RefCOCO+
# configurations — and {doc}`06_evaluation` sets that choice next to the last epoch.
#
# ### What was checked against the official code
#
# `benchmarks/compare_official_cris.py` imports the official implementation
# (DerrickWang005/CRIS.pytorch) from a local checkout and compares it with ours under the *same random
# weights* (BatchNorm and LayerNorm randomised too, so no layer is an identity), copied into the official
# model by `refseg_core.models.cris_official.ours_to_official` with `strict=True` (the inverse mapping
# must give back every tensor). Both get the same random images and tokens: in eval mode the logits and
# the encoder outputs are compared; in training mode with dropout off, the loss and every parameter
# gradient; also the parameter counts (the first table of this page) and the tokens. The result file:

# %% tags=["hide-input"]
eq = evidence.rows("cris_equivalence_cpu")  # by benchmarks/compare_official_cris.py
tm = eq["train_mode_no_dropout"]
worst = max(tm["worst_relative_grad_diff"].values())
facts = [
    ("date, device", f"{eq['date']}, {eq['device']} (torch {eq['torch']})"),
    ("model, input, batch", f"{eq['arch']}, {eq['input_size']} px, {eq['batch']}"),
    ("official commit", f"`{eq['official_repo_commit']}`"),
    ("logits: max abs difference",
     f"{eq['max_abs_diff']:.2e} (largest |logit| {eq['max_abs_logit']:.2f})"),
    ("v3, v4, v5, words, state: max abs difference",
     ", ".join(f"{v:.1e}" for v in eq["max_abs_diff_parts"].values())),
    ("training loss, ours / official",
     f"{tm['loss_ours']:.6f} / {tm['loss_official']:.6f}"),
    ("gradients compared, same names",
     f"{tm['grads_compared']}, {tm['same_grad_keys']}"),
    ("relative gradient difference (median / worst)",
     f"{tm['median_relative_grad_diff']:.1e} / {worst:.1e}"),
    ("key mapping round trip exact", eq["key_mapping_roundtrip"]),
    ("tokens equal the official tokenizer's", eq["tokens_match_official_tokenizer"]),
]  # fmt: skip
show_markdown(markdown_table(facts, headers=["what", "result"]))

# %% tags=["hide-input"]
exact = [k for k, v in eq["max_abs_diff_parts"].items() if v == 0.0]
relative = eq["max_abs_diff"] / eq["max_abs_logit"]
show_markdown(
    f"Relative to the largest logit, the largest logit difference is {relative:.1e}; "
    f"outputs that agree bit for bit: {', '.join(exact) or 'none'}. What this does "
    "*not* check: trained weights (none were released, official issue #3), the data "
    "pipeline and the training loop."
)

# %% [markdown]
# ## Summary
#
# * CRIS reads CLIP's encoders densely (three visual scales, one state per word); the neck gates the
#   coarsest scale by the sentence; the decoder lets every pixel read the words; the head scores every
#   pixel embedding against the sentence — a $1\times1$ product in the paper's equation, a $3\times3$
#   kernel plus a bias made from the sentence in the official code. The paper's "contrastive" loss is a
#   per-pixel sigmoid BCE in both.
# * Two of the paper's three ablations (decoder on / off, its depth) are a keyword away (exercises 1
#   and 2); none is run on this page.
# * The trained smoke model's verdict against the language-blind baselines is computed with a margin,
#   and its attention maps are measured, not read off the colours.
# * The official code trains the backbone at the full rate in epoch 1 and never freezes the token
#   embedding; both are reproduced by default or by a flag, and both can be switched to what was meant.
#
# ## Exercises
#
# 1. The paper's decoder ablation: train the smoke run without the vision-language decoder
#    (`num_layers: 0` in `model_overrides`; this page's model has one layer). Does the validation mIoU
#    fall by more than the margin?
#
# ```{dropdown} Solution
# `python -m refseg_core train --config smoke_cris --set 'model_overrides={"freeze_token_embedding":
# true, "vision_width": 8, "num_layers": 0}' --set output_dir=runs/smoke_cris_no_decoder`
# (the other two keys repeat the smoke configuration's `model_overrides`, which `--set` replaces as a
# whole). Then score both checkpoints with `engine.evaluate` and pass the two mIoU to
# `refseg_core.verdicts.compare`: it says "cannot tell at this scale" unless they differ by more than 2
# points. Without the decoder the pixels never read the individual words: only the sentence vector
# reaches them (the neck's gate and the head's kernel).
# ```
#
# 2. The paper's depth ablation: train with `"num_layers": 2`. Is a second decoder layer worth its cost
#    at this scale?
#
# ```{dropdown} Solution
# The command of exercise 1 with `"num_layers": 2` and another `output_dir`; compare the mIoU with
# `verdicts.compare` (the margin) and the training time in the run folders' `metrics.json`. Chapter 5
# explains why the tiny model's budget is tight.
# ```
#
# 3. Replace $\psi(s)$ in the neck by ones (no sentence gating). Which expressions suffer most?
#
# ```{dropdown} Solution
# Subclass `CRISNeck` with a `forward` that uses `torch.ones_like(self.sentence_proj(state))` as the
# gate, set `model.neck` of a fresh `build_model("cris_tiny", ...)` to it, and train it with the engine's
# loop on the smoke data (`engine.train` builds its own model, so write the loop with `engine.train_step`
# as chapter 5 shows). Score per kind of expression with
# `refseg_core.data.expression_kind.expression_kind` (chapter 6).
# ```
#
# 4. Plot the attention of the *first* decoder layer instead of the last (`word_attention_layers[0]`)
#    for a model with `num_layers=2`. Where do the pixels look before they have read each other?
#
# ```{dropdown} Solution
# With the model of exercise 2, `feats = model.forward_features(x, t, return_attention=True)`;
# `feats["word_attention_layers"][0]` is (B, heads, h·w, L): average over heads and reshape to
# (L, h, w) as `CRIS.forward_features` does for the last layer, then draw it with
# `refseg_core.viz.attention_to_words` and measure it with `refseg_core.word_attention.words_on_region`.
# ```
#
# 5. The paper's head is a $1\times1$ product. Put `TextToPixelProjector(state_dim, dim,
#    kernel_size=1)` in place of a fresh tiny model's `projector`: how many parameters does the head
#    lose, and do the checks of section 4 still hold?
#
# ```{dropdown} Solution
# `m = build_model("cris_tiny")`, then `m.projector = TextToPixelProjector(m.backbone.state_dim,
# m.config["neck_channels"][1], kernel_size=1)` (the head's width is the neck's middle one). Only the
# sentence's linear layer shrinks: it makes $C + 1$ numbers instead of $9C + 1$, so the head loses
# $8C\,(E + 1)$ parameters, with $C$ the channels of $z_v$ (half the head's width) and $E$ the width of
# the sentence vector; count them with `sum(p.numel() for p in m.projector.parameters())` before and
# after. With a $1\times1$ kernel the convolution has no padding, and with the bias set to zero the
# logits are exactly $z_t \cdot z_v^i$: the centre-only check becomes an identity, while the
# grouped-convolution and BCE checks hold unchanged.
# ```
