"""Model speed: train-step throughput, inference latency (batch 1) and throughput (large batch), peak
memory, for each (precision, channels_last, torch.compile) configuration.

The train step measured is the engine's own (:func:`refseg_core.engine.train_step` and
``backward_step``: autocast, ``model.loss`` through the same ``LossModule`` wrapper that
``torch.compile`` wraps in training, Adam over ``model.param_groups``, a GradScaler for fp16), so a
number here is the speed of ``python -m refseg_core train`` minus data loading.

Each function returns result rows (dicts): the environment fields of :func:`benchmarks.env.environment`,
then ``kind``, ``model``, ``input_size``, ``batch``, ``precision``, ``channels_last``, ``compile``,
``images_per_s``, timing statistics, ``peak_mem_mib`` / ``peak_mem_kind``, FLOPs per image and, on CUDA,
``mfu``. A configuration that fails (out of memory, a compiler error) gives a row with ``error`` and no
numbers, never a made-up one.
"""

from __future__ import annotations

import contextlib
import itertools
import traceback
import types
from dataclasses import asdict, dataclass

import torch

from benchmarks.env import environment
from benchmarks.flops import mfu, model_flops_per_image, peak_tflops
from benchmarks.timing import PeakMemory, summarise, time_calls
from refseg_core import engine
from refseg_core.models import build_model

PRECISIONS = ("fp32", "bf16", "fp16")
EXPRESSIONS = [
    "the man on the left in a red shirt holding a black umbrella",
    "dog",
    "the small blue ring",
    "second car from the right behind the bus",
]


@dataclass(frozen=True)
class BenchConfig:
    """One point of the configuration grid."""

    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a GradScaler when training)
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def config_grid(
    precisions=PRECISIONS, channels_last=(False, True), compile=(False, True)
) -> list[BenchConfig]:
    return [BenchConfig(p, c, k) for p, c, k in itertools.product(precisions, channels_last, compile)]


def make_batch(model, batch: int, size: int, device: torch.device, seed: int = 0) -> dict:
    """A fixed random batch: ``image (B,3,S,S)`` ~ N(0,1) (already normalised), ``tokens (B,L)`` from the
    model's tokenizer, ``mask (B,1,S,S)`` a centred box (a realistic foreground fraction)."""
    if size % 32:
        raise ValueError(f"input size must be a multiple of 32 (CRIS and LTS stride), got {size}")
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=g)
    tokens = model.tokenizer([EXPRESSIONS[i % len(EXPRESSIONS)] for i in range(batch)])
    masks = torch.zeros(batch, 1, size, size)
    masks[:, :, size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1.0
    return dict(image=images.to(device), tokens=tokens.to(device), mask=masks.to(device))


def _set_memory_format(model, batch: dict, channels_last: bool) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    return dict(batch, image=batch["image"].contiguous(memory_format=fmt))


def _base_row(kind: str, name: str, size: int, batch: int, cfg: BenchConfig, device: torch.device) -> dict:
    return dict(environment(device), kind=kind, model=name, input_size=size, batch=batch, **asdict(cfg))


def _finish(row: dict, times: list[float], batch: int, mem: PeakMemory, flops: int | None, device) -> dict:
    stats = summarise(times)
    ips = batch / stats["median_s"]
    row.update(
        stats,
        images_per_s=round(ips, 3),
        latency_ms=round(1000 * stats["median_s"], 3),
        peak_mem_mib=mem.mib,
        peak_mem_kind=mem.kind,
        flops_per_image=flops,
    )
    if device.type == "cuda":
        peak, basis = peak_tflops(torch.cuda.get_device_name(device), row["precision"])
        row.update(mfu=mfu(flops, ips, peak), peak_tflops=peak, peak_basis=basis)
    return row


def _error_row(row: dict, exc: BaseException) -> dict:
    row.update(
        error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500], images_per_s=None
    )
    return row


def train_step_fn(model, batch: dict, cfg: BenchConfig, device: torch.device, lr: float = 1e-4):
    """A closure doing one engine train step (forward, loss, backward, Adam step) on ``batch``."""
    amp = engine.amp_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    optimizer = torch.optim.Adam(model.param_groups(lr), lr=lr)
    loss_module = engine.LossModule(model)
    if cfg.compile:
        loss_module = torch.compile(loss_module)
    step_cfg = types.SimpleNamespace(grad_clip=None)

    def step():
        out = engine.train_step(loss_module, batch, device, amp, channels_last=cfg.channels_last)
        engine.backward_step(out, loss_module, optimizer, scaler, step_cfg)

    return step


