"""refseg_core.paths.readable: a page or message names a path under the refseg home from $REFSEG_HOME (or
~/refseg-book), never by the building machine's absolute path; other paths are left as they are."""

from refseg_core import paths


def test_readable_writes_paths_under_the_home_from_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "home"))
    run = tmp_path / "home" / "runs" / "smoke_cris" / "best.pt"
    assert paths.readable(run) == "$REFSEG_HOME/runs/smoke_cris/best.pt"
    assert paths.readable(tmp_path / "home") == "$REFSEG_HOME"
    elsewhere = tmp_path / "mine" / "last.pt"
    assert paths.readable(elsewhere) == str(elsewhere)


def test_readable_uses_the_default_home_when_the_variable_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.readable(tmp_path / "refseg-book" / "data" / "synthetic") == "~/refseg-book/data/synthetic"
