"""Reading the speed rows of ``benchmarks/`` (``<device>_<section>.json``) as chapter 8 shows them:
every row of a section with its file's name, a short label of its configuration, its load, one line
saying what a GPU-check row measured, and the verdict a row supports (a speed ratio against its target
with :data:`refseg_core.verdicts.SPEED_MARGIN`, withheld where the load exceeded the core count).

The targets are the book's: our CRIS train step at least 1.5x the official one on a GPU and 1.0x on a
CPU; a data loader with 8 workers at least 2x the train step (``benchmarks/README.md``).
"""

from __future__ import annotations

from pathlib import Path

from refseg_core import verdicts
from refseg_core.evidence import cpu_cores, files, rows

TARGETS = {"official_gpu": 1.5, "official_cpu": 1.0, "data_loader": 2.0}


def section_rows(section: str, directory: str | Path | None = None) -> list[dict]:
    """Every row of the ``<device>_<section>.json`` files (committed, or in ``directory``), each with
    ``file``, its file's name."""
    names = [f.stem for f in files(f"*_{section}.json", directory)]
    return [dict(r, file=n) for n in names for r in rows(n, directory)]


def config_label(row: dict) -> str:
    """``"bf16 +cl +compile"``: precision, channels_last, torch.compile of a row."""
    cl = " +cl" if row.get("channels_last") else ""
    return row["precision"] + cl + (" +compile" if row.get("compile") else "")


def load(row: dict) -> float:
    """The 1-minute load average when the row was measured."""
    return float(row["loadavg"][0])


def speed_verdict(ratio: float, target: float, what: str, row: dict) -> str:
    """:func:`refseg_core.verdicts.meets_target` with the row's load and core count."""
    return verdicts.meets_target(ratio, target, what, loadavg=load(row), cores=cpu_cores(row))


def describe(row: dict) -> str:
    """One line: what a GPU-check row (``<GPU>_check.json``) measured."""
    r, kind = row, row.get("kind")
    if kind == "train_step_vs_official":
        return (
            f"ours ({r['ours_config']}) {r['ours_images_per_s']} img/s, official "
            f"({r['official_config']}) {r['official_images_per_s']} img/s: x{r['speedup']}; MFU "
            f"{r['ours_mfu']} vs {r['official_mfu']}; peak {r['ours_peak_mem_mib']} / "
            f"{r['official_peak_mem_mib']} MiB"
            + (f"; compiling took {r['compile_s']} s" if r.get("compile_s") else "")
        )
    if kind == "train_step":
        return (
            f"{r['model']} ({config_label(r)}) {r['images_per_s']} img/s, peak {r['peak_mem_mib']} MiB, "
            f"MFU {r.get('mfu')}"
        )
    if kind == "training_run" and r.get("stopped_by_guard"):
        # A run cut by the clock has no score: it would depend on the machine's speed.
        return (
            f"{r['model']} from random weights, stopped by the check's time limit after {r['steps']} "
            f"steps ({r['train_time_s']} s): no validation score"
        )
    if kind == "training_run":
        return f"{r['model']} from random weights: {r['steps']} steps, {r['train_time_s']} s"
    if kind == "evaluation":
        return f"{r['sentences_per_s']} sentences/s over {r['sentences']} sentences"
    if kind == "data_loader":
        return (
            f"{r['samples_per_s']} samples/s with {r['workers']} workers, x{r['ratio_to_train_step']} "
            "the eager train step"
        )
    return str(r.get("error") or r.get("skipped") or f"a row of kind {kind!r}")


def verdict(row: dict) -> str | None:
    """The verdict a row supports, with the margin; None when it has nothing to judge."""
    kind = row.get("kind")
    if kind == "train_step_vs_official" and row.get("speedup") is not None:
        gpu = row.get("device_type") == "cuda"
        config = row.get("ours_config") or config_label(row)
        what = f"our {row['model']} train step ({config}) against the official recipe"
        return speed_verdict(row["speedup"], TARGETS["official_gpu" if gpu else "official_cpu"], what, row)
    if kind == "training_run" and not row.get("stopped_by_guard") and row.get("baselines"):
        blind = {k: {"mIoU": v} for k, v in row["baselines"].items()}
        return verdicts.versus_baseline(row["val_mIoU"], blind, f"{row['model']} (GPU check)")
    if kind == "data_loader" and row.get("ratio_to_train_step"):
        what = f"the {row['workers']}-worker data loader"
        return speed_verdict(row["ratio_to_train_step"], TARGETS["data_loader"], what, row)
    return None