def inference_fn(model, batch: dict, cfg: BenchConfig, device: torch.device):
    """A closure running ``model(images, tokens)`` in eval mode under ``torch.no_grad`` and autocast."""
    amp = engine.amp_dtype(cfg.precision, device)
    fwd = torch.compile(model) if cfg.compile else model
    images, tokens = batch["image"], batch["tokens"]

    def run():
        with torch.no_grad(), engine.autocast(amp, device):
            fwd(images, tokens)

    return run


def _reset_compiler():
    with contextlib.suppress(Exception):
        torch._dynamo.reset()


def bench_model(
    model_or_name,
    device: torch.device | str,
    size: int,
    train_batch: int,
    infer_batch: int,
    configs: list[BenchConfig],
    warmup: int = 1,
    repeats: int = 3,
    latency_repeats: int = 5,
    kinds=("train_step", "inference_latency", "inference_throughput"),
    count_flops: bool = True,
    seed: int = 0,
    **overrides,
) -> list[dict]:
    """Rows for one model over ``configs``: a ``train_step`` row at ``train_batch``, an
    ``inference_latency`` row at batch 1 and an ``inference_throughput`` row at ``infer_batch``.

    ``model_or_name`` is a name for :func:`build_model` (``overrides`` go to it) or a built model (its
    ``config["name"]`` names the rows). The weights are random (seeded): speed does not depend on them.
    """
    device = torch.device(device)
    unknown = set(kinds) - {"train_step", "inference_latency", "inference_throughput"}
    if unknown:
        raise ValueError(f"unknown benchmark kinds {sorted(unknown)}")
    torch.manual_seed(seed)
    model = build_model(model_or_name, **overrides) if isinstance(model_or_name, str) else model_or_name
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    model.to(device)
    batches = {b: make_batch(model, b, size, device, seed) for b in {train_batch, infer_batch, 1}}
    flops = {}
    if count_flops:  # once per batch shape, fp32 eager: FLOPs do not depend on the configuration
        flops["train_step"] = model_flops_per_image(model, batches[train_batch], train=True)
        flops["inference"] = model_flops_per_image(model, batches[infer_batch], train=False)
    rows = []
    for cfg in configs:
        for kind in kinds:
            b = train_batch if kind == "train_step" else 1 if kind == "inference_latency" else infer_batch
            row = _base_row(kind, name, size, b, cfg, device)
            batch = _set_memory_format(model, batches[b], cfg.channels_last)
            try:
                if kind == "train_step":
                    model.train()
                    fn = train_step_fn(model, batch, cfg, device)
                else:
                    model.eval()
                    fn = inference_fn(model, batch, cfg, device)
                fn()  # untimed: the first call pays for compilation / allocator growth / Adam state
                with PeakMemory(device) as mem:
                    times = time_calls(
                        fn,
                        device,
                        warmup=warmup,
                        repeats=latency_repeats if kind == "inference_latency" else repeats,
                    )
                f = flops.get("train_step" if kind == "train_step" else "inference")
                rows.append(_finish(row, times, b, mem, f, device))
            except Exception as exc:  # noqa: BLE001 - OOM, compiler errors: recorded as an error row
                traceback.print_exc(limit=1)
                rows.append(_error_row(row, exc))
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            finally:
                model.zero_grad(set_to_none=True)
                if cfg.compile:
                    _reset_compiler()
            _print_row(rows[-1])
    model.to(memory_format=torch.contiguous_format)
    return rows


def _print_row(row: dict) -> None:
    cfg = f"{row['precision']}{' cl' if row['channels_last'] else ''}{' compile' if row['compile'] else ''}"
    what = (
        f"{row['images_per_s']:.2f} img/s, {row['latency_ms']:.1f} ms, peak {row['peak_mem_mib']} MiB"
        if row.get("images_per_s")
        else f"ERROR {row.get('error')}"
    )
    print(
        f"  {row['model']:10s} {row['kind']:21s} b={row['batch']:<3d} {cfg:18s} {what}"
        f"  load {row['loadavg']}",
        flush=True,
    )
