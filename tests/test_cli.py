"""``python -m refseg_core train | evaluate | predict`` through the dispatcher, in process."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from _engine_data import synthetic_root, tiny_config
from refseg_core.__main__ import main
from refseg_core.data.refer import Refer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    root = synthetic_root(base / "data")
    cfg = tiny_config(root, base / "run", epochs=1, tensorboard=True)
    f = base / "p.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(f), "--quiet", "--set", "max_train_items=8"]) == 0
    return base, f, root


def test_train_writes_metrics_and_checkpoint(run_dir):
    base, _, _ = run_dir
    m = json.loads((base / "run" / "metrics.json").read_text())
    assert m["meta"]["steps"] == 2 and "mIoU" in m
    assert (base / "run" / "last.pt").is_file() and (base / "run" / "log.csv").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (base / "run" / "tb").iterdir())
    header = (base / "run" / "log.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["epoch", "step", "loss", "lr", "images_per_s"] and "val_mIoU" in header


def test_train_unknown_parameter_exits_2_and_lists_valid(run_dir, capsys):
    _, f, _ = run_dir
    assert main(["train", "--config", str(f), "--set", "bach_size=4"]) == 2
    err = capsys.readouterr().err
    assert "bach_size" in err and "batch_size" in err


def test_train_missing_data_exits_2_with_instructions(run_dir, tmp_path, capsys):
    _, f, _ = run_dir
    assert main(["train", "--config", str(f), "--set", f"data_root={tmp_path / 'none'}"]) == 2
    assert "refseg_core synth" in capsys.readouterr().err


def test_evaluate_writes_metrics_and_predictions(run_dir):
    base, f, root = run_dir
    out = base / "eval"
    assert main(["evaluate", "--config", str(f), "--checkpoint", str(base / "run" / "last.pt"), "--split", "val",
                 "--split", "testA", "--save-predictions", "--out", str(out)]) == 0
    m = json.loads((out / "eval_refcoco_val.json").read_text())
    p = json.loads((out / "predictions_refcoco_val.json").read_text())["predictions"]
    assert m["n"] == len(p) == 6 and m["meta"]["split"] == "val"  # max_eval_items of the config
    assert {"ref_id", "sent_id", "iou", "mask"} <= set(p[0])
    assert (out / "eval_refcoco_testA.json").is_file()
    assert m["mIoU"] == pytest.approx(np.mean([r["iou"] for r in p]))


def test_evaluate_defaults_to_the_checkpoint_config(run_dir, tmp_path):
    base, _, _ = run_dir
    assert main(["evaluate", "--checkpoint", str(base / "run" / "last.pt"), "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "eval_refcoco_val.json").read_text())["n"] == 6


def test_predict_writes_mask_and_overlay(run_dir, tmp_path):
    base, _, root = run_dir
    refer = Refer(root, "refcoco", "unc")
    ref = refer.split_refs("val")[0]
    img_path = tmp_path / "img.png"
    refer.load_image(ref).convert("L").save(img_path)  # a greyscale file is converted to RGB
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(base / "run" / "last.pt"), "--image", str(img_path),
                 "--text", "the big red circle", "--out", str(out)]) == 0
    mask = np.array(Image.open(out / "mask.png"))
    info = refer.image_info(ref)
    assert mask.shape == (info["height"], info["width"]) and set(np.unique(mask)) <= {0, 255}
    assert (out / "overlay.png").stat().st_size > 1000


def test_predict_bad_inputs_exit_2(run_dir, tmp_path, capsys):
    base, _, _ = run_dir
    ck = str(base / "run" / "last.pt")
    assert main(["predict", "--checkpoint", ck, "--image", str(tmp_path / "no.png"), "--text", "x"]) == 2
    assert "no.png" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", "--checkpoint", ck, "--image", str(bad), "--text", "x"]) == 2
    assert main(["predict", "--checkpoint", str(tmp_path / "none.pt"), "--image", str(bad), "--text", "x"]) == 2
