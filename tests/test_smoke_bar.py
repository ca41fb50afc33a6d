"""refseg_core.smoke: the learning target of the smoke runs, judged against the best baseline that
refseg_core.verdicts.best_baseline picks (one home for "the best language-blind baseline")."""

from refseg_core import smoke

BASELINES = {"whole_image": {"mIoU": 0.03}, "largest_object": {"mIoU": 0.30}}


def test_misses_uses_the_best_baseline():
    ok = {"mIoU": 0.50, "baselines": BASELINES}
    assert smoke.misses("smoke_cris", ok, 100.0) == []
    close = {"mIoU": 0.44, "baselines": BASELINES}  # below 0.45 and only 14 points above largest_object
    missed = smoke.misses("smoke_cris", close, 100.0)
    assert len(missed) == 2 and "baseline 0.300" in missed[1]
    assert smoke.misses("smoke_cris", ok, 999.0) == ["trained 999 s, more than 360 s"]


def test_verdict_sentences():
    ok = {"mIoU": 0.60, "baselines": BASELINES}
    assert "**reaches**" in smoke.verdict("smoke_lts", ok, 10.0)
    short = smoke.verdict("smoke_lts", {"mIoU": 0.40, "baselines": BASELINES}, 10.0)
    assert "**falls short of**" in short and "val mIoU 0.400 < 0.5" in short
    assert "no learning target" in smoke.verdict("cris_r50_refcoco", ok, 10.0)
