"""No file a user passes or a checkpoint names is loaded in a way that can execute code: the package never
calls TorchScript's loader, ``torch.load`` only with ``weights_only=True``, and ``pickle`` only through
unpicklers whose ``find_class`` is overridden (annotation pickles, TorchScript tensors)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "refseg_core"


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_code_executing_load_in_the_package():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for call, name in _calls(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{call.lineno}"
            if name.endswith("jit.load") or name in ("pickle.load", "pickle.loads"):
                bad.append(f"{where}: {name}")
            if name == "torch.load":
                kw = {k.arg: k.value for k in call.keywords}
                if not (
                    isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                ):
                    bad.append(f"{where}: torch.load without weights_only=True")
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            if any(ast.unparse(b).endswith("Unpickler") for b in cls.bases):
                methods = {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}
                if "find_class" not in methods:
                    bad.append(
                        f"{path.name}:{cls.lineno}: unpickler {cls.name} without a restricting find_class"
                    )
    assert not bad, bad
