"""environment.yml and the Makefile install the same things as pyproject.toml declares."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_pins_the_makefile_torch_and_installs_the_package():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    torch_pkgs = re.search(r"^TORCH_PKGS \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert sorted(p for p in pip if p.startswith("torch")) == sorted(torch_pkgs)
    assert '-e ".[book,test]"' in pip


def test_readme_shows_the_two_commands_first():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    assert "make book" in first_block and "make test" in first_block
