"""Command line: ``python -m refseg_core <command> ...`` (torchrun-ready).

Commands: ``synth`` (write the synthetic dataset), ``data`` (fetch and verify real data), ``train``,
``evaluate``, ``predict``, ``gather``.
Each command lives in its own module, which exposes ``add_arguments(parser)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "synth": ("refseg_core.cli.synth", "write the synthetic dataset in REFER / G-REFER format"),
    "data": (
        "refseg_core.cli.data",
        "fetch and verify real data (RefCOCO, RefCOCO+, RefCOCOg, gRefCOCO, RefCOCO-M)",
    ),
    "train": ("refseg_core.cli.train", "train LTS or CRIS from a YAML parameter file"),
    "evaluate": ("refseg_core.cli.evaluate", "evaluate a checkpoint on a split"),
    "predict": ("refseg_core.cli.predict", "segment one image for one expression"),
    "gather": (
        "refseg_core.cli.gather",
        "gather the results of runs into one table next to the papers' numbers",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refseg_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the command asked for (the others' imports, torch among them, take seconds); all of
    # them when none is named, so that --help and errors list every command.
    wanted = [argv[0]] if argv and argv[0] in COMMANDS else list(COMMANDS)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name in wanted:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)
