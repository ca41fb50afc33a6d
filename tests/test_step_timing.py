"""engine.step_timing.time_train_steps: the same weights and batch under each precision / memory format."""

import math

import pytest
from _engine_data import synthetic_root, tiny_config

from refseg_core import engine
from refseg_core.config import make_config
from refseg_core.engine.step_timing import time_train_steps

pytestmark = pytest.mark.usefixtures("one_thread")


def test_time_train_steps_rows(tmp_path):
    cfg = make_config(tiny_config(synthetic_root(tmp_path / "data"), tmp_path / "run"))
    refer = engine.prepare_data(cfg)
    variants = [("fp32", False), ("fp32", True), ("bf16", False)]
    rows = time_train_steps(cfg, refer, variants, batch_size=2, rounds=2)
    assert [(r["precision"], r["channels_last"]) for r in rows] == variants
    assert rows[0]["relative"] == 1.0 and all(r["s_per_step"] > 0 and r["steps"] == 3 for r in rows)
    # channels_last changes the memory layout only: the same weights and batch give the same loss
    assert rows[1]["loss"] == pytest.approx(rows[0]["loss"], rel=1e-2)  # Adam amplifies rounding
    assert math.isfinite(rows[2]["loss"]) and rows[2]["loss"] != rows[0]["loss"]  # fewer bits
