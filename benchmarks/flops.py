"""Model FLOPs (``torch.utils.flop_counter.FlopCounterMode``) and model FLOPs utilisation (MFU).

MFU = (FLOPs of the model per image x images per second) / the device's peak dense FLOP/s at the
precision used (PaLM, Chowdhery et al. 2022, App. B). FLOPs are counted once, in fp32 eager mode, for one
forward (inference) or forward + backward (train step) at the benchmark's input size; the counter counts
matrix multiplications and convolutions (multiply-add = 2 FLOPs), not element-wise work, as MFU intends.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense peak TFLOP/s per GPU from NVIDIA's data sheets: (bf16/fp16 tensor core, TF32 tensor core).
# fp32 rows use the TF32 peak: cuDNN runs fp32 convolutions in TF32 by default
# (torch.backends.cudnn.allow_tf32 is True), and convolutions dominate these models.
PEAK_TFLOPS = {
    "H200": (989.4, 494.7),
    "H100 PCIe": (756.0, 378.0),
    "H100 NVL": (835.0, 417.5),
    "H100": (989.4, 494.7),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    "A100": (312.0, 156.0),
    "L40S": (362.05, 183.0),
    "L4": (121.0, 60.0),
}


def peak_tflops(device_name: str, precision: str) -> tuple[float | None, str]:
    """``(peak TFLOP/s, basis)`` for a CUDA device name, or ``(None, reason)`` when unknown (then no
    MFU is reported rather than a guess)."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    for key, (half, tf32) in PEAK_TFLOPS.items():  # longest names first where it matters (order above)
        if key in device_name:
            if precision == "fp32":
                return tf32, f"{key} dense TF32 (cuDNN TF32 convolutions)"
            return half, f"{key} dense {precision}"
    return None, f"peak FLOP/s of {device_name!r} unknown; add it to benchmarks/flops.py PEAK_TFLOPS"


def count_flops(fn) -> int:
    """Total FLOPs executed by ``fn()`` (forward, and backward if ``fn`` calls it)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def model_flops_per_image(model, batch: dict, train: bool) -> int:
    """FLOPs per image of one inference forward (``train=False``) or one training forward + backward
    (``train=True``) of ``model`` (a RefSegModel) on ``batch`` (``image``, ``tokens``, ``mask``)."""
    images, tokens, masks = batch["image"], batch["tokens"], batch["mask"]
    was_training = model.training
    try:
        if train:
            model.train()

            def fn():
                model.loss(images, tokens, masks)["loss"].backward()
        else:
            model.eval()

            def fn():
                with torch.no_grad():
                    model(images, tokens)

        total = count_flops(fn)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return total // images.shape[0]


def mfu(flops_per_image: int | None, images_per_s: float | None, peak: float | None) -> float | None:
    """Fraction of peak (0..1), or None when any input is unknown."""
    if not flops_per_image or not images_per_s or not peak:
        return None
    return round(flops_per_image * images_per_s / (peak * 1e12), 4)
