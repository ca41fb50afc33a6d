"""Timing and peak-memory helpers: warm up, repeat, take the median, synchronise CUDA.

On CUDA the peak is ``torch.cuda.max_memory_allocated`` (tensors only, not the caching allocator's
reserve): the memory the configuration needs. On CPU torch keeps no allocator statistics, so
:class:`PeakMemory` samples the process's resident set size every few milliseconds in a thread and reports
its peak: the whole process (Python, weights, optimiser state, activations), and an upper bound, because
the C allocator may keep memory freed by an earlier configuration. CPU and CUDA peaks are therefore
different quantities; rows say which one they hold (``peak_mem_kind``).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Callable

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock times cover it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 3
) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def summarise(times: list[float]) -> dict:
    """Median (the reported number), min and max of a list of seconds, rounded for the JSON."""
    return dict(
        median_s=round(statistics.median(times), 6),
        min_s=round(min(times), 6),
        max_s=round(max(times), 6),
        repeats=len(times),
    )


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return None


class PeakMemory:
    """``with PeakMemory(device) as pm: ...`` then ``pm.mib`` (peak MiB) and ``pm.kind``.

    ``kind`` is ``cuda_max_allocated`` or ``cpu_process_rss_peak`` (None where /proc is missing).
    """

    def __init__(self, device: torch.device, interval_s: float = 0.002):
        self.device, self.interval_s = device, interval_s
        self.mib: float | None = None
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_process_rss_peak"

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._start = _rss_bytes()
        self._peak = self._start or 0
        self._stop = threading.Event()
        if self._start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            rss = _rss_bytes() or 0
            self._peak = max(self._peak, rss)
            time.sleep(self.interval_s)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.mib = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            return False
        self._stop.set()
        if self._start is None:
            self.kind, self.mib = None, None
            return False
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes() or 0)
        self.mib = round(self._peak / 2**20, 1)
        return False
