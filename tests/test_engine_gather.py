"""refseg_core.engine.results (`python -m refseg_core gather`): result files -> one table with the paper numbers labelled by metric."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, metrics: dict, **meta):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**metrics, "meta": meta}))


def test_gather_results_table(tmp_path):
    runs = tmp_path / "runs"
    _write(
        runs / "cris_r50_refcoco" / "metrics.json",
        {"n": 10, "mIoU": 0.6812, "oIoU": 0.65, "prec@0.5": 0.7, "prec@0.9": 0.1},
        model="cris_r50",
        dataset="refcoco",
        split="val",
        synthetic=False,
    )
    _write(
        runs / "cris_r50_refcoco" / "eval_refcoco_testA.json",
        {"n": 5, "mIoU": 0.7, "oIoU": 0.69},
        model="cris_r50",
        dataset="refcoco",
        split="testA",
        synthetic=False,
    )
    _write(  # an eval file that does not say what data it scored: never set next to a paper number
        runs / "unknown" / "eval_refcoco_testB.json",
        {"n": 5, "mIoU": 0.7, "oIoU": 0.69},
        model="cris_r50",
        dataset="refcoco",
        split="testB",
    )
    _write(
        runs / "smoke" / "metrics.json",
        {"n": 3, "mIoU": 0.55, "oIoU": 0.5},
        model="lts_tiny",
        dataset="refcoco",
        split="val",
        synthetic=True,
    )
    _write(
        runs / "g" / "metrics.json",
        {"n": 3, "mIoU": 0.4, "oIoU": 0.4, "gIoU": 0.5, "cIoU": 0.45, "N-acc": 0.5, "T-acc": 0.9},
        model="cris_r50",
        dataset="grefcoco",
        split="val",
        synthetic=False,
    )
    (runs / "broken").mkdir()
    (runs / "broken" / "metrics.json").write_text("{not json")
    p = subprocess.run(
        [sys.executable, "-m", "refseg_core", "gather", str(runs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    md = (runs / "results.md").read_text()
    assert "| 68.12 |" in md and "69.52 mIoU (CRIS official README)" in md  # measured next to paper, labelled
    assert "72.72 mIoU" in md  # testA row found its paper number
    assert "55.34 cIoU" in md and "56.27 gIoU" in md  # gRefCOCO: method "CRIS" without backbone
    assert "synthetic data" in md
    assert "64.70" not in md and "does not say whether its data was synthetic" in md  # the testB file
    data = json.loads((runs / "results.json").read_text())
    assert len(data) == 5 and {r["run"] for r in data} == {"cris_r50_refcoco", "smoke", "g", "unknown"}
    assert all("meta" in r for r in data)
    assert "broken" in p.stderr  # a damaged file is reported and skipped
