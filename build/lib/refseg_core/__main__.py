"""Command line: ``python -m refseg_core <command> ...`` (torchrun-ready).

Commands: ``synth`` (write the synthetic dataset), ``train``, ``evaluate``, ``predict``, ``gather``.
Each command lives in its own module, which exposes ``add_arguments(parser)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "synth": ("refseg_core.data.synthetic", "write the synthetic dataset in REFER / G-REFER format"),
    "train": ("refseg_core.cli_train", "train LTS or CRIS from a YAML parameter file"),
    "evaluate": ("refseg_core.cli_evaluate", "evaluate a checkpoint on a split"),
    "predict": ("refseg_core.cli_predict", "segment one image for one expression"),
    "gather": (
        "refseg_core.results",
        "gather the results of runs into one table next to the papers' numbers",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refseg_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a command whose module is not written yet
            if exc.name != module_name:
                raise
            continue
        module.add_arguments(p)
        modules[name] = module
    args = parser.parse_args(argv)
    if args.command not in modules:
        parser.error(f"command {args.command!r} is not available in this version")
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
