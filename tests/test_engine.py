"""engine.train / evaluate / predict on a tiny generated dataset (lts_tiny, 32 px, CPU).

Also the faults: missing data, NaN loss, failure while saving, CUDA OOM, signals; and exact resume.
"""

import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from _engine_data import synthetic_root, tiny_config
from pycocotools import mask as mask_utils

from refseg_core import engine
from refseg_core.config import make_config
from refseg_core.data.refer import Refer
from refseg_core.engine import checkpoint as ckpt_mod
from refseg_core.engine import loop as training
from refseg_core.engine.checkpoint import load_checkpoint, model_from_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("engine_data"))


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return engine.train(tiny_config(data_root, out), progress=False)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b, tol=0.0):
    return all(torch.allclose(a[k].double(), b[k].double(), atol=tol, rtol=0) for k in a)


def test_train_writes_everything_and_history(trained):
    r = trained
    assert set(os.listdir(r.output_dir)) >= {"config.yaml", "last.pt", "log.csv", "metrics.json"}
    m = json.loads((r.output_dir / "metrics.json").read_text())
    for k in ("mIoU", "oIoU", "prec@0.5", "prec@0.9", "n"):
        assert k in m
    assert "cIoU" not in m  # classic data: the gRefCOCO metrics are left out
    assert m["meta"]["model"] == "lts_tiny" and m["meta"]["steps"] == 6  # 12 refs / batch 4 x 2 epochs
    assert m["n"] == 6 and 0.0 <= m["mIoU"] <= 1.0
    steps = [row for row in r.history if "val_mIoU" not in row]
    assert [row["step"] for row in steps] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(row["loss"]) and row["images_per_s"] > 0 for row in steps)
    ends = [row for row in r.history if "val_mIoU" in row]
    assert [row["epoch"] for row in ends] == [1, 2]
    # warm-up over 2 steps from lr/100, backbone group at lr * 0.5, halved after epoch 2
    ck = load_checkpoint(r.checkpoint)
    assert ck["epoch"] == 2 and ck["step"] == 6 and ck["epoch_step"] == 0
    lrs = [g["lr"] for g in ck["optimizer"]["param_groups"]]
    assert lrs == pytest.approx([0.5e-3 * 0.5, 1e-3 * 0.5])
    assert steps[0]["lr"] == pytest.approx(1e-3 * (0.01 + 0.99 / 2))


def test_checkpoint_rebuilds_the_same_model(trained, data_root):
    model = model_from_checkpoint(trained.checkpoint)
    assert _same(_weights(model), _weights(trained.model))
    assert model.tokenizer.itos == trained.model.tokenizer.itos  # LTS vocabulary travels in model.config
    again = engine.evaluate(
        model,
        data_root=data_root,
        dataset="refcoco",
        split="val",
        input_size=32,
        batch_size=3,
        max_items=6,
        first_sentence_only=True,
    )
    assert again["mIoU"] == pytest.approx(trained.metrics["mIoU"])


def test_evaluate_records_are_rles_of_the_scored_masks(trained, data_root):
    refer = Refer(data_root, "refcoco", "unc")
    metrics, records = engine.evaluate(
        trained.model, refer, split="val", input_size=32, batch_size=4, max_items=5, return_records=True
    )
    assert metrics["n"] == len(records) == 5
    pairs = refer.sentences("val")[:5]
    for rec, (ref, sent) in zip(records, pairs):
        assert (rec["ref_id"], rec["sent_id"]) == (ref["ref_id"], sent["sent_id"])
        pred = mask_utils.decode(
            {"size": rec["mask"]["size"], "counts": rec["mask"]["counts"].encode()}
        ).astype(bool)
        gt = refer.ref_mask(ref)
        assert pred.shape == gt.shape
        i, u = np.logical_and(pred, gt).sum(), np.logical_or(pred, gt).sum()
        assert rec["iou"] == pytest.approx(i / (u + 1e-6))
    assert metrics["mIoU"] == pytest.approx(np.mean([r["iou"] for r in records]))


