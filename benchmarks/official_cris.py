"""Our CRIS against the official implementation (DerrickWang005/CRIS.pytorch), side by side in one
process: the same weights, the same input, the same batch.

The official code is imported from a checkout given at run time (``--official-repo``); nothing of it is
part of this repository. Its model is built the way ``benchmarks/compare_official_cris.py`` builds it
(that script's helpers are imported, not repeated): the official constructor's ``torch.jit.load`` of an
OpenAI CLIP file is answered with our backbone's weights, then every weight of ours is copied in through
:func:`refseg_core.models.cris_official.ours_to_official` (``strict=True``).

The official train step is the loop body of its ``engine/engine.py``: ``model(image, text, target)``
returns the loss under autocast, ``zero_grad``, ``scaler.scale(loss).backward()``, ``scaler.step``,
``scaler.update``; Adam over all parameters. Its recipe is fp16 autocast on CUDA, eager, NCHW.

Rows (``kind="train_step_vs_official"``) hold ``ours_images_per_s``, ``official_images_per_s`` and
``speedup`` (ours / official) with both sides' configurations.
"""

from __future__ import annotations

import contextlib
import types
from pathlib import Path

import torch

from benchmarks.bench_models import BenchConfig, _set_memory_format, make_batch, train_step_fn
from benchmarks.env import environment
from benchmarks.timing import PeakMemory, summarise, time_calls
from refseg_core import engine
from refseg_core.models import build_model
from refseg_core.models.cris_official import ours_to_official

ARCH = {"cris_r50": "RN50", "cris_r101": "RN101"}


class OfficialRepoMissing(RuntimeError):
    """No official checkout was given (or it is not one): the comparison is skipped."""


def build_pair(name: str, official_repo: str | Path | None, seed: int = 0):
    """``(ours, official)``: our ``cris_r50`` / ``cris_r101`` with random (seeded) weights and the official
    ``CRIS(cfg)`` holding exactly the same weights. Raises :class:`OfficialRepoMissing` naming the path."""
    if name not in ARCH:
        raise ValueError(f"the official comparison exists for {sorted(ARCH)}, not {name!r}")
    if official_repo is None:
        raise OfficialRepoMissing(
            "no --official-repo given: the official CRIS row is skipped (pass a "
            "checkout of github.com/DerrickWang005/CRIS.pytorch, e.g. "
            "/work/scratch/cris_official)"
        )
    repo = Path(official_repo).resolve()
    if not (repo / "model" / "segmenter.py").is_file():
        raise OfficialRepoMissing(
            f"--official-repo {repo}: no model/segmenter.py there (expected a "
            "CRIS.pytorch checkout); the official CRIS row is skipped"
        )
    from benchmarks import compare_official_cris as cmp  # the CRIS chapter's builder of the official model

    segmenter = cmp._import_official(repo)
    torch.manual_seed(seed)
    ours = build_model(name)
    clip_sd = {k: v for k, v in ours.backbone.state_dict().items() if ".attnpool.connect." not in k}
    cfg = types.SimpleNamespace(clip_pretrain="<our random CLIP weights>", **cmp.OFFICIAL_CFG[ARCH[name]])
    cfg.word_len = ours.config["word_len"]
    with cmp._jit_load_returns(clip_sd):
        official = segmenter.CRIS(cfg)
    official.load_state_dict(ours_to_official(ours.state_dict(), module_prefix=False), strict=True)
    return ours, official


