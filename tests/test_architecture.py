"""The tree's layers: the library never imports the engine or the command line, the engine never imports
the command line, and no module imports itself back through a circle."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "refseg_core"


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every refseg_core module a file imports (at any depth of the file: lazy imports count too)."""
    out = set()
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("refseg_core")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.startswith("refseg_core"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _layer(mod: str) -> str:
    if mod.startswith("refseg_core.cli") or mod == "refseg_core.__main__":
        return "cli"
    if mod.startswith("refseg_core.engine"):
        return "engine"
    if mod == "refseg_core.notebook":  # the chapters' helpers (IPython display, train-or-reuse)
        return "book"
    return "library"


ALLOWED = {"library": {"library"}, "engine": {"library", "engine"}, "cli": {"library", "engine", "cli"}}


def test_layers_import_only_downwards():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        mod, layer = _module(path), _layer(_module(path))
        if layer == "book":
            continue
        for target in _imports(path):
            if _layer(target) not in ALLOWED[layer] and _layer(target) != "book":
                bad.append(f"{mod} ({layer}) imports {target} ({_layer(target)})")
            if _layer(target) == "book":
                bad.append(f"{mod} ({layer}) imports the book helpers {target}")
    assert not bad, "\n".join(bad)


def test_no_import_circle_among_modules():
    graph = {}
    files = {_module(p): p for p in PKG.rglob("*.py")}
    packages = {m for m, p in files.items() if p.name == "__init__.py"}
    for mod, path in files.items():
        # edges between modules; a package's __init__ (a re-export table, a lazy registry) is not one
        graph[mod] = {t for t in _imports(path) if t in files and t != mod and t not in packages}

    def reach(start):
        seen, stack = set(), [start]
        while stack:
            for nxt in graph.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    circles = [m for m in graph if m in reach(m)]
    assert not circles, f"modules that import themselves back: {circles}"
