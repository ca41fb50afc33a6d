"""Training, evaluation and single-image prediction: the one code path used by the notebooks, the CLI
and ``torchrun``.

* :func:`train` — Adam over ``model.param_groups(lr, backbone_lr_mult)``, ``MultiStepLR`` per epoch, an
  optional linear warm-up per step, optional gradient clipping, bf16 autocast on CUDA (fp16 with a
  GradScaler as an option), ``channels_last``, ``torch.compile``, DDP; atomic checkpoints that resume
  exactly; a CSV log, TensorBoard events and ``metrics.json`` in ``output_dir``.
* :func:`evaluate` — every sentence of every ref (or a DataLoader you give), the official CRIS
  post-processing (:mod:`refseg_core.postprocess`) and :class:`~refseg_core.metrics.RefSegMetrics`.
* :func:`predict` — one PIL image and one expression -> probability map and mask at the image's size.
* :func:`trivial_baselines` — what a model must beat: the whole image, and the largest object.

Recipe defaults follow CRIS (Wang et al., CVPR 2022, Sec. 4.1; REFERENCE §1); see
:class:`refseg_core.config.TrainConfig`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from refseg_core import distributed as distu
from refseg_core.checkpoint import atomic_torch_save, load_checkpoint, rng_state, set_rng_state
from refseg_core.config import TrainConfig, make_config, save_config
from refseg_core.losses import dice_loss
from refseg_core.metrics import RefSegMetrics
from refseg_core.postprocess import logits_to_masks, logits_to_probs

GRES_KEYS = ("gIoU", "cIoU", "N-acc", "T-acc", "no_target_samples")


# ----------------------------------------------------------------------------------------- errors
class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights of that step were not updated."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; a checkpoint was written first. ``signum`` says which."""

    def __init__(self, message: str, signum: int, checkpoint: Path | None):
        super().__init__(message)
        self.signum, self.checkpoint = signum, checkpoint


class OutOfMemory(RuntimeError):
    """CUDA ran out of memory; the message names the batch size and what to change."""


@dataclass
class TrainResult:
    """What :func:`train` returns. ``history`` rows: ``epoch``, ``step``, ``loss``, ``lr``,
    ``images_per_s`` and, at epoch ends, ``val_<metric>``."""

    model: nn.Module
    history: list[dict]
    metrics: dict
    output_dir: Path
    checkpoint: Path | None
    config: TrainConfig
    stopped_early: bool = False
    train_time_s: float = 0.0
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- data
def _dataset_folder_missing(cfg: TrainConfig) -> bool:
    return not (Path(cfg.data_root) / cfg.dataset).is_dir()


def prepare_data(cfg: TrainConfig, info: distu.DistInfo | None = None):
    """Load the annotations of ``cfg.dataset``; with ``synthetic: true`` generate them first if needed.

    Under DDP only rank 0 generates; the others wait. A missing real dataset is an error that says how
    to get it.
    """
    from refseg_core.data.refer import Refer

    info = info or distu.env_info()
    if cfg.synthetic:
        from refseg_core.data.synthetic import DATASET_NAME, ensure_synthetic

        if cfg.dataset not in DATASET_NAME:
            raise ValueError(
                f"parameter 'dataset' is {cfg.dataset!r}; synthetic data exists for {sorted(DATASET_NAME)}"
            )
        if info.is_main:
            ensure_synthetic(
                cfg.data_root,
                cfg.dataset,
                cfg.synthetic_seed,
                cfg.synthetic_num_images,
                cfg.synthetic_image_size,
            )
        distu.barrier()
    elif _dataset_folder_missing(cfg):
        raise FileNotFoundError(
            f"data_root {cfg.data_root!r} has no {cfg.dataset}/ folder. Get the data with either\n"
            f"  python -m refseg_core synth --out {cfg.data_root} --flavour {cfg.dataset}   (generated data; "
            "or set synthetic: true)\n"
            f"  refseg_core.data.download.prepare_refer_data({cfg.data_root!r}, refer_base_url=...)   "
            "(the real REFER / gRefCOCO annotations; COCO train2014 images go to images/train2014)"
        )
    return Refer(cfg.data_root, cfg.dataset, cfg.split_by)


