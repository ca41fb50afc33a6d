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


def test_a_verdict_near_the_bar_says_it_is_inside_the_margin():
    near = {"mIoU": 0.5067, "baselines": BASELINES}  # 0.67 points over smoke_lts' 0.50 floor
    assert smoke.slack("smoke_lts", near) == (0.5067 - 0.50, "the mIoU floor")
    text = smoke.verdict("smoke_lts", near, 10.0)
    assert "**reaches**" in text and "0.67 points over the mIoU floor, inside the 2-point margin" in text
    under = smoke.verdict("smoke_lts", {"mIoU": 0.49, "baselines": BASELINES}, 10.0)
    assert "**falls short of**" in under and "1.00 points under the mIoU floor" in under
    clear = smoke.verdict("smoke_lts", {"mIoU": 0.60, "baselines": BASELINES}, 10.0)
    assert "margin" not in clear.split(")")[-1]  # well clear: no caveat
