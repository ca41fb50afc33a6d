"""``make gpu-kit``: everything the one-call GPU check (``benchmarks/gpu_check.py``) needs on a machine that
cannot reach the network, prepared here into the git-ignored folder ``.gpu_kit/``:

- ``.gpu_kit/wheels/``: the wheels of the packages the GPU machine's image lacks (``KIT_WHEELS``), for
  CPython 3.12 on manylinux x86-64, fetched with ``pip download --only-binary=:all: --no-deps``;
- ``.gpu_kit/CRIS.pytorch/``: the official CRIS code (DerrickWang005/CRIS.pytorch at ``OFFICIAL_COMMIT``),
  exported (without its README pictures, ``img/``) from a clone of its public repository for the
  side-by-side train step. It is never committed.

The device call then carries ``.gpu_kit`` and runs ``make gpu-check``. The synthetic data is not part of the
kit: its generator writes the check's few thousand images in seconds on that machine's 16 cores.

    python benchmarks/gpu_kit.py [--out .gpu_kit] [--official-src URL_OR_GIT_DIR]

``--official-src`` (or ``$CRIS_OFFICIAL_SRC``) replaces the GitHub URL, e.g. with a local mirror where
GitHub cannot be reached. A failed clone is reported and the kit is still written: the check then records
the official comparison as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KIT_DIR = ROOT / ".gpu_kit"
OFFICIAL_URL = "https://github.com/DerrickWang005/CRIS.pytorch.git"
OFFICIAL_COMMIT = "e596332f8f5929a907ad66d2889e434d18f5eee7"  # HEAD of the official repository, 2026-11
PYTHON_VERSION = "3.12"  # the GPU image's python3 (device tool, KINDS.md)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)

# Distribution pin -> the top-level modules it provides. Every third-party module the check imports is
# either here or in GPU_IMAGE_MODULES (tests/test_gpu_check.py checks this on a CPU dry run).
KIT_WHEELS = {
    "open_clip_torch==3.3.0": ("open_clip",),
    "ftfy==6.3.1": ("ftfy",),  # open_clip's and the official tokenizer's text cleaning
    "wcwidth==0.2.13": ("wcwidth",),  # ftfy's one dependency
    "pycocotools==2.0.10": ("pycocotools",),
}
# Top-level modules the GPU image already holds (device tool, KINDS.md "Python packages already there").
GPU_IMAGE_MODULES = frozenset(
    {
        "torch",
        "torchvision",
        "numpy",
        "PIL",
        "yaml",
        "tqdm",
        "matplotlib",
        "contourpy",
        "tensorboard",
        "regex",
        "huggingface_hub",
        "safetensors",
        "timm",
        "cv2",
        "packaging",
        "filelock",
        "fsspec",
        "jinja2",
        "sympy",
        "networkx",
        "typing_extensions",
        "mpmath",
        "markupsafe",
        "triton",
        "google",
        "requests",
        "certifi",
        "urllib3",
        "idna",
        "charset_normalizer",
        "cycler",
        "kiwisolver",
        "pyparsing",
        "dateutil",
        "fontTools",
        "six",
        "psutil",
        "pyarrow",  # on the image's list too (KINDS.md); the data fetch uses it, the check does not
    }
)


def download_wheels(dest: Path) -> list[Path]:
    """``pip download`` each of ``KIT_WHEELS`` for CPython 3.12 / manylinux x86-64 into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "-d",
        str(dest),
    ]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + list(KIT_WHEELS), check=True)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != len(KIT_WHEELS):
        raise SystemExit(
            f"gpu-kit: expected {len(KIT_WHEELS)} wheels in {dest}, found {[w.name for w in wheels]}"
        )
    return wheels


def export_official(dest: Path, source: str) -> str | None:
    """The official code at ``OFFICIAL_COMMIT`` exported (no .git) into ``dest``; the reason when it fails."""
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        try:  # no prompt, and a bounded wait where GitHub cannot be reached
            r = subprocess.run(
                ["git", "clone", "--quiet", "--no-checkout", source, str(clone)],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            )
        except subprocess.TimeoutExpired:
            return f"git clone {source} did not finish within 120 s"
        if r.returncode:
            return f"git clone {source} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
        dest.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(clone), "archive", OFFICIAL_COMMIT, "--", ".", ":(exclude)img"],
            capture_output=True,
        )
        if archive.returncode:
            shutil.rmtree(dest)
            return f"{source} has no commit {OFFICIAL_COMMIT}"
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=KIT_DIR)
    ap.add_argument("--official-src", default=os.environ.get("CRIS_OFFICIAL_SRC", OFFICIAL_URL))
    ap.add_argument("--no-official", action="store_true", help="skip the official code (wheels only)")
    args = ap.parse_args(argv)
    wheels = download_wheels(args.out / "wheels")
    print(f"gpu-kit: {len(wheels)} wheels in {args.out / 'wheels'}: {', '.join(w.name for w in wheels)}")
    if args.no_official:
        return 0
    why = export_official(args.out / "CRIS.pytorch", args.official_src)
    if why:
        print(
            f"gpu-kit: warning: the official CRIS code is missing ({why}); the check will record the "
            "official comparison as skipped. Set CRIS_OFFICIAL_SRC to a clone or mirror.",
            file=sys.stderr,
        )
    else:
        print(f"gpu-kit: official CRIS {OFFICIAL_COMMIT[:7]} in {args.out / 'CRIS.pytorch'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