def build_model_for(cfg: TrainConfig, refer=None) -> nn.Module:
    """``build_model(cfg.model, **overrides)``: ``word_len`` and ``pretrained`` from the config; LTS gets
    a word vocabulary built from the training expressions (saved in ``model.config``)."""
    from refseg_core.models import build_model
    from refseg_core.text import WordVocab

    overrides = dict(cfg.model_overrides)
    overrides.setdefault("word_len", cfg.word_len)
    if cfg.pretrained is not None:
        overrides.setdefault("pretrained", cfg.pretrained)
    if cfg.model.startswith("lts") and "vocab" not in overrides and refer is not None:
        texts = [refer.sentence_text(s) for _, s in refer.sentences(cfg.train_split)]
        overrides["vocab"] = WordVocab.from_expressions(texts, max_len=cfg.word_len)
    return build_model(cfg.model, **overrides)


class _SkipSampler(Sampler):
    """The first ``skip`` indices of ``base`` left out (resuming in the middle of an epoch)."""

    def __init__(self, base: Sampler, skip: int):
        self.base, self.skip = base, skip

    def __iter__(self):
        it = iter(self.base)
        for _ in range(self.skip):
            next(it, None)
        yield from it

    def __len__(self):
        return max(0, len(self.base) - self.skip)

    def set_epoch(self, epoch):
        self.base.set_epoch(epoch)


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch per worker; numpy and random follow from it.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _loader(ds, batch_size, sampler, num_workers, device, drop_last) -> DataLoader:
    from refseg_core.data.dataset import collate

    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )


class _Shard(Sampler):
    """Evaluation shard of rank r: indices r, r + W, ... (no padding, so nothing is scored twice)."""

    def __init__(self, n: int, rank: int, world: int):
        self.idx = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.idx)

    def __len__(self):
        return len(self.idx)


