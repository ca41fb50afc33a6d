"""How long the book's smoke runs trained: one row per smoke configuration, next to its time budget.

    python benchmarks/smoke_times.py [--home _build/home] [--out-dir refseg_core/evidence]

Reads the runs chapter 5 wrote under the refseg home of ``make book`` (``<home>/runs/smoke_*``:
``metrics.json`` and ``config.yaml``) and writes ``<out-dir>/cpu_smoke_times.json``. A row holds the
measured ``train_time_s``, the budget of :data:`refseg_core.smoke.BARS` (``max_train_s``: on an idle 2-core
CPU) and ``within_budget``, the run's epochs, steps, device and threads, and the validation mIoU. The time
is a measurement of one machine at one moment (``loadavg`` says how busy it was when this script ran), so
it is reported here and never fails CI; ``tests/test_smoke_learning.py`` checks only what does not depend
on the machine, the learning. ``make test-book`` writes the rows into ``_build/bench/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.env import RESULTS_DIR, environment, write_rows  # noqa: E402
from refseg_core import smoke  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def smoke_time_rows(home: str | Path) -> list[dict]:
    """One row per ``smoke_*`` run found under ``home/runs`` (none when chapter 5 has not run)."""
    rows = []
    for name in sorted(smoke.BARS):
        run = Path(home) / "runs" / name
        if not (run / "metrics.json").is_file():
            continue
        m = json.loads((run / "metrics.json").read_text())
        meta = m.get("meta", {})
        cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
        budget = smoke.BARS[name]["max_train_s"]
        device = meta.get("device") or cfg.get("device", "?")
        rows.append(
            {
                **environment(torch.device("cuda" if str(device).startswith("cuda") else "cpu")),
                "benchmark": "smoke_train_time",
                "config": name,
                "run": str(run),
                "run_device": device,
                "run_torch_threads": meta.get("torch_threads"),
                "train_time_s": meta.get("train_time_s"),
                "max_train_s": budget,
                "within_budget": meta.get("train_time_s") is not None and meta["train_time_s"] <= budget,
                "epochs": meta.get("epochs"),
                "steps": meta.get("steps"),
                "val_mIoU": m.get("mIoU"),
            }
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", default=str(ROOT / "_build" / "home"), help="the refseg home of `make book`")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    rows = smoke_time_rows(args.home)
    if not rows:
        print(f"no smoke run under {args.home}/runs: run `make book` first", file=sys.stderr)
        return 1
    path = write_rows(args.out_dir / "cpu_smoke_times.json", rows)
    for r in rows:
        verdict = "within" if r["within_budget"] else "OVER"
        print(
            f"{r['config']}: trained {r['train_time_s']:.0f} s on {r['run_device']} ({verdict} the "
            f"{r['max_train_s']:.0f} s budget; load average now {r['loadavg']})"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
