"""What every result row records about where and when it was measured, and the atomic JSON writer.

A row always carries ``device`` (the CPU model or the CUDA device name: a reader must never mistake a CPU
number for a GPU one), ``device_type`` (``cpu`` / ``cuda``), ``torch``, ``date`` (UTC ISO 8601) and
``loadavg`` (``os.getloadavg()`` just before the measurement: the CPU is shared, so a busy machine
explains a slow number).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import torch

from refseg_core.io import atomic_path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "refseg_core" / "evidence"  # committed with the package


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_name()} ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)"


def device_slug(device: torch.device) -> str:
    """``cpu`` or e.g. ``NVIDIA_H100_80GB_HBM3``: the prefix of a results file."""
    if device.type == "cpu":
        return "cpu"
    return "".join(c if c.isalnum() else "_" for c in torch.cuda.get_device_name(device))


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on every platform
        return []


def environment(device: torch.device) -> dict:
    """The fields every row starts with."""
    return dict(
        device=device_name(device),
        device_type=device.type,
        torch=torch.__version__,
        cuda=torch.version.cuda if device.type == "cuda" else None,
        python=platform.python_version(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        loadavg=loadavg(),
    )


def write_rows(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write ``rows`` as a JSON list to ``path`` atomically (temp file in the same folder, then
    ``os.replace``, :func:`refseg_core.io.atomic_path`), so an interrupted run never leaves half a file."""
    path = Path(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"{path}: rows must be a list of dicts")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rows, indent=1, allow_nan=True) + "\n")
    return path


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of one results file (a JSON list); a clear error names the file if it is not one."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JSON results file ({e})") from e
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
    return rows
