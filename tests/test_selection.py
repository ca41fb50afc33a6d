"""The official checkpoint selection (``select_best``): ``best.pt`` is the epoch with the best validation mIoU
(``>=``: the later of two ties), recorded in ``metrics.json``, ``last.pt`` and ``best.pt``; a resumed run
keeps selecting against the same record; ``evaluate`` scores ``best.pt`` by default and says so."""

import json

import pytest
import torch
import yaml
from _engine_data import synthetic_root, tiny_config

from refseg_core import engine
from refseg_core.__main__ import main
from refseg_core.config import load_config
from refseg_core.engine import loop
from refseg_core.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("sel_data"))


def _scripted(monkeypatch, scores):
    """Validation mIoU of epoch e is ``scores[e - 1]`` (the rest of the metrics as measured)."""
    from refseg_core.engine.evaluation import evaluate as real

    it = iter(scores)

    def fake(*a, **k):
        return dict(real(*a, **k), mIoU=next(it))

    monkeypatch.setattr(loop, "evaluate", fake)


def _same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("scores", "best_epoch"), [([0.3, 0.5, 0.4], 2), ([0.3, 0.5, 0.5], 3)])
def test_best_is_the_epoch_with_the_best_val_miou(data_root, tmp_path, monkeypatch, scores, best_epoch):
    _scripted(monkeypatch, scores)
    r = engine.train(tiny_config(data_root, tmp_path / "run", epochs=3, select_best=True), progress=False)
    assert r.best == {"epoch": best_epoch, "mIoU": 0.5, "split": "val", "checkpoint": "best.pt"}
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["best"] == r.best and m["mIoU"] == scores[-1]  # the top level stays the last epoch's
    best, last = load_checkpoint(tmp_path / "run" / "best.pt"), load_checkpoint(tmp_path / "run" / "last.pt")
    assert best["epoch"] == best_epoch and best["best"] == r.best and last["best"] == r.best
    assert "optimizer" not in best and best["val_metrics"]["mIoU"] == 0.5
    # best.pt holds the weights after epoch `best_epoch`: those of the same run stopped there
    monkeypatch.undo()
    short = engine.train(tiny_config(data_root, tmp_path / "short", epochs=best_epoch), progress=False)
    assert _same_weights(best["model"], short.model.state_dict())
    assert _same_weights(best["model"], last["model"]) == (best_epoch == 3)


def test_a_resumed_run_selects_against_the_saved_record(data_root, tmp_path, monkeypatch):
    _scripted(monkeypatch, [0.5, 0.4])
    engine.train(tiny_config(data_root, tmp_path / "run", epochs=2, select_best=True), progress=False)
    _scripted(monkeypatch, [0.45])  # epoch 3 is better than epoch 2 but not than epoch 1
    more = dict(tiny_config(data_root, tmp_path / "run", epochs=3, select_best=True))
    r = engine.train(more, progress=False, resume=tmp_path / "run" / "last.pt")
    assert r.best["epoch"] == 1 and load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    with pytest.raises(ValueError, match="holds only model weights.*last.pt"):
        engine.train(None, progress=False, resume=tmp_path / "run" / "best.pt")


def test_without_select_best_there_is_no_best_pt(data_root, tmp_path):
    r = engine.train(tiny_config(data_root, tmp_path / "run", epochs=1), progress=False)
    assert r.best is None and not (tmp_path / "run" / "best.pt").exists()
    assert "best" not in json.loads((tmp_path / "run" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def selected_run(data_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("sel_cli")
    f = base / "p.yaml"
    f.write_text(yaml.safe_dump(tiny_config(data_root, base / "run", epochs=2, select_best=True)))
    assert main(["train", "--config", str(f), "--quiet"]) == 0
    return base, f


def test_evaluate_scores_best_pt_by_default_and_says_so(selected_run, capsys):
    base, f = selected_run
    capsys.readouterr()
    assert main(["evaluate", "--config", str(f), "--first-sentence-only"]) == 0
    out = capsys.readouterr().out
    assert f"scoring {base / 'run' / 'best.pt'}" in out and "--checkpoint last" in out
    scored = json.loads((base / "run" / "eval_refcoco_val.json").read_text())
    best = load_checkpoint(base / "run" / "best.pt")
    assert scored["meta"]["checkpoint"] == str(base / "run" / "best.pt")
    assert scored["meta"]["checkpoint_epoch"] == best["epoch"]
    # the same sentences (first of each val ref, max_eval_items) as the validation that selected it
    assert scored["mIoU"] == pytest.approx(best["val_metrics"]["mIoU"], abs=1e-6)
    # a run folder works the same way; `last` names the other one
    assert main(["evaluate", "--checkpoint", str(base / "run"), "--out", str(base / "e1")]) == 0
    assert f"scoring {base / 'run' / 'best.pt'}" in capsys.readouterr().out
    assert main(["evaluate", "--config", str(f), "--checkpoint", "last", "--out", str(base / "e2")]) == 0
    assert f"scoring {base / 'run' / 'last.pt'}" in capsys.readouterr().out
    meta = json.loads((base / "e2" / "eval_refcoco_val.json").read_text())["meta"]
    assert meta["checkpoint"] == str(base / "run" / "last.pt")


def test_evaluate_choice_errors_are_one_sentence(selected_run, tmp_path, capsys):
    base, f = selected_run
    assert main(["evaluate"]) == 2
    assert "give --checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"run folder {tmp_path} has no last.pt (it holds no checkpoint)" in err and "Traceback" not in err


def test_paper_cells_and_the_smoke_cris_run_select_the_best_epoch():
    """Every paper cell follows the official protocol; so does smoke_cris, whose best.pt chapter 6 compares with
    last.pt. smoke_lts keeps only last.pt."""
    from refseg_core import configs

    for name in configs.names():
        assert load_config(name).select_best is (name != "smoke_lts"), name
