"""refseg_core.best_vs_last: a select_best run's best.pt and last.pt read back and set side by side."""

import pytest
from _engine_data import synthetic_root, tiny_config

from refseg_core import best_vs_last, engine, verdicts
from refseg_core.engine import loop

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three epochs of a tiny run with select_best, whose validation mIoU is scripted: epoch 2 is best."""
    base = tmp_path_factory.mktemp("bvl")
    real, scores = loop.evaluate, iter([0.30, 0.50, 0.40])
    loop.evaluate = lambda *a, **k: dict(real(*a, **k), mIoU=next(scores))
    try:
        engine.train(
            tiny_config(synthetic_root(base), base / "run", epochs=3, select_best=True), progress=False
        )
    finally:
        loop.evaluate = real
    return base / "run"


def test_record_and_curve_name_the_chosen_epoch(run):
    rec = best_vs_last.best_record(run)
    assert rec == {"epoch": 2, "mIoU": 0.5, "split": "val", "checkpoint": "best.pt"}
    epochs, scores = best_vs_last.val_curve(run)
    assert epochs == [1, 2, 3] and scores == [0.30, 0.50, 0.40]
    assert epochs[scores.index(max(scores))] == rec["epoch"]


def test_a_run_without_select_best_names_no_best_epoch(tmp_path):
    out = tmp_path / "plain"
    engine.train(tiny_config(synthetic_root(tmp_path), out, epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"metrics.json names no best epoch.*select_best"):
        best_vs_last.best_record(out)
    with pytest.raises(ValueError, match="names no best epoch"):
        best_vs_last.best_record(tmp_path / "nowhere")


def test_rows_and_verdicts_apply_the_margin():
    m = lambda miou, oiou: {"mIoU": miou, "oIoU": oiou}  # noqa: E731
    scores = {
        ("best", "val"): m(0.55, 0.50),
        ("last", "val"): m(0.50, 0.49),
        ("best", "testA"): m(0.51, 0.48),
        ("last", "testA"): m(0.50, 0.47),
    }
    rows = best_vs_last.rows(scores, ["val", "testA"], {"val": "RefCOCO-M val"})
    assert rows[0][0] == "RefCOCO-M val" and rows[1][0] == "testA"
    assert rows[0][1:] == pytest.approx((55.0, 50.0, 5.0, 50.0, 49.0))
    names = {"best": "best.pt (epoch 2)", "last": "last.pt (epoch 3)"}
    lines = best_vs_last.verdict_lines(scores, ["val", "testA"], names)
    assert lines[0].startswith("val: best.pt (epoch 2) is above last.pt (epoch 3): ")
    assert lines[1].startswith("testA: Cannot tell best.pt (epoch 2) from last.pt (epoch 3) at this scale")
    assert verdicts.unbacked_claims("\n".join(lines)) == []
