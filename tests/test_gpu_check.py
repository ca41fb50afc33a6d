"""The GPU kit and check (benchmarks/gpu_kit.py, benchmarks/gpu_check.py), checked without a GPU: the kit's
wheels cover every third-party import the check can reach, the parts are guarded by the time budget and by
exceptions, rows follow one schema, and a CPU dry run (`--device cpu --tiny`) writes real rows."""

import ast
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import gpu_check, gpu_kit  # noqa: E402

LOCAL = {"refseg_core", "benchmarks", "model", "utils", "loguru"}  # ours, the official checkout's, its stub


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_kit_covers_every_third_party_import_of_the_check():
    """Every module the check's code can import (benchmarks/, the whole package) is on the GPU image or
    in a kit wheel: a bare GPU machine with the kit carried needs nothing else."""
    files = list((ROOT / "benchmarks").glob("*.py")) + list((ROOT / "refseg_core").rglob("*.py"))
    third_party = set().union(*map(_imports, files)) - set(sys.stdlib_module_names) - LOCAL - {"__future__"}
    provided = set(gpu_kit.GPU_IMAGE_MODULES) | {m for mods in gpu_kit.KIT_WHEELS.values() for m in mods}
    # Imported only by the book build / tests, never by the check (lazily, in functions it does not call):
    not_on_the_check_path = {"IPython", "jupytext", "papermill", "nbformat"}
    missing = sorted(third_party - provided - not_on_the_check_path)
    assert not missing, f"modules neither on the GPU image nor in KIT_WHEELS: {missing}"


def test_kit_pins_one_version_each_and_targets_the_gpu_python():
    names = [spec.split("==")[0].lower() for spec in gpu_kit.KIT_WHEELS]
    assert all("==" in spec for spec in gpu_kit.KIT_WHEELS) and len(set(names)) == len(names)
    assert gpu_kit.PYTHON_VERSION == "3.12" and all(p.endswith("x86_64") for p in gpu_kit.PLATFORMS)
    assert len(gpu_kit.OFFICIAL_COMMIT) == 40


def test_a_failed_clone_is_reported_not_fatal(tmp_path):
    why = gpu_kit.export_official(tmp_path / "CRIS.pytorch", str(tmp_path / "no_such_repo"))
    assert why and "git clone" in why and not (tmp_path / "CRIS.pytorch").exists()


def _check(tmp_path, budget=600.0):
    return gpu_check.Check(torch.device("cpu"), gpu_check.TINY, budget, tmp_path, None)


def test_parts_are_skipped_when_the_budget_is_spent(tmp_path):
    check = _check(tmp_path, budget=-1.0)
    check.sizes = gpu_check.FULL  # full sizes: each part needs its estimated seconds
    rows = gpu_check.run_check(check)
    assert [r["part"] for r in rows] == [p for p, _ in gpu_check.PARTS]
    assert all(r["kind"] == "skipped" and "budget" in r["skipped"] for r in rows)


def test_a_failing_part_writes_an_error_row_and_the_next_part_runs(tmp_path, monkeypatch):
    calls = []

    def boom(check):
        raise RuntimeError("simulated failure")

    def fine(check):
        calls.append("fine")
        check.add("lts", "train_step", images_per_s=1.0)

    monkeypatch.setattr(gpu_check, "PARTS", (("official", boom), ("lts", fine)))
    monkeypatch.setattr(gpu_check, "ESTIMATE_S", {"official": 1, "lts": 1})
    rows = gpu_check.run_check(_check(tmp_path))
    assert rows[0]["kind"] == "error" and "simulated failure" in rows[0]["error"] and calls == ["fine"]
    on_disk = json.loads((tmp_path / "cpu_check.json").read_text())
    assert on_disk == json.loads(json.dumps(rows))  # written as soon as each row exists


def test_cuda_is_required_unless_the_cpu_is_asked_for(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.slow
def test_cpu_dry_run_writes_rows_of_the_schema(tmp_path):
    """The tiny CPU dry run of the parts that need no official checkout (that part records why it is
    incomplete); its numbers mean nothing, its rows must be complete and name the CPU."""
    torch.set_num_threads(1)
    assert (
        gpu_check.main(
            [
                "--device",
                "cpu",
                "--tiny",
                "--out",
                str(tmp_path),
                "--official-repo",
                str(tmp_path / "none"),
                "--only",
                "official,lts,training,recipe,eval_data",
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "cpu_check.json").read_text())
    assert [r["kind"] for r in rows] == [
        "train_step_vs_official",
        "train_step_paper_cell",
        "train_step",
        "training_run",
        "recipe_run",
        "evaluation",
        "data_loader",
    ]
    for r in rows:
        assert (
            set(gpu_check.SCHEMA_KEYS) <= set(r)
            and r["device_type"] == "cpu"
            and r["device"].startswith("CPU")
        )
    official, paper, _, training, recipe, _, loader = rows
    # the paper cell's own speed settings (cris_r50_refcoco: fp16, NCHW, eager), timed in the same rounds
    assert (paper["config"], paper["config_precision"], paper["channels_last"], paper["compile"]) == (
        "cris_r50_refcoco",
        "fp16",
        False,
        False,
    )
    assert paper["precision"] == "fp32"  # the dry run only (fp16 on a CPU is ~10x slower): see TINY
    assert gpu_check.FULL.get("paper_cell_precision") is None  # on the GPU: the configuration's fp16
    assert paper["images_per_s"] > 0 and len(paper["round_s"]) == official["rounds"]
    # the official recipe with best-epoch selection, best.pt scored on every split by `evaluate`
    assert recipe["recipe"]["precision"] == "fp16" and recipe["recipe"]["select_best"] is True
    assert recipe["recipe"]["official_lr_quirk"] is True and recipe["recipe"]["backbone_lr_mult"] == 0.1
    assert [e["epoch"] for e in recipe["val_mIoU_by_epoch"]] == [1, 2] and not recipe["stopped_by_guard"]
    assert set(recipe["scores"]) == {"val", "testA", "testB"}
    assert all(
        v["checkpoint"] == "best.pt" and v["checkpoint_epoch"] == recipe["best"]["epoch"]
        for v in recipe["scores"].values()
    )
    assert any("scoring" in ln and "best.pt" in ln for ln in recipe["evaluate_said"])
    assert official["ours_images_per_s"] > 0 and official["official_images_per_s"] is None
    assert (
        "no --official-repo" in official["official_skipped"] or "segmenter.py" in official["official_skipped"]
    )
    assert training["val_mIoU"] is not None and training["loss_curve"] and "stopped_by_guard" in training
    assert loader["ratio_to_train_step"] == pytest.approx(
        loader["samples_per_s"] / official["ours_images_per_s"], rel=1e-2
    )
    assert "official" in gpu_check.summary(rows) and "val mIoU" in gpu_check.summary(rows)


@pytest.mark.slow
def test_make_gpu_check_runs_on_the_cpu(tmp_path):
    """`make gpu-check` itself (the target the device call runs), here with this interpreter, which has every
    import already (so the kit's wheels are not installed), on the CPU, one tiny part."""
    import subprocess

    r = subprocess.run(
        [
            "make",
            "-s",
            "gpu-check",
            f"GPU_PYTHON={sys.executable}",
            f"GPU_CHECK_OUT={tmp_path}",
            "GPU_CHECK_ARGS=--device cpu --tiny --only lts",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = json.loads((tmp_path / "cpu_check.json").read_text())
    assert [r["kind"] for r in rows] == ["train_step"] and rows[0]["images_per_s"] > 0
