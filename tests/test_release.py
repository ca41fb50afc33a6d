"""One release setting: the package version gives the tag that the Colab cells install and the launch
buttons open, and the Pages workflow publishes the book built from that tag."""

import re
from pathlib import Path

import yaml

import refseg_core

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"


def test_the_release_tag_is_the_package_version():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M), "the version is typed in pyproject.toml"
    assert re.search(r'^version = \{ attr = "refseg_core.__version__" \}', pyproject, re.M)
    assert not re.search(r'^version = "', pyproject, re.M)
    assert refseg_core.REPO_REF == f"v{refseg_core.__version__}"
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert (cfg["repository"]["url"], cfg["repository"]["branch"]) == (
        refseg_core.REPO_URL,
        refseg_core.REPO_REF,
    )


def test_pages_workflow_builds_the_book_from_a_release_tag_and_deploys_it():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert on["push"]["tags"] == ["v*"]
    steps = wf["jobs"]["build"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any("refseg_core.REPO_REF" in r and "GITHUB_REF_NAME" in r for r in runs)
    assert "make book" in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_contributing_documents_the_release_step():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## Releasing", 1)[1]
    assert re.search(r"git tag -a v\S+", section) and "git push origin v" in section
    assert "pages.yml" in section and "make book" in section
