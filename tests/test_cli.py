"""``python -m refseg_core train | evaluate | predict`` through the dispatcher, in process."""

import json

import numpy as np
import pytest
import torch
import yaml
from _engine_data import synthetic_root, tiny_config
from PIL import Image

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
    assert (
        main(
            [
                "train",
                "--config",
                str(f),
                "--set",
                f"data_root={tmp_path / 'none'}",
                "--set",
                f"output_dir={tmp_path / 'out'}",
            ]
        )
        == 2
    )
    assert "refseg_core synth" in capsys.readouterr().err


def test_evaluate_writes_metrics_and_predictions(run_dir):
    base, f, root = run_dir
    out = base / "eval"
    assert (
        main(
            [
                "evaluate",
                "--config",
                str(f),
                "--checkpoint",
                str(base / "run" / "last.pt"),
                "--split",
                "val",
                "--split",
                "testA",
                "--save-predictions",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads((out / "eval_refcoco_val.json").read_text())
    p = json.loads((out / "predictions_refcoco_val.json").read_text())["predictions"]
    assert m["n"] == len(p) == 6 and m["meta"]["split"] == "val"  # max_eval_items of the config
    # the meta says the data was synthetic, so gather never sets this score next to a paper number
    assert m["meta"]["synthetic"] is True and m["meta"]["model"] == "lts_tiny"
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
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(base / "run" / "last.pt"),
                "--image",
                str(img_path),
                "--text",
                "the big red circle",
                "--out",
                str(out),
            ]
        )
        == 0
    )
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
    assert (
        main(["predict", "--checkpoint", str(tmp_path / "none.pt"), "--image", str(bad), "--text", "x"]) == 2
    )


# ---- issue 14 -------------------------------------------------------------------------------------
@pytest.fixture()
def cut_run(run_dir, tmp_path):
    """A copy of the module's one-epoch run in a fresh folder (its checkpoint resumes to epoch 2)."""
    import shutil

    base, f, root = run_dir
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    return run, f, root