# ------------------------------------------------------------------------------------- precision
def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a ``precision`` setting: None (fp32), bf16 or fp16; ``auto`` = bf16 on CUDA."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(dtype: torch.dtype | None, device: torch.device):
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context when ``dtype`` is None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _unwrap(model: nn.Module) -> nn.Module:
    """The RefSegModel inside torch.compile / DDP / :class:`LossModule` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(model, LossModule):
            model = model.model
        else:
            return model


class LossModule(nn.Module):
    """``forward`` = ``model.loss`` (+ ``dice_weight`` x :func:`refseg_core.losses.dice_loss` when > 0).

    DDP and torch.compile wrap ``forward``, so the loss must be it."""

    def __init__(self, model: nn.Module, dice_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.dice_weight = dice_weight

    def forward(self, images, tokens, masks):
        out = self.model.loss(images, tokens, masks)
        if self.dice_weight > 0:
            dice = dice_loss(out["logits"], masks)
            out = dict(out, loss=out["loss"] + self.dice_weight * dice, dice=dice.detach())
        return out


def _set_train_mode(model: nn.Module, bn_eval: bool) -> None:
    model.train()
    if bn_eval:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


# ------------------------------------------------------------------------------------- evaluation
def _clean(metrics: dict, generalized: bool) -> dict:
    """Drop the gRefCOCO counts on classic data (they only repeat mIoU / oIoU there)."""
    return {k: v for k, v in metrics.items() if generalized or k not in GRES_KEYS}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataLoader | Any = None,
    *,
    data_root: str | os.PathLike | None = None,
    dataset: str = "refcoco",
    split_by: str = "unc",
    split: str = "val",
    input_size: int = 416,
    batch_size: int = 16,
    threshold: float = 0.35,
    device: str | torch.device | None = None,
    max_items: int | None = None,
    first_sentence_only: bool = False,
    precision: str = "auto",
    num_workers: int = 0,
    return_records: bool = False,
    progress: bool = False,
):
    """Score ``model`` on one split with the official CRIS post-processing (sigmoid -> bicubic to the
    input size -> inverse letterbox -> ``> threshold``) at the original image resolution.

    ``data`` is a DataLoader yielding :func:`refseg_core.data.dataset.collate` batches (eval items, with
    ``meta["orig_mask"]``), a :class:`~refseg_core.data.refer.Refer`, or None (then ``data_root``,
    ``dataset``, ``split_by`` are loaded). Every sentence of every ref is scored unless
    ``first_sentence_only``. Under DDP each rank scores a shard and the sums are all-reduced.

    Returns the metrics dict (fractions: ``mIoU``, ``oIoU``, ``prec@0.5`` ... ``prec@0.9``, ``n``; on
    G-REFER also ``gIoU``, ``cIoU``, ``N-acc``, ``T-acc``). With ``return_records=True`` returns
    ``(metrics, records)``: one dict per sample (``ref_id``, ``sent_id``, ``iou``, ``mask`` as a
    pycocotools RLE with ``counts`` as str), gathered from every rank.
    """
    from refseg_core.data.dataset import RefSegDataset
    from refseg_core.data.refer import Refer

    base = _unwrap(model)
    if device is None:
        device = next(base.parameters()).device
    device = torch.device(device)
    generalized = False
    if isinstance(data, DataLoader):
        loader = data
        generalized = bool(getattr(getattr(loader.dataset, "refer", None), "generalized", False))
    else:
        refer = data if isinstance(data, Refer) else None
        if refer is None:
            if data_root is None:
                raise ValueError("evaluate: give a DataLoader, a Refer, or data_root")
            refer = Refer(data_root, dataset, split_by)
        generalized = refer.generalized
        ds = RefSegDataset(
            refer,
            split,
            base.tokenizer,
            input_size,
            train=False,
            max_items=max_items,
            first_sentence_only=first_sentence_only,
        )
        info = distu.env_info() if dist.is_available() and dist.is_initialized() else distu.DistInfo()
        loader = _loader(
            ds, batch_size, _Shard(len(ds), info.rank, info.world_size), num_workers, device, False
        )

    was_training = base.training
    base.eval()
    amp = amp_dtype(precision, device)
    metrics = RefSegMetrics()
    records: list[dict] = []
    t0, seen = time.time(), 0
    try:
        for bi, batch in enumerate(loader):
            images = batch["image"].to(device, non_blocking=True)
            tokens = batch["tokens"].to(device, non_blocking=True)
            with autocast(amp, device):
                logits = base(images, tokens)
            metas = batch["meta"]
            if "orig_mask" not in metas[0]:
                raise ValueError(
                    "evaluate: batches lack meta['orig_mask']; build the dataset with train=False"
                )
            preds = logits_to_masks(logits.float(), [m["letterbox"] for m in metas], threshold)
            for pred, m in zip(preds, metas):
                sample_iou = metrics.update(pred, m["orig_mask"], no_target=m["no_target"])  # from the ref
                if return_records:
                    records.append(
                        {
                            "ref_id": m["ref_id"],
                            "sent_id": m["sent_id"],
                            "iou": float(sample_iou),
                            "mask": mask_to_rle(pred),
                        }
                    )
            seen += len(metas)
            if progress and (bi + 1) % 20 == 0:
                print(f"  evaluated {seen} samples ({seen / (time.time() - t0):.1f}/s)", flush=True)
    finally:
        if was_training:
            base.train()
    metrics.all_reduce()
    out = _clean(metrics.compute(), generalized)
    if return_records:
        gathered = distu.all_gather_objects(records)
        return out, [r for rank_records in gathered for r in rank_records]
    return out


def mask_to_rle(mask: np.ndarray) -> dict:
    """A boolean mask ``(H, W)`` as a compressed COCO RLE ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


