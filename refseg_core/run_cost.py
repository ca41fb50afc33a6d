"""What a full reproduction run costs, computed from the committed GPU rows (``refseg_core/evidence/``),
never typed in: :func:`estimate` turns a configuration's epochs, batch and dataset size into GPU-hours and
memory, with the measured rate each number rests on.

Two rates bound the time of an epoch (one sample per ref, REFERENCE: "one sample = one referred object"):

* the *step* rate — ``train_step`` alone, measured interleaved with the official code on the same GPU
  (the paper-cell configurations run the official recipe, fp16 NCHW: the official code's own step rate is
  the one that applies to them);
* the *loop* rate — a whole training run (data loading, logging, the loss sync) divided by its images; it
  was measured on the bf16 path only, so it is applied as the ratio loop / step of that run.

Validation of each epoch (first sentence of every ref of ``val_split``) adds the measured evaluation rate.
Several GPUs divide the time (ideal scaling: an upper bound of the speed-up) and the per-GPU batch.
"""

from __future__ import annotations

import math

from refseg_core import configs, evidence
from refseg_core.config import TrainConfig, load_config

GPU_ROWS = "NVIDIA_H200_check"


def _row(rows: list[dict], part: str, **match) -> dict | None:
    for r in rows:
        if r.get("part") == part and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _step_row(cfg: TrainConfig, rows: list[dict]) -> dict | None:
    if cfg.model == "cris_r50":
        return _row(rows, "official", model="cris_r50")
    return _row(rows, "lts", model="lts") if cfg.model == "lts" else None


def step_rate(cfg: TrainConfig, rows: list[dict]) -> tuple[float | None, str]:
    """Images per second of one training step for ``cfg``'s model and precision, and what it rests on."""
    r = _step_row(cfg, rows)
    if r is None:
        return None, f"no committed step row for {cfg.model}"
    if cfg.model == "cris_r50":
        if cfg.precision == "fp16" and not cfg.channels_last:
            return float(
                r["official_images_per_s"]
            ), f"the official code's fp16 NCHW step, batch {r['batch']}"
        return float(r["ours_images_per_s"]), f"this book's {r['ours_config']} step, batch {r['batch']}"
    differs = "" if r.get("precision") == cfg.precision else f" (the run uses {cfg.precision})"
    return float(r["images_per_s"]), f"LTS {r['precision']} step, batch {r['batch']}{differs}"


def loop_factor(rows: list[dict], model: str = "cris_r50") -> tuple[float | None, str]:
    """Measured images/s of a whole training run over its step rate (same model, precision, GPU); None for
    a ``model`` other than the one that run trained (its data loading and overheads are not that model's)."""
    run, step = _row(rows, "training"), _row(rows, "official", model="cris_r50")
    if run is None or step is None or not run.get("train_time_s"):
        return None, "no committed training-run row"
    if run.get("model") != model:
        return None, f"the committed training run is of {run.get('model')}, not {model}"
    loop = run["steps"] * run["batch"] / run["train_time_s"]
    return loop / float(step["ours_images_per_s"]), f"{loop:.0f} img/s in a {run['steps']}-step run"


