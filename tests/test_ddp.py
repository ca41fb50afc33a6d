"""Two CPU processes under torchrun (gloo) end with the weights of one process on the same global batch.

Why they can agree: the global batch is split across ranks (DistributedSampler over the same seeded
permutation: rank r takes positions r, r + 2, ...), so each step's union of per-rank batches is the
single process's batch; DDP averages the per-rank mean losses' gradients, which equals the gradient
of the mean over the global batch. BatchNorm would break this (batch statistics over 2 samples per
rank differ from 4), so the test trains with ``bn_eval: true`` (BatchNorm in eval mode; SyncBatchNorm
needs CUDA). lts_tiny has no dropout. Sums in a different order leave float32 round-off, hence a
tolerance.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _engine_data import synthetic_root, tiny_config

from refseg_core import engine
from refseg_core.config import make_config
from refseg_core.data.refer import Refer
from refseg_core.engine.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    root = synthetic_root(tmp_path / "data")
    runs = {}
    for name, nproc in (("single", 1), ("ddp", 2)):
        cfg = tiny_config(
            root,
            tmp_path / name,
            bn_eval=True,
            max_train_items=8,
            max_eval_items=7,
            epochs=2,
            warmup_steps=0,
            grad_clip=None,
        )
        f = tmp_path / f"{name}.yaml"
        f.write_text(yaml.safe_dump(cfg))
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "refseg_core",
            "train",
            "--config",
            str(f),
            "--quiet",
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
        runs[name] = tmp_path / name

    a = load_checkpoint(runs["single"] / "last.pt")
    b = load_checkpoint(runs["ddp"] / "last.pt")
    assert a["step"] == b["step"] == 4  # 8 refs / global batch 4 x 2 epochs

    def gap(x, y):
        return max(float((x[k].double() - y[k].double()).abs().max()) for k in x if x[k].is_floating_point())

    worst = gap(a["model"], b["model"])
    assert worst < 1e-4, worst
    # ... while training moved the weights far more than that (initial weights: same seed, same build)
    engine.seed_everything(0)
    init = engine.build_model_for(make_config(a["config"]), Refer(root, "refcoco", "unc")).state_dict()
    assert gap(a["model"], init) > 100 * max(worst, 1e-7)
    ma = json.loads((runs["single"] / "metrics.json").read_text())
    mb = json.loads((runs["ddp"] / "metrics.json").read_text())
    n_val = len(Refer(root, "refcoco", "unc").split_refs("val"))  # first sentence of each val ref
    assert ma["n"] == mb["n"] == min(7, n_val)  # every validation sample scored once across the two shards
    assert mb["meta"]["world_size"] == 2
    assert abs(ma["mIoU"] - mb["mIoU"]) < 1e-3
