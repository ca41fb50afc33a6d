"""CPU benchmarks at a small size (``make bench``; under 10 minutes on an idle 2-core machine).

    python benchmarks/run_cpu.py [--official-repo /path/to/CRIS.pytorch] [--only models,official,data,eval]

Writes ``refseg_core/evidence/cpu_{models,official,data,eval}.json``. These are CPU numbers: they show the
relative effect of each switch on this machine and never stand in for GPU ones (``run_gpu.py``).
``torch.compile`` and bf16 are off by default here: compiling LTS-tiny took ~8 minutes and a bf16 CRIS-R50
step was slower than fp32 on the shared 2-core CPU, which has no native bf16 instructions (add e.g.
``--configs fp32,bf16,fp32+compile`` to measure them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks import runner  # noqa: E402

DEFAULTS = dict(
    models="cris_r50,cris_r101,lts",
    size=128,
    train_batch=2,
    infer_batch=4,
    configs="fp32,fp32+cl",
    repeats=3,
    official_batches="2",
    official_configs="fp32",
    data_workers="0,1,2",
    data_batches=10,
    data_images=60,
    eval_model="cris_tiny",
    eval_size=128,
    eval_image_size=96,
    eval_sentences=10_000,
    eval_batch=64,
    eval_workers=1,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    runner.add_arguments(ap, DEFAULTS)
    args = ap.parse_args(argv)
    runner.run(args, torch.device("cpu"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
