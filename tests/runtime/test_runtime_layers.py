"""Imports inside runtime/ go one way (DESIGN.md, "Layout"):

    shared ground (errors, jobs, paths, procs) <- models <- engine, hub, compress <- store <- chat, bench

A package may import its own modules and anything in a lower layer; never a sibling of its own
layer (engine does not import hub) nor anything above it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
GROUND = ("errors", "jobs", "paths", "procs")
LAYERS = {"models": 1, "engine": 2, "hub": 2, "compress": 2, "store": 3, "chat": 4, "bench": 4}


def _unit(parts: tuple[str, ...]) -> str:
    """The layer unit of a runtime module: 'ground' or its subpackage name."""
    if not parts or parts[0] in GROUND or parts[0] == "__init__":
        return "ground"
    return parts[0]


def _level(unit: str) -> int:
    if unit == "ground":
        return 0
    if unit not in LAYERS:
        raise AssertionError(f"runtime/{unit} is in no layer: add it to DESIGN.md and LAYERS")
    return LAYERS[unit]


def _runtime_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from runtime import paths` names the module in the alias; otherwise the module is enough
            names = ([f"runtime.{alias.name}" for alias in node.names] if node.module == "runtime"
                     else [node.module])
        for name in names:
            parts = name.split(".")
            if parts[0] == "runtime" and len(parts) > 1:
                yield node.lineno, name, tuple(parts[1:])


def _violations(path: Path, root: Path = RUNTIME) -> list[str]:
    own = _unit(path.relative_to(root).with_suffix("").parts)
    found = []
    for lineno, name, parts in _runtime_imports(path):
        target = _unit(parts)
        if target == own:
            continue
        if _level(target) >= _level(own):
            found.append(f"runtime/{path.relative_to(root)}:{lineno} ({own}) imports {name} ({target})")
    return found


def test_every_runtime_module_imports_only_downwards():
    offenders = []
    for path in sorted(RUNTIME.rglob("*.py")):
        offenders.extend(_violations(path))
    assert not offenders, "runtime/ imports must go one way:\n" + "\n".join(offenders)


def test_the_check_catches_an_upward_import(tmp_path):
    """The rule itself: a models module importing the engine is reported; the reverse is fine."""
    (tmp_path / "models").mkdir()
    (tmp_path / "engine").mkdir()
    bad = tmp_path / "models" / "bad.py"
    bad.write_text("from runtime.engine.types import LoadOptions\nimport runtime.errors\n")
    good = tmp_path / "engine" / "good.py"
    good.write_text("from runtime.models.gguf_info import read_gguf_info\nfrom runtime import paths\n")
    sibling = tmp_path / "engine" / "sibling.py"
    sibling.write_text("from runtime.hub import search\n")
    assert len(_violations(bad, tmp_path)) == 1
    assert _violations(good, tmp_path) == []
    assert len(_violations(sibling, tmp_path)) == 1


@pytest.mark.parametrize("unit", sorted(LAYERS))
def test_layers_name_real_or_planned_packages(unit):
    assert unit in ("hub", "compress", "bench") or (RUNTIME / unit / "__init__.py").exists()