def official_step_fn(official, batch: dict, precision: str, device: torch.device, lr: float = 1e-4):
    """One step of the official training loop body (see the module docstring)."""
    amp = engine.amp_dtype(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    optimizer = torch.optim.Adam(official.parameters(), lr=lr)
    images, tokens, masks = batch["image"], batch["tokens"], batch["mask"]

    def step():
        with engine.autocast(amp, device):
            _, _, loss = official(images, tokens, masks)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def _measure(step, device: torch.device, warmup: int, repeats: int) -> tuple[dict, PeakMemory]:
    """Run ``step`` once (build optimiser state, compile), then time it: ``(summarise(times), peak memory)``."""
    step()
    with PeakMemory(device) as mem:
        times = time_calls(step, device, warmup=warmup, repeats=repeats)
    return summarise(times), mem


def official_recipe(device: torch.device) -> str:
    """The official precision: ``torch.cuda.amp.autocast()`` = fp16 on CUDA; on CPU it does nothing (fp32)."""
    return "fp16" if device.type == "cuda" else "fp32"


def compare_train_step(
    name: str,
    official_repo,
    device,
    size: int,
    batch: int,
    ours_configs: list[BenchConfig],
    official_precisions: list[str] | None = None,
    warmup: int = 1,
    repeats: int = 3,
    seed: int = 0,
) -> list[dict]:
    """Rows comparing our train step under each of ``ours_configs`` with the official one.

    Each of our configurations is compared with the official step at the same precision (eager, NCHW:
    the official code has no compile or channels_last switch); ``official_precisions`` adds official
    measurements (default: its own recipe) so that "our best vs the official as released" is one row
    too (``official_precision`` says which). Without a usable ``official_repo`` the result is one row
    with ``skipped`` saying why.
    """
    device = torch.device(device)
    try:
        ours, official = build_pair(name, official_repo, seed)
    except OfficialRepoMissing as e:
        print(f"  official CRIS comparison skipped: {e}", flush=True)
        return [
            dict(
                environment(device),
                kind="train_step_vs_official",
                model=name,
                input_size=size,
                batch=batch,
                skipped=str(e),
                ours_images_per_s=None,
                official_images_per_s=None,
            )
        ]
    ours.to(device).train()
    official.to(device).train()
    data = make_batch(ours, batch, size, device, seed)

    extra = list(official_precisions or [official_recipe(device)])
    official_ips: dict[str, tuple[float | None, PeakMemory | None, dict]] = {}
    wanted = sorted({c.precision for c in ours_configs} | set(extra))
    for p in wanted:
        try:
            stats, mem = _measure(official_step_fn(official, data, p, device), device, warmup, repeats)
            official_ips[p] = (round(batch / stats["median_s"], 3), mem, stats)
        except Exception as exc:  # noqa: BLE001 - recorded, not hidden
            official_ips[p] = (None, None, dict(error=f"{type(exc).__name__}: {exc}"[:300]))
        official.zero_grad(set_to_none=True)
        print(f"  official {name} train_step b={batch} {p}: {official_ips[p][0]} img/s", flush=True)
    official.cpu()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    rows = []
    for cfg in ours_configs:
        batch_c = _set_memory_format(ours, data, cfg.channels_last)
        row = dict(
            environment(device),
            kind="train_step_vs_official",
            model=name,
            input_size=size,
            batch=batch,
            precision=cfg.precision,
            channels_last=cfg.channels_last,
            compile=cfg.compile,
        )
        try:
            stats, mem = _measure(train_step_fn(ours, batch_c, cfg, device), device, warmup, repeats)
            ours_ips = round(batch / stats["median_s"], 3)
            row.update(
                ours_images_per_s=ours_ips,
                ours_median_s=stats["median_s"],
                ours_peak_mem_mib=mem.mib,
                peak_mem_kind=mem.kind,
            )
        except Exception as exc:  # noqa: BLE001
            row.update(ours_images_per_s=None, error=f"{type(exc).__name__}: {exc}"[:300])
            ours_ips = None
        finally:
            ours.zero_grad(set_to_none=True)
            if cfg.compile:
                with contextlib.suppress(Exception):
                    torch._dynamo.reset()
        for p, (off_ips, off_mem, off_stats) in official_ips.items():
            if p != cfg.precision and p not in extra:
                continue
            r = dict(
                row,
                official_precision=p,
                official_channels_last=False,
                official_compile=False,
                official_images_per_s=off_ips,
                official_median_s=off_stats.get("median_s"),
                official_peak_mem_mib=off_mem.mib if off_mem else None,
                matched=(p == cfg.precision and not cfg.channels_last and not cfg.compile),
                speedup=round(ours_ips / off_ips, 3) if ours_ips and off_ips else None,
            )
            if "error" in off_stats:
                r["official_error"] = off_stats["error"]
            rows.append(r)
            print(
                f"  ours {name} {cfg} vs official {p}: {r['ours_images_per_s']} vs {off_ips} img/s "
                f"(x{r['speedup']})",
                flush=True,
            )
    ours.to(memory_format=torch.contiguous_format)
    return rows
