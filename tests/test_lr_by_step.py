"""engine.optim.lr_by_step replays the schedule a real run applies, step by step (warm-up included):
checked against the learning rates a training run logs at every step."""

import pytest
from _engine_data import synthetic_root, tiny_config

from refseg_core import engine
from refseg_core.config import make_config
from refseg_core.engine.optim import lr_by_epoch, lr_by_step

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lr_by_step_matches_the_rates_a_run_logs(tmp_path):
    root = synthetic_root(tmp_path / "data")
    cfg = make_config(tiny_config(root, tmp_path / "run", epochs=3, milestones=[2], warmup_steps=4))
    res = engine.train(cfg, progress=False)
    epoch_rows = [r for r in res.history if "val_mIoU" in r]
    per_epoch = epoch_rows[0]["step"]
    total = per_epoch * cfg.epochs
    by_step = lr_by_step(cfg, res.model, per_epoch)
    assert len(by_step) == total and per_epoch >= 2
    # A logged row holds the head group's rate after its step: the rate of the next step.
    step_rows = [r for r in res.history if "images_per_s" in r and r["step"] % per_epoch]
    checked = [r for r in step_rows + epoch_rows if r["step"] < total]
    assert len(checked) >= total - 1
    for r in checked:
        assert r["lr"] == pytest.approx(by_step[r["step"]][-1], rel=1e-9), r
    # the warm-up is visible per step: it ramps over warmup_steps, then the epoch schedule takes over
    head = [row[-1] for row in by_step]
    assert head[0] == pytest.approx(cfg.lr / 100) and head[0] < head[2] < head[4]
    assert head[4] == pytest.approx(cfg.lr) and head[-1] == pytest.approx(cfg.lr * cfg.lr_gamma)


def test_lr_by_step_without_warmup_is_lr_by_epoch_repeated(tmp_path):
    root = synthetic_root(tmp_path / "data")
    cfg = make_config(tiny_config(root, tmp_path / "run", warmup_steps=0, official_lr_quirk=True))
    model = engine.build_model_for(cfg, engine.prepare_data(cfg))
    by_step, by_epoch = lr_by_step(cfg, model, 3), lr_by_epoch(cfg, model)
    assert by_step == [row for row in by_epoch for _ in range(3)]
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lr_by_step(cfg, model, 0)


def test_a_schedule_step_after_a_skipped_optimiser_step_is_quiet_and_still_advances():
    """An fp16 GradScaler skips the optimiser step of an overflowing batch; the schedule still steps,
    without PyTorch's "lr_scheduler.step() before optimizer.step()" warning on the page."""
    import warnings

    import torch

    from refseg_core.engine.optim import step_schedule

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, end_factor=1.0, total_iters=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step_schedule(sched)  # no optimizer.step() before it
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.75)
    with warnings.catch_warnings(record=True) as caught:  # the bare call does warn: the test can fail
        warnings.simplefilter("always")
        sched2 = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
        sched2.step()
    assert [w for w in caught if "lr_scheduler" in str(w.message)]