def peak_memory(cfg: TrainConfig, rows: list[dict], per_gpu_batch: int) -> dict:
    """``{gib, batch, basis, bound}``: the measured peak memory of one training step of ``cfg``'s model in
    its precision (CRIS-R50 fp16 NCHW: the official step's, else this book's step), the batch it was
    measured at, what it rests on, and whether it bounds a step at ``per_gpu_batch`` ("upper bound" only
    when the per-GPU batch is at most the measured one). Values are None without a row of the model."""
    none = {"gib": None, "batch": None, "basis": f"no committed memory row for {cfg.model}", "bound": None}
    if cfg.model == "cris_r50":
        r = _row(rows, "official", model="cris_r50")
        if r is None:
            return none
        official = cfg.precision == "fp16" and not cfg.channels_last and r.get("official_peak_mem_mib")
        mib = r["official_peak_mem_mib"] if official else r.get("ours_peak_mem_mib")
        basis = "the official code's fp16 NCHW step" if official else f"this book's {r['ours_config']} step"
    elif cfg.model == "lts":
        r = _row(rows, "lts", model="lts")
        if r is None:
            return none
        mib, basis = r.get("peak_mem_mib"), f"LTS {r.get('precision')} step"
    else:
        return none
    if mib is None:
        return none
    if r.get("peak_mem_note"):
        basis += f" ({r['peak_mem_note']})"
    batch = r.get("batch")
    bound = (
        "upper bound"
        if batch is not None and per_gpu_batch <= batch
        else f"not a bound: {per_gpu_batch} per GPU is more than the measured {batch}"
    )
    return {"gib": round(mib / 1024, 1), "batch": batch, "basis": basis, "bound": bound}


def estimate(config: str | TrainConfig, gpus: int = 1, rows: list[dict] | None = None) -> dict:
    """GPU-hours of a full run of ``config`` on ``gpus`` GPUs of the committed rows' kind.

    Returns ``{config, device, torch, date, gpus, train_refs, val_refs, epochs, step_images_per_s,
    step_basis, hours_step_bound, hours_loop_measured, loop_ratio, loop_basis, eval_sentences_per_s,
    eval_basis, peak_mem_gib_batch, memory, per_gpu_batch, notes}``; hours are None where no row covers the model or dataset (the notes
    say which). Several GPUs divide the time by ``gpus`` (ideal scaling, an upper bound of the speed-up);
    ``memory`` is :func:`peak_memory` at the per-GPU batch."""
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    rows = evidence.rows(GPU_ROWS) if rows is None else rows
    if gpus < 1:
        raise ValueError(f"estimate: gpus must be at least 1, got {gpus}")
    notes = []
    sizes = configs.published().get("datasets", {}).get(cfg.dataset, {}).get("refs", {})
    train_refs, val_refs = sizes.get(cfg.train_split), sizes.get(cfg.val_split)
    if train_refs is None:
        notes.append(f"no published split size for {cfg.dataset} {cfg.train_split}")
    rate, basis = step_rate(cfg, rows)
    if rate is None:
        notes.append(basis)
    factor, loop_basis = loop_factor(rows, cfg.model)
    ev = _row(rows, "eval_data", kind="evaluation")
    eval_rate = float(ev["sentences_per_s"]) if ev else None
    if ev is None:
        eval_basis = "no committed evaluation row: validation time left out"
    else:
        eval_basis = f"{ev.get('model')} {ev.get('precision')} evaluation, batch {ev.get('batch')}"
        differs = [
            f"not {v}" for k, v in (("model", cfg.model), ("precision", cfg.precision)) if ev.get(k) != v
        ]
        eval_basis += f" ({', '.join(differs)})" if differs else ""
    any_row = rows[0] if rows else {}

    def hours(images_per_s):
        if images_per_s is None or train_refs is None:
            return None
        epoch = train_refs / images_per_s + ((val_refs or 0) / eval_rate if eval_rate else 0.0)
        return cfg.epochs * epoch / gpus / 3600

    per_gpu_batch = math.ceil(cfg.batch_size / gpus)
    memory = peak_memory(cfg, rows, per_gpu_batch)
    step_batch = (_step_row(cfg, rows) or {}).get("batch")
    if rate is not None and step_batch is not None and per_gpu_batch < step_batch:
        notes.append(
            f"the step rate was measured at batch {step_batch} per GPU; at {per_gpu_batch} per GPU each "
            "step does less work for its fixed costs, so these hours are a lower bound"
        )
    return {
        "config": config if isinstance(config, str) else cfg.model,
        "device": any_row.get("device"),
        "torch": any_row.get("torch"),
        "date": (any_row.get("date") or "")[:10],
        "gpus": gpus,
        "train_refs": train_refs,
        "val_refs": val_refs,
        "epochs": cfg.epochs,
        "step_images_per_s": rate,
        "step_basis": basis,
        "hours_step_bound": hours(rate),
        "hours_loop_measured": hours(None if rate is None or factor is None else rate * factor),
        "loop_ratio": factor,
        "loop_basis": loop_basis,
        "eval_sentences_per_s": eval_rate,
        "eval_basis": eval_basis,
        "peak_mem_gib_batch": (memory["gib"], memory["batch"]),
        "memory": memory,
        "per_gpu_batch": per_gpu_batch,
        "notes": notes,
    }


