"""The reliability probe's cases (issue 23) each give one sentence naming the culprit, never a traceback:
a full disk while a checkpoint is written (the earlier one survives), ``predict --out`` under a regular
file, a run killed before its first checkpoint, a checkpoint of random bytes (torch's advice to retry with
``weights_only=False`` is never passed on), a YAML file of random bytes."""

import errno
import os
from pathlib import Path

import pytest
import torch
import yaml
from _engine_data import synthetic_root, tiny_config
from PIL import Image

from refseg_core.__main__ import main
from refseg_core.config import load_config
from refseg_core.engine import checkpoint as ckpt_mod
from refseg_core.engine.checkpoint import CheckpointWriteError, atomic_torch_save, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
FULL = Path("/dev/full")  # Linux: every write fails with ENOSPC, as on a full disk


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("probe")
    root = synthetic_root(base / "data")
    f = base / "p.yaml"
    f.write_text(yaml.safe_dump(tiny_config(root, base / "run", epochs=1, max_train_items=8)))
    assert main(["train", "--config", str(f), "--quiet"]) == 0
    return base, f, root


def _one_sentence(err: str, *words: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def _enospc_writer(kind: str, monkeypatch):
    """Make the checkpoint writer fail as a full disk does: ``device`` = a real ENOSPC from the kernel
    through torch's writer; ``oserror`` = ``OSError(ENOSPC)``; ``torch`` = torch's zip-writer RuntimeError
    (what a path-based torch.save raises), on a file system with no space left."""
    if kind == "device":
        if not FULL.exists():
            pytest.skip("no /dev/full here")
        monkeypatch.setattr(ckpt_mod, "_open_for_writing", lambda tmp: open(FULL, "wb"))
    elif kind == "oserror":

        def save(obj, f, *a, **k):
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(ckpt_mod.torch, "save", save)
    else:

        def save(obj, f, *a, **k):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

        monkeypatch.setattr(ckpt_mod.torch, "save", save)
        monkeypatch.setattr(ckpt_mod, "_disk_full", lambda folder: True)


@pytest.mark.parametrize("kind", ["device", "oserror", "torch"])
def test_disk_full_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch, kind):
    atomic_torch_save({"a": torch.ones(2)}, tmp_path / "last.pt")
    _enospc_writer(kind, monkeypatch)
    with pytest.raises(
        CheckpointWriteError, match=r"^disk full: .*last.pt; the previous checkpoint there is kept"
    ):
        atomic_torch_save({"a": torch.zeros(2)}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_a_runtime_error_on_a_disk_with_space_is_not_called_disk_full(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt_mod.torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"a": torch.zeros(2)}, tmp_path / "last.pt")


def test_disk_full_at_the_second_checkpoint_of_a_run(run_dir, tmp_path, monkeypatch, capsys):
    """`train` for 2 epochs; the disk is full when epoch 2's checkpoint is written."""
    if not FULL.exists():
        pytest.skip("no /dev/full here")
    _, _, root = run_dir
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(tiny_config(root, tmp_path / "run", epochs=2, max_train_items=8)))
    real, calls = ckpt_mod._open_for_writing, []

    def writer(tmp):
        calls.append(tmp)
        return real(tmp) if len(calls) == 1 else open(FULL, "wb")

    monkeypatch.setattr(ckpt_mod, "_open_for_writing", writer)
    assert main(["train", "--config", str(f), "--quiet"]) == 2
    _one_sentence(
        capsys.readouterr().err, "train: error: disk full", "last.pt", "previous checkpoint there is kept"
    )
    assert len(calls) == 2 and load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    assert not [p for p in os.listdir(tmp_path / "run") if ".tmp" in p]


def test_predict_out_under_a_regular_file(run_dir, tmp_path, capsys):
    base, _, _ = run_dir
    Image.new("RGB", (40, 30)).save(tmp_path / "photo.png")
    (tmp_path / "notes.txt").write_text("a file")
    args = ["predict", "--checkpoint", str(base / "run" / "last.pt"), "--image", str(tmp_path / "photo.png")]
    assert main([*args, "--text", "the dog", "--out", str(tmp_path / "notes.txt" / "pred")]) == 2
    _one_sentence(capsys.readouterr().err, "predict: error: --out", "notes.txt", "regular file")
    assert main([*args, "--text", "the dog", "--out", str(tmp_path / "notes.txt")]) == 2
    _one_sentence(capsys.readouterr().err, "is a file, not a folder")


def test_a_run_killed_before_its_first_checkpoint(run_dir, tmp_path, capsys):
    """What a run killed in its first epoch leaves: config.yaml, log.csv, tb/ and a partial checkpoint."""
    _, _, root = run_dir
    out = tmp_path / "run"
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(tiny_config(root, out, epochs=1, max_train_items=8)))
    out.mkdir()
    (out / "config.yaml").write_text(f.read_text())
    (out / "log.csv").write_text("epoch,step,loss\n1,1,0.7\n")
    (out / "tb").mkdir()
    (out / ".last.pt.tmp4242").write_bytes(b"half a checkpoint")
    assert main(["train", "--config", str(f), "--quiet"]) == 2
    err = capsys.readouterr().err
    _one_sentence(err, "stopped before its first checkpoint", "config.yaml, log.csv, tb/", "--overwrite")
    assert "--resume" not in err and "removed the partial checkpoint .last.pt.tmp4242" in err
    assert not (out / ".last.pt.tmp4242").exists()
    # the advice a user might still follow names what is there
    assert main(["train", "--resume", str(out / "last.pt"), "--quiet"]) == 2
    _one_sentence(
        capsys.readouterr().err,
        "last.pt does not exist",
        "stopped before its first checkpoint",
        "--overwrite",
    )
    assert main(["train", "--config", str(f), "--quiet", "--overwrite"]) == 0
    assert (out / "last.pt").is_file()


@pytest.mark.parametrize(
    "junk", [os.urandom(4096), b"PK\x03\x04" + os.urandom(600)], ids=["random", "zip-like"]
)
def test_a_checkpoint_of_random_bytes(run_dir, tmp_path, capsys, junk):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(junk)
    Image.new("RGB", (40, 30)).save(tmp_path / "photo.png")
    for argv in (
        ["evaluate", "--checkpoint", str(bad)],
        ["predict", "--checkpoint", str(bad), "--image", str(tmp_path / "photo.png"), "--text", "a dog"],
        ["train", "--resume", str(bad)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        _one_sentence(err, "junk.pt", "cannot be loaded")
        assert "weights_only" not in err and "arbitrary code" not in err


def test_a_yaml_file_of_random_bytes(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_bytes(bytes([0xFF, 0xFE, 0x00, 0x9C]) + os.urandom(500))
    with pytest.raises(ValueError, match="params.yaml is not a YAML text file"):
        load_config(str(bad))
    assert main(["train", "--config", str(bad)]) == 2
    _one_sentence(capsys.readouterr().err, "params.yaml", "not a YAML text file")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [lts_tiny\nepochs: 2\n")
    assert main(["train", "--config", str(broken)]) == 2
    _one_sentence(capsys.readouterr().err, "broken.yaml is not valid YAML at line")