def test_predict_returns_original_size(trained, data_root):
    refer = Refer(data_root, "refcoco", "unc")
    img = refer.load_image(refer.split_refs("val")[0])
    prob, mask = engine.predict(trained.model, img, "the red circle", input_size=32)
    assert prob.shape == mask.shape == (img.height, img.width)
    assert mask.dtype == bool and np.array_equal(mask, prob > 0.35)
    with pytest.raises(ValueError, match="non-empty"):
        engine.predict(trained.model, img, "  ", input_size=32)


def test_trivial_baselines(data_root):
    refer = Refer(data_root, "refcoco", "unc")
    b = engine.trivial_baselines(refer, "val")
    # whole-image IoU of a sample = target area / image area
    want = np.mean([refer.ref_mask(r).mean() for r, _ in refer.sentences("val")])
    assert b["whole_image"]["mIoU"] == pytest.approx(want, rel=1e-6)
    assert 0.0 < b["largest_object"]["mIoU"] <= 1.0
    assert b["largest_object"]["n"] == len(refer.sentences("val"))


@pytest.mark.slow
def test_resume_after_an_epoch_is_exact(data_root, tmp_path):
    full = engine.train(tiny_config(data_root, tmp_path / "full", epochs=3), progress=False)
    engine.train(tiny_config(data_root, tmp_path / "part", epochs=1), progress=False)
    resumed = engine.train(
        tiny_config(data_root, tmp_path / "part", epochs=3),
        progress=False,
        resume=tmp_path / "part" / "last.pt",
    )
    assert _same(_weights(full.model), _weights(resumed.model))
    assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_is_exact(data_root, tmp_path, monkeypatch):
    full = engine.train(tiny_config(data_root, tmp_path / "full", epochs=2), progress=False)
    calls = {"n": 0}
    real = training.train_step

    def step(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # mid epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(training, "train_step", step)
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(engine.TrainingInterrupted) as e:
        engine.train(tiny_config(data_root, tmp_path / "cut", epochs=2), progress=False)
    assert e.value.signum == signal.SIGTERM and "--resume" in str(e.value)
    ck = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (ck["epoch"], ck["step"], ck["epoch_step"]) == (1, 4, 1)
    # The engine's SIGTERM handler is gone again: the one installed before training is back.
    assert signal.getsignal(signal.SIGTERM) == handler_before
    monkeypatch.setattr(training, "train_step", real)
    resumed = engine.train(
        tiny_config(data_root, tmp_path / "cut", epochs=2),
        progress=False,
        resume=tmp_path / "cut" / "last.pt",
    )
    assert _same(_weights(full.model), _weights(resumed.model), tol=1e-6)

    # issue 14 item 7: the epoch-2 loss logged after the resume covers the whole epoch, not its last steps
    def epoch_loss(history):
        return [r["loss"] for r in history if r["epoch"] == 2 and "loss" in r and "images_per_s" not in r]

    assert epoch_loss(resumed.history) == pytest.approx(epoch_loss(full.history), rel=1e-6)


@pytest.mark.slow
def test_nan_loss_stops_naming_step_and_keeps_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    real = training.train_step
    calls = {"n": 0}

    def step(*a, **k):
        out = real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, batch 2
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(training, "train_step", step)
    with pytest.raises(engine.NonFiniteLossError) as e:
        engine.train(tiny_config(data_root, tmp_path, epochs=2), progress=False)
    msg = str(e.value)
    assert "step 5" in msg and "batch 2 of 3" in msg and "epoch 2" in msg and "last.pt" in msg
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 1 and all(
        torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point()
    )


@pytest.mark.slow
def test_failure_while_saving_keeps_previous_checkpoint(data_root, tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def flaky(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"half a checkpoint")  # torch writes into the open temporary file
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt_mod.torch, "save", flaky)
    with pytest.raises(OSError, match="disk full"):
        engine.train(tiny_config(data_root, tmp_path, epochs=2), progress=False)
    ck = load_checkpoint(tmp_path / "last.pt")  # the epoch-1 checkpoint, intact
    assert ck["epoch"] == 1
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_cuda_oom_names_the_batch_size(data_root, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training, "train_step", boom)
    with pytest.raises(engine.OutOfMemory, match="batch_size 4"):
        engine.train(tiny_config(data_root, tmp_path), progress=False)


def test_missing_data_root_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        engine.train(tiny_config(tmp_path / "nowhere", tmp_path / "out"), progress=False)
    msg = str(e.value)
    assert "nowhere" in msg and "python -m refseg_core synth" in msg and "prepare_refer_data" in msg


def test_unknown_parameter_in_train_dict(tmp_path):
    with pytest.raises(ValueError, match="valid parameters"):
        engine.train({"modle": "lts_tiny"}, progress=False)


def test_too_few_refs_for_one_batch(data_root, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        engine.train(tiny_config(data_root, tmp_path, max_train_items=3), progress=False)


def test_official_lr_quirk_runs_epoch_one_backbone_at_full_lr(data_root, tmp_path, monkeypatch):
    seen = []
    real = training.backward_step

    def step(out, model, optimizer, *a, **k):
        seen.append([g["lr"] for g in optimizer.param_groups])
        return real(out, model, optimizer, *a, **k)

    monkeypatch.setattr(training, "backward_step", step)
    engine.train(
        tiny_config(
            data_root,
            tmp_path,
            epochs=2,
            warmup_steps=0,
            official_lr_quirk=True,
            milestones=[5],
            max_train_items=8,
        ),
        progress=False,
    )
    # lts_tiny groups: [backbone, head]; backbone_lr_mult 0.5
    assert seen == [[1e-3, 1e-3]] * 2 + [[0.5e-3, 1e-3]] * 2


def test_init_from_starts_a_new_run_from_the_weights(trained, data_root, tmp_path):
    cfg = tiny_config(
        data_root, tmp_path / "ft", epochs=1, init_from=str(trained.checkpoint), lr=1e-12, warmup_steps=0
    )
    ft = engine.train(cfg, progress=False)
    # a new run: its own step count, and (at lr ~ 0) the weights it started from
    assert [r["step"] for r in ft.history if "val_mIoU" not in r] == [1, 2, 3]
    params = lambda m: {k: v.detach() for k, v in m.named_parameters()}  # noqa: E731 (BN running stats move)
    assert _same(params(ft.model), params(trained.model), tol=1e-6)
    assert ft.model.tokenizer.itos == trained.model.tokenizer.itos
    with pytest.raises(FileNotFoundError, match="init_from"):
        engine.train(
            tiny_config(data_root, tmp_path / "x", init_from=str(tmp_path / "none.pt")), progress=False
        )
    with pytest.raises(ValueError, match="init_from.*lts_tiny"):
        engine.train(
            tiny_config(data_root, tmp_path / "y", init_from=str(trained.checkpoint), model="cris_tiny"),
            progress=False,
        )


def test_dice_weight_adds_the_dice_term(data_root, tmp_path):
    from refseg_core.losses import dice_loss

    # the wrapper adds exactly dice_weight x Dice to the model's own loss
    torch.manual_seed(0)
    model = engine.build_model_for(
        make_config(tiny_config(data_root, tmp_path / "m")), Refer(data_root, "refcoco", "unc")
    )
    images, tokens = torch.randn(2, 3, 32, 32), model.tokenizer(["the red circle", "a blue square"])
    masks = (torch.rand(2, 1, 32, 32) > 0.7).float()
    torch.manual_seed(1)
    plain = engine.LossModule(model)(images, tokens, masks)
    torch.manual_seed(1)
    both = engine.LossModule(model, 0.5)(images, tokens, masks)
    want = plain["loss"] + 0.5 * dice_loss(plain["logits"], masks)
    assert float(both["loss"]) == pytest.approx(float(want), rel=1e-5) and "dice" in both
    # and train() passes the config's dice_weight to it: same seed, larger first-step loss
    runs = [
        engine.train(tiny_config(data_root, tmp_path / f"dice{w}", epochs=1, dice_weight=w), progress=False)
        for w in (0.0, 0.5)
    ]
    first = [next(row["loss"] for row in r.history if "loss" in row) for r in runs]
    assert first[1] > first[0] and all(math.isfinite(v) for v in first)
    logits = torch.full((2, 1, 4, 4), 30.0)
    full = torch.ones(2, 16, 16)
    assert float(dice_loss(logits, full)) == pytest.approx(0.0, abs=1e-6)
    assert float(dice_loss(-logits, full)) == pytest.approx(1 - 1 / 17, abs=1e-4)  # smooth 1, 16 pixels
    with pytest.raises(ValueError, match="dice_loss"):
        dice_loss(torch.zeros(2, 3, 4, 4), full)


def test_train_refuses_an_occupied_output_dir_unless_overwrite(trained, data_root):
    """Issue 14 item 3 through the engine's API (the notebooks' path): nothing is written when refused."""
    out = trained.output_dir
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="already holds a run"):
        engine.train(tiny_config(data_root, out, epochs=1), progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_train_overwrite_replaces_the_run_and_resume_needs_no_config(data_root, tmp_path):
    out = tmp_path / "run"
    engine.train(tiny_config(data_root, out, epochs=1), progress=False)
    (out / "eval_refcoco_val.json").write_text("{}")
    r = engine.train(tiny_config(data_root, out, epochs=1, seed=1), progress=False, overwrite=True)
    assert not (out / "eval_refcoco_val.json").exists() and r.config.seed == 1
    again = engine.train(None, progress=False, resume=out / "last.pt")  # the checkpoint's own config
    assert again.config.seed == 1 and again.history[-1]["step"] == r.history[-1]["step"]
    with pytest.raises(ValueError, match="'batch_size' is 2 but 4"):
        engine.train(
            tiny_config(data_root, out, epochs=2, seed=1, batch_size=2),
            progress=False,
            resume=out / "last.pt",
        )


def test_the_data_pipeline_uses_the_models_normalisation(data_root, tmp_path, monkeypatch):
    """Training, evaluation and prediction normalise (and letterbox) with the statistics the model declares
    (``model.input_mean`` / ``input_std`` / ``fill``): ImageNet's for a DarkNet with timm's weights."""
    from PIL import Image

    from refseg_core.data.dataset import RefSegDataset
    from refseg_core.models.base import NORMALIZATIONS

    seen = []
    real_init = RefSegDataset.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        seen.append((self.mean, self.std))

    monkeypatch.setattr(RefSegDataset, "__init__", spy)
    cfg = tiny_config(data_root, tmp_path / "run", epochs=1, model_overrides={"normalization": "imagenet"})
    r = engine.train(cfg, progress=False)
    assert r.model.normalization == "imagenet" and len(seen) >= 2  # the training and validation sets
    assert set(seen) == {NORMALIZATIONS["imagenet"]}
    seen.clear()
    engine.evaluate(r.model, Refer(data_root, "refcoco", "unc"), split="val", input_size=32, max_items=2)
    assert seen == [NORMALIZATIONS["imagenet"]]
    inputs = []
    r.model.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    engine.predict(r.model, Image.new("RGB", (64, 32), (10, 200, 30)), "the red one", input_size=32)
    x = inputs[0][0]  # (3, 32, 32): the 64x32 image fills rows 8..23; the border is the model's mean
    assert x[:, :8].abs().max() < 1e-6 and x[:, 24:].abs().max() < 1e-6
    mean, std = NORMALIZATIONS["imagenet"]
    assert float(x[1, 16, 16]) == pytest.approx((200 / 255 - mean[1]) / std[1], abs=1e-5)
