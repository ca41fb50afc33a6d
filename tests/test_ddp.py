"""Two CPU processes under torchrun (gloo) end with the weights of one process on the same global batch, for
both model families (``lts_tiny``, ``cris_tiny``); a model with a parameter the loss never uses stops with
one sentence naming it.

Why they can agree: the global batch is split across ranks (DistributedSampler over the same seeded
permutation: rank r takes positions r, r + 2, ...), so each step's union of per-rank batches is the
single process's batch; DDP averages the per-rank mean losses' gradients, which equals the gradient
of the mean over the global batch. BatchNorm in training mode would break this (statistics over 2 samples
per rank differ from those over 4), so these runs train with ``bn_eval: true`` (BatchNorm in eval mode).
SyncBatchNorm, which would pool the statistics instead, cannot run here: PyTorch's SyncBatchNorm
computes only on CUDA (its forward raises for CPU tensors in training mode), so on CPU the loop warns and
keeps per-process BatchNorm (checked below with ``sync_bn: true``); the conversion itself is checked on
both models in :func:`test_sync_batchnorm_conversion_keeps_the_weights`. Neither tiny model has dropout
(cris_tiny: dropout 0). Sums in a different order leave float32 round-off, hence a tolerance.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from _engine_data import synthetic_root, tiny_config
from torch import nn

from refseg_core import engine
from refseg_core.config import make_config
from refseg_core.data.refer import Refer
from refseg_core.engine.checkpoint import load_checkpoint
from refseg_core.models import build_model

REPO = Path(__file__).resolve().parents[1]

# cris_tiny at 32 px (a 2x2 decoder grid), as small as its stride-32 CLIP encoder allows.
FAMILY = {
    "lts_tiny": {},
    "cris_tiny": {"model": "cris_tiny", "model_overrides": {"vision_width": 8}, "lr": 2e-4, "word_len": 8},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
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
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _without_key_biases(state: dict) -> dict:
    """``state`` without the attention key biases. Softmax over keys ignores a bias added to every key, so
    their true gradient is exactly 0 and what they get is float round-off, which Adam divides by its own
    size into a step of +-lr: two runs that agree everywhere else take different, equally meaningless
    steps there (seen on cris_tiny: 1e-4 in those entries, 3e-6 at most in every other weight)."""
    out = {}
    for k, v in state.items():
        if k.endswith("k_proj.bias"):
            continue
        if k.endswith("in_proj_bias"):  # packed (q, k, v) biases: keep q and v
            n = v.numel() // 3
            v = torch.cat([v[:n], v[2 * n :]])
        out[k] = v
    return out


def _gap(x, y):
    x, y = _without_key_biases(x), _without_key_biases(y)
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x if x[k].is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILY))
def test_two_processes_match_one(family, tmp_path):
    root = synthetic_root(tmp_path / "data")
    runs = {}
    for name, nproc in (("single", 1), ("ddp", 2)):
        cfg = tiny_config(
            root,
            tmp_path / name,
            bn_eval=True,
            sync_bn=True,  # CPU: a warning, per-process BatchNorm (see the module docstring)
            max_train_items=8,
            max_eval_items=7,
            epochs=2,
            warmup_steps=0,
            grad_clip=None,
            **FAMILY[family],
        )
        f = tmp_path / f"{name}.yaml"
        f.write_text(yaml.safe_dump(cfg))
        p = _torchrun(nproc, "-m", "refseg_core", "train", "--config", str(f), "--quiet")
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
        if nproc == 2:
            assert "sync_bn needs CUDA" in p.stderr
        runs[name] = tmp_path / name

    a = load_checkpoint(runs["single"] / "last.pt")
    b = load_checkpoint(runs["ddp"] / "last.pt")
    assert a["model_config"]["name"] == family
    assert a["step"] == b["step"] == 4  # 8 refs / global batch 4 x 2 epochs

    worst = _gap(a["model"], b["model"])
    assert worst < 1e-4, worst
    # ... while training moved the weights far more than that (initial weights: same seed, same build)
    engine.seed_everything(0)
    init = engine.build_model_for(make_config(a["config"]), Refer(root, "refcoco", "unc")).state_dict()
    assert _gap(a["model"], init) > 100 * max(worst, 1e-7)
    ma = json.loads((runs["single"] / "metrics.json").read_text())
    mb = json.loads((runs["ddp"] / "metrics.json").read_text())
    n_val = len(Refer(root, "refcoco", "unc").split_refs("val"))  # first sentence of each val ref
    assert ma["n"] == mb["n"] == min(7, n_val)  # every validation sample scored once across the two shards
    assert mb["meta"]["world_size"] == 2
    assert abs(ma["mIoU"] - mb["mIoU"]) < 1e-3


# Run by torchrun in test_an_unused_parameter_is_named: CLIP's logit_scale made trainable again (as the
# official code leaves it), so the first data-parallel step finds it without a gradient.
WORKER = """
import sys
from refseg_core.engine import loop, prepare
from refseg_core.__main__ import main

def build(cfg, refer=None):
    model = prepare.build_model_for(cfg, refer)
    model.backbone.logit_scale.requires_grad_(True)
    return model

loop.build_model_for = build
sys.exit(main(["train", "--config", sys.argv[1], "--quiet"]))
"""


@pytest.mark.slow
def test_an_unused_parameter_is_named(tmp_path):
    root = synthetic_root(tmp_path / "data")
    cfg = tiny_config(
        root, tmp_path / "run", bn_eval=True, max_train_items=8, epochs=1, **FAMILY["cris_tiny"]
    )
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(cfg))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    p = _torchrun(2, str(worker), str(f))
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("train: error:")]
    assert len(lines) == 2, p.stderr[-3000:]  # one sentence from each rank
    assert "backbone.logit_scale" in lines[0] and "received none in the first step" in lines[0]
    assert "Expected to have finished reduction" not in p.stderr
    assert not (tmp_path / "run" / "last.pt").exists()  # stopped before any checkpoint


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_every_trainable_parameter_is_used(name):
    """What lets DDP run with find_unused_parameters=False: one loss reaches every trainable parameter."""
    torch.manual_seed(0)
    model = build_model(name, **({"vocab": ["a", "dog"]} if name == "lts_tiny" else {}))
    images = torch.randn(2, 3, 64, 64)
    tokens = model.tokenizer(["a dog", "dog"])
    model.loss(images, tokens, torch.rand(2, 1, 64, 64).round())["loss"].backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == (["backbone.logit_scale"] if name == "cris_tiny" else [])


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_sync_batchnorm_conversion_keeps_the_weights(name):
    """What the loop does under DDP on CUDA with sync_bn: every BatchNorm becomes a SyncBatchNorm with
    the same state-dict keys (checkpoints load either way) and, in eval mode, the same output."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(build_model(name)).eval()
    synced.load_state_dict(model.state_dict())
    assert n_bn > 0 and sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == n_bn
    assert list(synced.state_dict()) == list(model.state_dict())
    images = torch.randn(1, 3, 64, 64)
    tokens = model.tokenizer(["the dog"])
    with torch.no_grad():
        assert torch.allclose(model(images, tokens), synced(images, tokens))
