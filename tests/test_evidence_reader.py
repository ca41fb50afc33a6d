"""The one evidence reader: committed rows, rows of another folder, and the machine's core count."""

import json

import pytest

from refseg_core import evidence


def test_rows_reads_the_committed_evidence_and_another_folder(tmp_path):
    committed = evidence.rows("cpu_official")
    assert isinstance(committed, list) and committed[0]["kind"] == "train_step_vs_official"
    (tmp_path / "mygpu_models.json").write_text(json.dumps([{"device": "X", "images_per_s": 1.0}]))
    assert [f.name for f in evidence.files("*_models.json", tmp_path)] == ["mygpu_models.json"]
    assert evidence.rows("mygpu_models", tmp_path) == [{"device": "X", "images_per_s": 1.0}]
    with pytest.raises(FileNotFoundError, match="available: mygpu_models"):
        evidence.rows("cpu_models", tmp_path)


def test_cpu_cores_from_the_row_or_its_device_string():
    assert evidence.cpu_cores({"device": "CPU AMD EPYC (2 logical cores, 1 torch threads)"}) == 2
    assert evidence.cpu_cores({"cores": 16, "device": "NVIDIA H200"}) == 16
    assert evidence.cpu_cores({"device": "NVIDIA H200"}) is None
