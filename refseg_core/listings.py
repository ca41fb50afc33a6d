"""Listings of a class for a chapter: the class statement, its docstring and the methods a reader needs
(``__init__`` and ``forward`` by default), in the package's own source, so the page never keeps a copy.

:func:`class_source` keeps what comes before the first method (the ``class`` line, the docstring, class
attributes) and the named methods, in the order of the file, and ends with one comment naming the
methods left out, so a reader knows the listing is not the whole class.
:func:`refseg_core.notebook.show_source` displays it when given ``methods``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Sequence


def class_source(cls: type, methods: Sequence[str] = ("__init__", "forward")) -> str:
    """The source of ``cls`` with only ``methods`` among its functions (a ``ValueError`` names a method
    the class does not define itself)."""
    src = textwrap.dedent(inspect.getsource(cls))
    node = ast.parse(src).body[0]
    if not isinstance(node, ast.ClassDef):
        raise ValueError(f"class_source: {cls!r} is not a class")
    lines = src.splitlines()
    funcs = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    missing = [m for m in methods if m not in {f.name for f in funcs}]
    if missing:
        raise ValueError(f"class_source: {cls.__name__} defines no method {missing} of its own")
    if not funcs:
        return src.rstrip("\n")

    def start(f):  # first line of a function, its decorators included (0-based)
        return min([f.lineno] + [d.lineno for d in f.decorator_list]) - 1

    out = lines[: start(funcs[0])]
    while out and not out[-1].strip():
        out.pop()
    left_out = []
    for f in funcs:
        if f.name in methods:
            out += [""] + lines[start(f) : f.end_lineno]
        else:
            left_out.append(f.name)
    if left_out:
        module = inspect.getmodule(cls)
        where = module.__name__ if module else "its module"
        out += ["", f"    # not shown here: {', '.join(left_out)} (in {where})"]
    return "\n".join(out)
