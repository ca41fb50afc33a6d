"""A finished run read back from its folder equals what ``train`` returned, and a chapter reuses it."""

import torch
from _engine_data import synthetic_root, tiny_config

from refseg_core import engine, notebook
from refseg_core.config import make_config
from refseg_core.engine.finished import read_run


def test_read_run_returns_what_train_returned(tmp_path):
    cfg = make_config(tiny_config(synthetic_root(tmp_path), tmp_path / "run", select_best=True))
    trained = engine.train(cfg, progress=False)
    back = read_run(cfg.output_dir)
    assert back.history == trained.history
    assert back.metrics == trained.metrics
    assert back.best == trained.best and back.best["epoch"] >= 1
    assert back.config.to_dict() == cfg.to_dict()
    assert back.checkpoint == trained.checkpoint
    assert abs(back.train_time_s - trained.train_time_s) < 0.01
    for (name, a), b in zip(trained.model.state_dict().items(), back.model.state_dict().values()):
        assert torch.equal(a.cpu(), b), name


def test_trained_run_reuses_a_finished_run_and_refuses_another(tmp_path, capsys):
    cfg = make_config(tiny_config(synthetic_root(tmp_path), tmp_path / "run", epochs=1))
    first = notebook.trained_run(cfg, progress=False)
    assert "training lts_tiny" in capsys.readouterr().out
    again = notebook.trained_run(cfg, progress=False)
    assert "reusing" in capsys.readouterr().out
    assert again.history == first.history and again.metrics == first.metrics
    other = make_config(dict(cfg.to_dict(), lr=5e-4))
    try:
        notebook.trained_run(other, progress=False)
    except ValueError as e:
        assert "another configuration" in str(e) and "retrain = True" in str(e)
    else:
        raise AssertionError("a folder holding another run was reused")


def test_read_run_names_an_unfinished_folder(tmp_path):
    (tmp_path / "run").mkdir()
    try:
        read_run(tmp_path / "run")
    except FileNotFoundError as e:
        assert "did not finish" in str(e)
    else:
        raise AssertionError("an empty folder was read as a run")
