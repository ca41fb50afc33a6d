"""Data-parallel training under ``torchrun`` (one process per GPU, or per CPU slot with gloo).

``torchrun --nproc_per_node N -m refseg_core train ...`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``
and the rendezvous address; :func:`setup` reads them and starts the process group (NCCL on CUDA,
gloo on CPU). Without those variables everything runs as a single process (world size 1).

:func:`wrap` puts the loss module under ``DistributedDataParallel`` with ``find_unused_parameters=False``:
every trainable parameter of the book's models takes part in every loss (CLIP's ``logit_scale``, which
none reads, is frozen; :mod:`refseg_core.models.clip`). The official CRIS code wraps with
``find_unused_parameters=True``, which walks the autograd graph after every forward to find parameters
without a gradient; here :func:`unused_parameters` checks once, after the first backward, and a model
that has such parameters stops with :class:`UnusedParametersError` naming them (DDP itself would only
say, one step later, that some parameters "were not used in producing loss").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """What ``torchrun`` put in the environment (world size 1 without it)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` -> ``cuda:<local rank>`` when CUDA is available, else CPU; ``cuda`` gets the local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{info.local_rank}"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"parameter 'device' is {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"parameter 'device' is {name!r} but CUDA is not available here; use device: cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"parameter 'device' is {name!r} but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        torch.cuda.set_device(device)
    return device


def setup(device: torch.device) -> DistInfo:
    """Start the default process group when launched by torchrun (idempotent)."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, **kwargs)
    return info


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` as a list in rank order (``[obj]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class UnusedParametersError(ValueError):
    """Parameters that require a gradient received none in a data-parallel step (the message names them)."""


def wrap(module: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """``module`` under DDP (one device per process on CUDA, none on CPU), ``find_unused_parameters=False``."""
    return nn.parallel.DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=False,
    )


def unused_parameters(module: nn.Module) -> list[str]:
    """Names of the parameters of ``module`` that require a gradient but hold none (``grad is None``) on
    *any* rank, right after a backward: one all-reduce of one flag per parameter, so every rank gets the
    same list (and raises together) even if the data made a branch go unused on one rank only."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    missing = torch.tensor([float(p.grad is None) for _, p in named], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized() and named:
        if dist.get_backend() == "nccl":
            missing = missing.cuda()
        dist.all_reduce(missing)  # sum: > 0 where some rank got no gradient
    return [n for (n, _), m in zip(named, missing.tolist()) if m]


def unused_message(names: list[str], when: str) -> str:
    """One sentence naming the parameters that got no gradient (at most 5, then a count)."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"data-parallel training needs a gradient for every trainable parameter, but {len(names)} "
        f"received none {when}: {shown}; freeze them (requires_grad_(False)) or make the loss use them"
    )


def is_unfinished_reduction(exc: BaseException) -> bool:
    """True for DDP's error when the previous step left parameters without a gradient."""
    return isinstance(exc, RuntimeError) and "Expected to have finished reduction" in str(exc)


__all__ = [
    "DistInfo",
    "UnusedParametersError",
    "all_gather_objects",
    "barrier",
    "cleanup",
    "env_info",
    "is_unfinished_reduction",
    "resolve_device",
    "setup",
    "unused_message",
    "unused_parameters",
    "wrap",
]