def data_size(dataset: str, splits: list[str] | None = None) -> dict:
    """What ``data fetch DATASET --images all`` (or ``--images`` the named ``splits``) downloads, from the
    package's own data, never typed in: the annotation source tried first (``sources.yaml``), the COCO
    train2014 images of the splits (``published.yaml``'s per-split counts; their sum is the most that can
    be fetched) and their bytes at the mean size of a train2014 image (the zip's size over its image
    count), next to the whole zip of ``--image-source zip``.

    Returns ``{dataset, label, source, address, revision, verified_here, images_by_split, images,
    mean_image_bytes, images_bytes, zip_bytes, zip_images, counts_basis}``; ``images`` is None where no
    per-split count is published (gRefCOCO)."""
    from refseg_core.data import sources

    name, entry = sources.source_for(dataset)
    pub = configs.published().get("datasets", {}).get(dataset, {})
    by_split = dict(pub.get("images", {}))
    if splits is not None:
        unknown = sorted(set(splits) - set(by_split))
        if by_split and unknown:
            raise ValueError(f"data_size: {dataset} has no split(s) {unknown}; it has {sorted(by_split)}")
        by_split = {s: n for s, n in by_split.items() if s in splits}
    zip_entry = sources.coco("zip")
    mean = zip_entry["size"] / zip_entry["images"]
    images = sum(by_split.values()) if by_split else None
    return {
        "dataset": dataset,
        "label": sources.label(dataset),
        "source": name,
        "address": entry.get("repo") or entry.get("url"),
        "revision": entry.get("revision"),
        "verified_here": entry.get("verified_here"),
        "images_by_split": by_split,
        "images": images,
        "mean_image_bytes": mean,
        "images_bytes": None if images is None else images * mean,
        "zip_bytes": zip_entry["size"],
        "zip_images": zip_entry["images"],
        "counts_basis": (pub.get("source") or {}).get("images", "no published image counts"),
    }


def hours_text(value: float | None) -> str:
    """Hours as the tables print them: one decimal, two under an hour, "–" for None."""
    return "–" if value is None else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def hours_table(
    names: list[str], gpus=(1, 8), rows: list[dict] | None = None
) -> tuple[list[list], list[str]]:
    """``(rows, headers)`` of a table of :func:`estimate` for each configuration of ``names``: per GPU
    count the hours as "step rate alone / with the measured loop ratio" ("–" where a row is missing), and
    what is missing (the notes about rows and split sizes)."""
    out = []
    for name in names:
        ests = [estimate(name, g, rows) for g in gpus]
        missing = [n for n in ests[0]["notes"] if n.startswith("no ")]
        if ests[0]["hours_loop_measured"] is None and ests[0]["hours_step_bound"] is not None:
            missing.append(f"loop ratio: {ests[0]['loop_basis']}")
        cells = [
            f"{hours_text(e['hours_step_bound'])} / {hours_text(e['hours_loop_measured'])}" for e in ests
        ]
        out.append([name, ests[0]["epochs"], ests[0]["train_refs"], *cells, "; ".join(missing)])
    headers = ["configuration", "epochs", "train refs"]
    headers += [f"{g} GPU{'s' if g > 1 else ''}: hours" for g in gpus] + ["missing"]
    return out, headers