@torch.no_grad()
def predict(
    model: nn.Module,
    image,
    text: str,
    input_size: int = 416,
    threshold: float = 0.35,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment what ``text`` refers to in one PIL ``image``.

    Returns ``(prob, mask)``: ``prob`` float32 ``(H, W)`` in [0, 1] and ``mask`` bool ``(H, W)`` =
    ``prob > threshold``, at the image's original size (the same post-processing as :func:`evaluate`).
    """
    from refseg_core.data.refer import to_rgb
    from refseg_core.data.transforms import letterbox_image, normalize

    base = _unwrap(model)
    if device is None:
        device = next(base.parameters()).device
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"predict: text must be a non-empty expression, got {text!r}")
    was_training = base.training
    base.eval()
    try:
        x, params = letterbox_image(to_rgb(image), input_size)
        x = normalize(x)[None].to(device)
        tokens = base.tokenizer([text]).to(device)
        logits = base(x, tokens)
        prob = logits_to_probs(logits.float(), [params])[0].numpy().astype(np.float32)
    finally:
        if was_training:
            base.train()
    return prob, prob > threshold


def _first_sentence_baselines(refer, split, max_items):
    return trivial_baselines(refer, split, max_items, first_sentence_only=True)


def trivial_baselines(
    refer, split: str = "val", max_items: int | None = None, first_sentence_only: bool = False
) -> dict[str, dict]:
    """Metrics of two language-blind predictions on every sentence of ``split`` (or each ref's first):
    ``whole_image`` (the mask covers everything) and ``largest_object`` (the largest annotated
    instance of the image — it even uses the ground-truth instance masks). A model must beat both."""
    pairs = refer.sentences(split)
    if first_sentence_only:
        pairs = [(r, r["sentences"][0]) for r in refer.split_refs(split) if r["sentences"]]
    if max_items is not None:
        pairs = pairs[:max_items]
    by_image: dict[int, list[int]] = {}
    for ann_id, ann in refer.anns.items():
        by_image.setdefault(int(ann["image_id"]), []).append(ann_id)
    whole, largest = RefSegMetrics(), RefSegMetrics()
    cache: dict[int, np.ndarray] = {}
    for ref, _ in pairs:
        target = refer.ref_mask(ref)
        iid = int(ref["image_id"])
        if iid not in cache:
            best = np.zeros_like(target)
            ids = by_image.get(iid, [])
            if ids:
                # A stand-in ref per instance, so Refer's own decoding (polygons, RLE) is reused.
                fake = [
                    {"ref_id": f"instance {a}", "image_id": iid, "ann_id": [a] if refer.generalized else a}
                    for a in ids
                ]
                best = refer.ref_mask(max(fake, key=refer.mask_area))
            cache[iid] = best
        no_target = refer.is_no_target(ref)
        whole.update(np.ones_like(target, dtype=bool), target, no_target)
        largest.update(cache[iid], target, no_target)
    return {
        "whole_image": _clean(whole.compute(), refer.generalized),
        "largest_object": _clean(largest.compute(), refer.generalized),
    }


def format_comparison(
    rows: Mapping[str, Mapping[str, float]], keys=("mIoU", "oIoU", "prec@0.5", "prec@0.9")
) -> str:
    """A small fixed-width table (percentages) of metric dicts keyed by name, for logs and notebooks."""
    lines = [f"{'':16s}" + "".join(f"{k:>10s}" for k in keys)]
    for name, m in rows.items():
        lines.append(f"{name:16s}" + "".join(f"{100 * m.get(k, float('nan')):10.2f}" for k in keys))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- logging
class _RunLog:
    """history rows -> ``log.csv`` (rewritten atomically) and TensorBoard scalars (main rank only)."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, history: list[dict]):
        self.out, self.enabled, self.history = out, enabled, history
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(out / "tb"))

    def add(self, row: dict) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k.replace("val_", "val/"), v, row["step"])
            self.tb.flush()
        self.write_csv()

    def write_csv(self) -> None:
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        tmp = self.out / ".log.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)
        os.replace(tmp, self.out / "log.csv")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _write_json(path: Path, obj: dict) -> None:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None  # JSON has no NaN
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(clean(obj), indent=2))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ signals
class StopFlag:
    """SIGINT / SIGTERM set a flag that the loop reads after each step (a checkpoint comes first)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


# -------------------------------------------------------------------------------------------- train
def train_step(loss_module: nn.Module, batch: dict, optimizer, scaler, cfg: TrainConfig, device, amp) -> dict:
    """Forward + loss under autocast. Returns the loss dict (``loss`` still attached to the graph)."""
    images = batch["image"].to(device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    tokens = batch["tokens"].to(device, non_blocking=True)
    masks = batch["mask"].to(device, non_blocking=True)
    with autocast(amp, device):
        return loss_module(images, tokens, masks)


def backward_step(out: dict, model: nn.Module, optimizer, scaler, cfg: TrainConfig) -> None:
    """Backward of ``out["loss"]`` through the (fp16) scaler, optional clipping, one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(out["loss"]).backward()
    if cfg.grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()


