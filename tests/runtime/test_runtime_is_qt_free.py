"""runtime/ is the Qt-free core: no module imports PySide6 or a Qt plotting backend."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
FORBIDDEN = ("PySide6", "shiboken6", "matplotlib.backends.backend_qt")


def _runtime_modules():
    return sorted(p for p in RUNTIME.rglob("*.py") if "__pycache__" not in p.parts)


def _imported_names(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_no_qt_imports_in_runtime_sources():
    offenders = []
    for path in _runtime_modules():
        for name in _imported_names(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if name.startswith(FORBIDDEN):
                offenders.append(f"{path.relative_to(RUNTIME.parent)}: {name}")
    assert not offenders, "runtime/ must stay Qt-free:\n" + "\n".join(offenders)


def test_importing_runtime_loads_no_qt():
    names = [".".join(p.relative_to(RUNTIME.parent).with_suffix("").parts) for p in _runtime_modules()]
    names = [n.removesuffix(".__init__") for n in names]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6'))\n"
        "print(','.join(qt))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=RUNTIME.parent, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing runtime loaded: {result.stdout.strip()}"
