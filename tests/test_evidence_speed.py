"""refseg_core.evidence.speed on the committed rows: descriptions, and verdicts with margin and load."""

from refseg_core import verdicts
from refseg_core.evidence import speed


def test_committed_rows_are_described_and_judged():
    check = speed.section_rows("check")
    assert check and all(r["file"].endswith("_check") for r in check)
    for r in check:
        assert speed.describe(r) and "?" not in speed.describe(r)[:1]
        v = speed.verdict(r)
        assert v is None or verdicts.unbacked_claims(v) == []
    stopped = next(r for r in check if r["kind"] == "training_run")
    assert "time limit" in speed.describe(stopped) and speed.verdict(stopped) is None
    cpu = speed.section_rows("official")
    assert cpu[0]["device_type"] == "cpu" and speed.load(cpu[0]) > 2
    assert speed.verdict(cpu[0]).startswith("Cannot tell") and "on 2 cores" in speed.verdict(cpu[0])


def test_verdict_applies_the_gpu_target_and_the_margin():
    row = {"kind": "train_step_vs_official", "model": "cris_r50", "ours_config": "bf16", "speedup": 1.9,
           "device_type": "cuda", "device": "GPU", "loadavg": [1.0, 1.0, 1.0]}  # fmt: skip
    assert " meets the x1.5 target" in speed.verdict(row)
    assert "within the 10% margin" in speed.verdict(dict(row, speedup=1.55))
    assert " meets the x1 target" in speed.verdict(dict(row, device_type="cpu", speedup=1.2))
    assert speed.config_label({"precision": "bf16", "channels_last": True, "compile": True}) == (
        "bf16 +cl +compile"
    )