def _say(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    config: TrainConfig | Mapping[str, Any] | None,
    progress: bool = True,
    resume: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``config.model`` on ``config.dataset`` and evaluate it on ``config.val_split``.

    ``config`` is a :class:`TrainConfig` or a dict of its fields (a notebook's parameters). ``resume``
    is a checkpoint written by an earlier run (``output_dir/last.pt``): training continues exactly where
    it stopped (same weights, optimiser, schedule, RNG and data order). ``config.init_from`` instead
    takes only the model (and its vocabulary) from a checkpoint and starts a new run (fine-tuning).
    Returns a :class:`TrainResult`; ``output_dir`` receives ``config.yaml``, ``last.pt``, ``log.csv``, ``tb/`` and ``metrics.json``.

    Raises :class:`NonFiniteLossError` on a NaN/inf loss (the last good checkpoint is kept),
    :class:`OutOfMemory` on CUDA OOM, :class:`TrainingInterrupted` after SIGINT/SIGTERM (checkpoint
    written first).

    Nothing is written before the checks pass (:mod:`refseg_core.run_dir`): an ``output_dir`` that
    already holds a run is refused unless ``resume`` is that run's checkpoint or ``overwrite=True``
    (which removes the old run's files); on resume, ``config=None`` means the checkpoint's own
    configuration, and a config may differ from it only in :data:`refseg_core.run_dir.RESUME_SAFE`.
    A lock in ``output_dir`` keeps a second run out while this one writes.
    """
    from refseg_core import run_dir

    ckpt = load_checkpoint(resume) if resume is not None else None
    if config is None:
        if ckpt is None or not isinstance(ckpt.get("config"), Mapping):
            raise ValueError("train: give a configuration (or resume a checkpoint that holds one)")
        config = ckpt["config"]
    cfg = config if isinstance(config, TrainConfig) else make_config(config)
    if ckpt is not None:
        run_dir.check_resume(ckpt, cfg, resume)
    with run_dir.claim(cfg.output_dir, resume=resume, overwrite=overwrite, enabled=distu.env_info().is_main):
        return _train(cfg, progress, resume, ckpt)


def _train(cfg: TrainConfig, progress: bool, resume, ckpt) -> TrainResult:
    """The body of :func:`train`, run while ``cfg.output_dir`` is claimed."""
    info = distu.env_info()
    device = distu.resolve_device(cfg.device, info)
    info = distu.setup(device)
    main = info.is_main
    talk = progress and main
    out_dir = Path(cfg.output_dir)
    if cfg.batch_size % info.world_size:
        raise ValueError(
            f"parameter 'batch_size' ({cfg.batch_size}) must be a multiple of the number of "
            f"processes ({info.world_size}): it is the global batch"
        )
    per_rank = cfg.batch_size // info.world_size

    seed_everything(cfg.seed)
    refer = prepare_data(cfg, info)

    # ---- model (rebuilt from the checkpoint's own config on resume / init_from: same vocabulary, shapes)
    init = None
    if ckpt is None and cfg.init_from is not None:
        if not Path(cfg.init_from).is_file():
            raise FileNotFoundError(f"parameter 'init_from': checkpoint {cfg.init_from} does not exist")
        init = load_checkpoint(cfg.init_from)
    source = ckpt if ckpt is not None else init
    if source is not None:
        from refseg_core.checkpoint import load_model_state, rebuild_kwargs
        from refseg_core.models import build_model

        # The weights are in the state dict: no weight file named in model_config is ever opened.
        name, mcfg = rebuild_kwargs(source.get("model_config"))
        if init is not None and name != cfg.model:
            raise ValueError(
                f"parameter 'init_from': {cfg.init_from} holds a {name} model, but 'model' is {cfg.model!r}"
            )
        model = build_model(name, **mcfg)
        load_model_state(
            model, source["model"], f"checkpoint {resume if ckpt is not None else cfg.init_from}"
        )
        if init is not None:
            _say(talk, f"weights initialised from {cfg.init_from} (fresh optimiser and schedule)")
    else:
        model = build_model_for(cfg, refer)
    model_config = dict(model.config)
    if "pretrained" in model_config:
        model_config["pretrained"] = None  # the state dict carries the weights; rebuilding needs no file
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and info.enabled:
        if device.type != "cuda":
            warnings.warn("sync_bn needs CUDA; BatchNorm stays per-process on CPU", stacklevel=2)
        else:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)

    from refseg_core.data.dataset import RefSegDataset

    train_ds = RefSegDataset(
        refer,
        cfg.train_split,
        model.tokenizer,
        cfg.input_size,
        train=True,
        seed=cfg.seed,
        max_items=cfg.max_train_items,
    )
    val_ds = RefSegDataset(
        refer,
        cfg.val_split,
        model.tokenizer,
        cfg.input_size,
        train=False,
        max_items=cfg.max_eval_items,
        first_sentence_only=cfg.val_first_sentence_only,
    )
    sampler = DistributedSampler(
        train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    steps_per_epoch = len(sampler) // per_rank
    if steps_per_epoch == 0:
        raise ValueError(
            f"split {cfg.train_split!r} has {len(train_ds)} training refs, fewer than one batch "
            f"(batch_size {cfg.batch_size}); lower batch_size or add data"
        )
    eval_bs = cfg.eval_batch_size or per_rank
    val_loader = _loader(
        val_ds, eval_bs, _Shard(len(val_ds), info.rank, info.world_size), cfg.num_workers, device, False
    )

    # ---- optimiser and schedule
    groups = model.param_groups(cfg.lr, cfg.backbone_lr_mult)
    quirk_groups = []
    if cfg.official_lr_quirk:
        # Official CRIS: Adam(lr=base) gives every group the base lr in epoch 1; the backbone group
        # drops to its multiplier from epoch 2 (REFERENCE §1, quirk (a)).
        for i, g in enumerate(groups):
            if not math.isclose(g["lr"], cfg.lr):
                g["lr_after_epoch1"] = g["lr"]
                g["lr"] = cfg.lr
                quirk_groups.append(i)
    optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.lr_gamma)
    warmup = None
    if cfg.warmup_steps > 0:
        warmup = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=0.01, end_factor=1.0, total_iters=cfg.warmup_steps
        )
    amp = amp_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)

    history: list[dict] = []
    start_epoch, global_step, skip_steps = 0, 0, 0
    partial_loss = None
    epoch_loss, epoch_n = 0.0, 0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if warmup is not None and ckpt.get("warmup") is not None:
            warmup.load_state_dict(ckpt["warmup"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, global_step = int(ckpt["epoch"]), int(ckpt["step"])
        skip_steps = int(ckpt.get("epoch_step", 0))
        # the loss sum of the interrupted epoch's first steps, so its logged mean covers the whole epoch
        partial_loss = ckpt.get("epoch_loss") if skip_steps else None
        history = list(ckpt.get("history", []))
        set_rng_state(ckpt["rng"])
        _say(
            talk,
            f"resumed from {resume}: epoch {start_epoch} done, step {global_step}"
            + (f", {skip_steps} steps into epoch {start_epoch + 1}" if skip_steps else ""),
        )

    loss_module: nn.Module = LossModule(model, cfg.dice_weight)
    if info.enabled:
        loss_module = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        loss_module = torch.compile(loss_module)

    if main:  # first write into output_dir: everything above has been checked
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    log = _RunLog(out_dir, main, cfg.tensorboard, history)
    ckpt_path = out_dir / "last.pt"
    saved: Path | None = Path(resume) if resume is not None else None
    metrics: dict = {}
    stopped_early, t_start = False, time.time()

    def save(epoch_done: int, epoch_step: int) -> Path | None:
        nonlocal saved
        if main:
            state = {
                "model": _unwrap(model).state_dict(),
                "model_config": model_config,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "warmup": warmup.state_dict() if warmup is not None else None,
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "rng": rng_state(),
                "epoch": epoch_done,
                "step": global_step,
                "epoch_step": epoch_step,
                "epoch_loss": [epoch_loss, epoch_n] if epoch_step else None,
                "history": list(history),
                "config": cfg.to_dict(),
            }
            atomic_torch_save(state, ckpt_path)
            saved = ckpt_path
        distu.barrier()
        return ckpt_path

    def run_eval() -> dict:
        return evaluate(
            model, val_loader, threshold=cfg.eval_threshold, device=device, precision=cfg.precision
        )

    _say(
        talk,
        f"training {cfg.model} on {cfg.dataset} ({len(train_ds)} refs, {steps_per_epoch} steps/epoch, "
        f"batch {cfg.batch_size} = {info.world_size} x {per_rank}) on {device}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters",
    )
    if getattr(train_ds, "empty_sentences", 0):
        _say(
            talk, f"{train_ds.empty_sentences} empty sentences in the training refs, tokenised as [SOT, EOT]"
        )
    try:
        with StopFlag() as stop:
            for epoch in range(start_epoch, cfg.epochs):
                sampler.set_epoch(epoch)
                train_ds.set_epoch(epoch)
                skip = skip_steps if epoch == start_epoch else 0
                loader = _loader(
                    train_ds,
                    per_rank,
                    _SkipSampler(sampler, skip * per_rank) if skip else sampler,
                    cfg.num_workers,
                    device,
                    True,
                )
                _set_train_mode(model, cfg.bn_eval)
                win_loss, win_n, win_t, epoch_loss, epoch_n = 0.0, 0, time.time(), 0.0, 0
                if skip and partial_loss is not None:
                    epoch_loss, epoch_n = float(partial_loss[0]), int(partial_loss[1])
                epoch_step = skip
                halt = None
                for batch in loader:
                    try:
                        out = train_step(loss_module, batch, optimizer, scaler, cfg, device, amp)
                        # One collective for the global loss and the stop vote (signal / time limit).
                        want_stop = stop.signum is not None or (
                            cfg.time_limit_s is not None and time.time() - t_start > cfg.time_limit_s
                        )
                        vec = torch.tensor(
                            [float(out["loss"].detach()), float(want_stop)],
                            device=device,
                            dtype=torch.float64,
                        )
                        if info.enabled:
                            dist.all_reduce(vec)
                            vec[0] /= info.world_size
                        loss_value = float(vec[0])
                        if not math.isfinite(loss_value):
                            ids = [m["ref_id"] for m in batch["meta"]]
                            raise NonFiniteLossError(
                                f"loss is {loss_value} at step {global_step + 1} (epoch {epoch + 1}, batch "
                                f"{epoch_step + 1} of {steps_per_epoch}; ref ids {ids[:8]}); the weights of "
                                f"this step were not updated; last good checkpoint: {saved or 'none yet'}"
                            )
                        backward_step(out, loss_module, optimizer, scaler, cfg)
                    except torch.cuda.OutOfMemoryError as exc:
                        raise OutOfMemory(
                            f"CUDA out of memory at step {global_step + 1} with batch_size {cfg.batch_size} "
                            f"({per_rank} per process, input_size {cfg.input_size}, precision {cfg.precision}); "
                            "lower batch_size or input_size, use precision: bf16, or add GPUs"
                        ) from exc
                    if warmup is not None and global_step < cfg.warmup_steps:
                        warmup.step()
                    global_step += 1
                    epoch_step += 1
                    n = len(batch["meta"]) * info.world_size
                    win_loss, win_n = win_loss + loss_value, win_n + 1
                    epoch_loss, epoch_n = epoch_loss + loss_value, epoch_n + 1
                    if global_step % cfg.log_every == 0:
                        dt = time.time() - win_t
                        row = {
                            "epoch": epoch + 1,
                            "step": global_step,
                            "loss": win_loss / win_n,
                            "lr": optimizer.param_groups[-1]["lr"],
                            "images_per_s": win_n * n / max(dt, 1e-9),
                        }
                        log.add(row)
                        _say(
                            talk,
                            f"epoch {epoch + 1}/{cfg.epochs} step {global_step} loss {row['loss']:.4f} "
                            f"lr {row['lr']:.2e} {row['images_per_s']:.1f} img/s",
                        )
                        win_loss, win_n, win_t = 0.0, 0, time.time()
                    if vec[1] > 0:
                        halt = "signal" if stop.signum is not None else "time"
                        break
                if halt == "signal":
                    path = save(epoch, epoch_step)
                    name = signal.Signals(stop.signum).name
                    raise TrainingInterrupted(
                        f"{name} received at step {global_step}: checkpoint saved to {path}; "
                        f"continue with --resume {path}",
                        stop.signum,
                        path,
                    )
                if halt == "time":
                    stopped_early = True
                    _say(talk, f"time limit of {cfg.time_limit_s} s reached at step {global_step}")
                    metrics = run_eval()
                    log.add(
                        {
                            "epoch": epoch + 1,
                            "step": global_step,
                            **{f"val_{k}": v for k, v in metrics.items() if k != "n"},
                        }
                    )
                    save(epoch, epoch_step)
                    break
                # ---- end of epoch: schedule, validation, checkpoint
                scheduler.step()
                if epoch == 0:
                    for i in quirk_groups:
                        g = optimizer.param_groups[i]
                        g["lr"] = g["lr"] * g["lr_after_epoch1"] / cfg.lr
                last = epoch + 1 == cfg.epochs
                row = {
                    "epoch": epoch + 1,
                    "step": global_step,
                    "loss": epoch_loss / max(epoch_n, 1),
                    "lr": optimizer.param_groups[-1]["lr"],
                }
                if (epoch + 1) % cfg.eval_every == 0 or last:
                    t_eval = time.time()
                    metrics = run_eval()
                    row.update({f"val_{k}": v for k, v in metrics.items() if k != "n"})
                    _say(
                        talk,
                        f"epoch {epoch + 1}/{cfg.epochs} train loss {row['loss']:.4f} | val "
                        f"mIoU {100 * metrics['mIoU']:.2f} oIoU {100 * metrics['oIoU']:.2f} "
                        f"prec@0.5 {100 * metrics['prec@0.5']:.2f} (n={metrics['n']}, "
                        f"{time.time() - t_eval:.1f} s) | {time.time() - t_start:.0f} s elapsed",
                    )
                log.add(row)
                if (epoch + 1) % cfg.checkpoint_every == 0 or last:
                    save(epoch + 1, 0)
    finally:
        log.close()

    if not metrics:  # nothing left to train (resumed a finished run): still report the validation score
        metrics = run_eval()
    train_time = time.time() - t_start
    extra: dict = {}
    if main and cfg.synthetic:
        # Small generated data: the language-blind baselines cost a second and show what "learning" means.
        extra["baselines"] = (
            trivial_baselines(refer, cfg.val_split, cfg.max_eval_items)
            if not cfg.val_first_sentence_only
            else _first_sentence_baselines(refer, cfg.val_split, cfg.max_eval_items)
        )
        _say(talk, format_comparison({cfg.model: metrics, **extra["baselines"]}))
    if main:
        _write_json(
            out_dir / "metrics.json",
            {
                **metrics,
                **({"baselines": extra["baselines"]} if "baselines" in extra else {}),
                "meta": {
                    "model": _unwrap(model).config.get("name", cfg.model),
                    "dataset": cfg.dataset,
                    "split_by": cfg.split_by,
                    "split": cfg.val_split,
                    "synthetic": cfg.synthetic,
                    "epochs": cfg.epochs,
                    "steps": global_step,
                    "stopped_early": stopped_early,
                    "threshold": cfg.eval_threshold,
                    "train_time_s": round(train_time, 2),
                    "world_size": info.world_size,
                    "val_first_sentence_only": cfg.val_first_sentence_only,
                },
            },
        )
    return TrainResult(
        model=_unwrap(model),
        history=history,
        metrics=metrics,
        output_dir=out_dir,
        checkpoint=saved,
        config=cfg,
        stopped_early=stopped_early,
        train_time_s=train_time,
        extra=extra,
    )


__all__ = [
    "amp_dtype",
    "autocast",
    "backward_step",
    "build_model_for",
    "evaluate",
    "format_comparison",
    "LossModule",
    "mask_to_rle",
    "NonFiniteLossError",
    "OutOfMemory",
    "predict",
    "prepare_data",
    "seed_everything",
    "StopFlag",
    "train",
    "train_step",
    "TrainingInterrupted",
    "TrainResult",
    "trivial_baselines",
]