def test_resume_without_config_continues_the_checkpoints_own_run(cut_run, capsys, monkeypatch):
    """Item 2: `--resume CKPT` alone (as the interrupt message prints it) uses the saved configuration."""
    run, _, _ = cut_run
    monkeypatch.chdir(run.parent)  # no ./data, no params: only the checkpoint knows the run
    assert main(["train", "--resume", str(run / "last.pt"), "--set", "epochs=2", "--quiet"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["meta"]["model"] == "lts_tiny" and m["meta"]["epochs"] == 2 and m["meta"]["steps"] == 4
    assert not (run.parent / "runs").exists()


def test_resume_may_change_only_safe_keys(cut_run, capsys):
    run, f, _ = cut_run
    before = (run / "last.pt").read_bytes()
    assert main(["train", "--resume", str(run / "last.pt"), "--set", "lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "'lr'" in err and "0.5" in err and "Traceback" not in err
    assert (
        main(["train", "--config", str(f), "--resume", str(run / "last.pt"), "--set", "model=cris_tiny"]) == 2
    )
    assert "cris_tiny" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == before


def test_occupied_output_dir_is_refused_unless_overwrite(run_dir, tmp_path, capsys):
    """Item 3: a new run into a folder that holds one is refused before anything is written."""
    import shutil

    base, f, _ = run_dir
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    args = [
        "train",
        "--config",
        str(f),
        "--quiet",
        "--set",
        f"output_dir={run}",
        "--set",
        "max_train_items=8",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files
    (run / ".last.pt.tmp4242").write_bytes(b"half")  # left by a killed run
    assert main(args + ["--overwrite"]) == 0
    assert not (run / ".last.pt.tmp4242").exists() and not (run / ".refseg.lock").exists()


def test_a_locked_output_dir_is_refused(run_dir, tmp_path, capsys):
    from refseg_core.engine import run_dir as rd

    _, f, _ = run_dir
    with rd.claim(tmp_path / "busy"):
        assert main(["train", "--config", str(f), "--set", f"output_dir={tmp_path / 'busy'}"]) == 2
    assert "in use by another run" in capsys.readouterr().err
    assert not (tmp_path / "busy" / "config.yaml").exists()


def test_resuming_another_models_checkpoint_into_a_run_is_refused(run_dir, tmp_path, capsys):
    """Item 3: the checkpoint's model is compared with the config before anything is written."""
    import shutil

    base, f, _ = run_dir
    mine, other = tmp_path / "mine", tmp_path / "other"
    shutil.copytree(base / "run", mine)
    shutil.copytree(base / "run", other)
    ck = torch.load(other / "last.pt", weights_only=True)
    ck["model_config"]["name"] = ck["config"]["model"] = "cris_tiny"
    torch.save(ck, other / "last.pt")
    files = {p.name: p.read_bytes() for p in mine.iterdir() if p.is_file()}
    assert (
        main(["train", "--config", str(f), "--set", f"output_dir={mine}", "--resume", str(other / "last.pt")])
        == 2
    )
    err = capsys.readouterr().err
    assert "cris_tiny" in err and "'model'" in err
    assert {p.name: p.read_bytes() for p in mine.iterdir() if p.is_file()} == files


def test_evaluate_writes_beside_the_checkpoint_and_keeps_another_runs_eval_file(run_dir, tmp_path, capsys):
    import shutil

    base, f, _ = run_dir
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(base / "run", a)
    shutil.copytree(base / "run", b)
    assert main(["evaluate", "--checkpoint", str(a / "last.pt")]) == 0
    assert json.loads((a / "eval_refcoco_val.json").read_text())["meta"]["checkpoint"] == str(a / "last.pt")
    before = (a / "eval_refcoco_val.json").read_text()
    assert main(["evaluate", "--checkpoint", str(b / "last.pt"), "--out", str(a)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (a / "eval_refcoco_val.json").read_text() == before
    assert main(["evaluate", "--checkpoint", str(b / "last.pt"), "--out", str(a), "--overwrite"]) == 0


def test_evaluate_refuses_other_synthetic_data_than_the_checkpoints(run_dir, tmp_path, capsys):
    """Item 4: evaluation uses the data the checkpoint was trained on, or refuses."""
    base, _, root = run_dir
    ck = torch.load(base / "run" / "last.pt", weights_only=True)
    ck["config"].update(synthetic=True, synthetic_num_images=16, synthetic_image_size=64)
    torch.save(ck, tmp_path / "last.pt")
    manifest = (root / "refcoco" / "synthetic.json").read_text()
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(dict(ck["config"], synthetic_image_size=160)))
    assert main(["evaluate", "--checkpoint", str(tmp_path / "last.pt"), "--config", str(f)]) == 2
    assert "synthetic_image_size" in capsys.readouterr().err
    assert (
        main(["evaluate", "--checkpoint", str(tmp_path / "last.pt"), "--set", "synthetic_num_images=20"]) == 2
    )
    assert "synthetic_num_images" in capsys.readouterr().err
    assert (root / "refcoco" / "synthetic.json").read_text() == manifest


@pytest.mark.parametrize(
    "setting, words",
    [
        ("output_dir={file}/sub", ["output_dir", "regular file"]),
        ("device=cuda:99", ["device"]),
        ("lr=[1, 2", ["--set", "YAML"]),
        ("max_eval_items=0", ["max_eval_items", ">= 1"]),
    ],
)
def test_train_errors_are_one_sentence(run_dir, tmp_path, capsys, setting, words):
    """Item 5: a sentence naming the culprit, no traceback, and a --set error does not blame the file."""
    _, f, _ = run_dir
    (tmp_path / "file").write_text("x")
    assert (
        main(
            [
                "train",
                "--config",
                str(f),
                "--set",
                setting.format(file=tmp_path / "file"),
                "--set",
                f"output_dir={tmp_path / 'o'}" if "output_dir" not in setting else "epochs=1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert "Traceback" not in err and str(f) not in err and len(err.strip().splitlines()) == 1


def test_set_and_yaml_lr_1e_4_are_numbers(tmp_path):
    from refseg_core.config import load_config

    f = tmp_path / "p.yaml"
    f.write_text("lr: 1e-4\nmodel: lts_tiny\n")
    assert load_config(f).lr == 1e-4
    assert load_config(None, ["lr=1e-4"]).lr == 1e-4 and load_config(None, ["grad_clip=2e0"]).grad_clip == 2.0
    with pytest.raises(ValueError, match="from --set") as e:
        load_config(f, ["lr=fast"])
    assert str(f) not in str(e.value)


def test_directories_are_not_reported_missing(run_dir, tmp_path, capsys):
    base, _, _ = run_dir
    assert main(["predict", "--checkpoint", str(base / "run"), "--image", "x.png", "--text", "x"]) == 2
    assert "is a directory" in capsys.readouterr().err
    # evaluate takes a run folder (test_selection.py); one without a checkpoint says what it holds
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    assert "has no last.pt" in capsys.readouterr().err
    ck = str(base / "run" / "last.pt")
    assert main(["predict", "--checkpoint", ck, "--image", str(tmp_path), "--text", "x"]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_weights_that_do_not_fit_are_one_sentence(run_dir, tmp_path, capsys):
    base, _, _ = run_dir
    ck = torch.load(base / "run" / "last.pt", weights_only=True)
    k = next(iter(ck["model"]))
    ck["model"][k] = torch.zeros(3, 3, 3)
    torch.save(ck, tmp_path / "bad.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "do not fit" in err and "bad.pt" in err and "Traceback" not in err


def test_predict_validates_options_and_warns_about_lost_words(run_dir, tmp_path, capsys):
    """Item 7: --threshold / --input-size are checked; words outside the LTS vocabulary and a truncated
    expression are reported."""
    base, _, root = run_dir
    ck = str(base / "run" / "last.pt")
    img = tmp_path / "img.png"
    Image.new("RGB", (40, 30)).save(img)
    for bad in (
        ["--threshold", "1.5"],
        ["--threshold", "0"],
        ["--input-size", "50"],
        ["--input-size", "-32"],
    ):
        assert main(["predict", "--checkpoint", ck, "--image", str(img), "--text", "x", *bad]) == 2
        assert bad[0] in capsys.readouterr().err
    long = "the " + " ".join(["zebraish"] * 12)
    assert (
        main(
            ["predict", "--checkpoint", ck, "--image", str(img), "--text", long, "--out", str(tmp_path / "p")]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "zebraish" in err and "<unk>" in err and "only the first 10" in err


def test_second_ctrl_c_exits_without_traceback(run_dir, monkeypatch, capsys):
    from refseg_core import engine

    _, f, _ = run_dir

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # what StopFlag raises on a second SIGINT

    monkeypatch.setattr(engine, "train", interrupted)
    try:
        code = main(["train", "--config", str(f)])
    except KeyboardInterrupt:
        pytest.fail("a second Ctrl-C ends in a KeyboardInterrupt traceback")
    assert code == 130
    assert "second Ctrl-C" in capsys.readouterr().err
