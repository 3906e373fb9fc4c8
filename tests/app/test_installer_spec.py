"""build_installer.spec, read with ``ast`` (no PyInstaller needed): what the frozen app must contain.

The full build (PyInstaller, ~1 minute) and the frozen app's --self-test run in
scripts/build_installer.sh, not here.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "build_installer.spec"


@pytest.fixture(scope="module")
def spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def constants(tree: ast.Module) -> dict:
    """The spec's module-level NAME = <literal> assignments."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found


def assigned(tree: ast.Module, name: str) -> ast.expr:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    raise AssertionError(f"build_installer.spec assigns no {name}")


def calls(tree: ast.Module, func: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == func]


def keyword(call: ast.Call, name: str) -> ast.expr:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    raise AssertionError(f"{ast.unparse(call.func)}(...) has no {name}=")


def parameter_defaults(tree: ast.Module) -> dict[str, ast.expr]:
    """{parameter name: its default expression} of the functions in ``tree`` that have one."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = node.args.posonlyargs + node.args.args
            pairs = list(zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            found.update((a.arg, d) for a, d in pairs)
    return found


def child_modules_in_source() -> dict[str, str]:
    """Every module started with ChildProcess(MODULE, ...) in app/, widgets/ and runtime/: {module: where}."""
    found = {}
    for folder in ("app", "widgets", "runtime"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            names = constants(tree)
            defaults = parameter_defaults(tree)
            for call in calls(tree, "ChildProcess"):
                first = call.args[0] if call.args else keyword(call, "module")
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                # one module, or either branch of `A if ... else B`; a parameter counts by its default
                # (its callers pass module constants, which are checked where they call ChildProcess)
                for arg in ((first.body, first.orelse) if isinstance(first, ast.IfExp) else (first,)):
                    if isinstance(arg, ast.Name) and arg.id not in names and arg.id in defaults:
                        arg = defaults[arg.id]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found[arg.value] = where
                    elif isinstance(arg, ast.Name) and isinstance(names.get(arg.id), str):
                        found[names[arg.id]] = where
                    elif path.name != "procs.py":
                        raise AssertionError(f"{where}: ChildProcess's module is not a string or a module constant "
                                             f"({ast.unparse(arg)}); the spec test cannot check it")
    return found


def test_the_spec_names_the_app_and_its_icons(spec_tree):
    c = constants(spec_tree)
    assert c["APP_NAME"] == "Model Workbench"
    assert c["EXE_NAME"] == "model-workbench"
    for icon in ("ICON_PNG", "ICON_ICO", "ICON_ICNS"):
        assert (ROOT / c[icon]).is_file(), c[icon]
    (exe,) = calls(spec_tree, "EXE")
    assert ast.unparse(keyword(exe, "name")) == "EXE_NAME"
    assert "ICON_ICO" in ast.unparse(keyword(exe, "icon")) and "ICON_ICNS" in ast.unparse(keyword(exe, "icon"))
    assert ast.literal_eval(keyword(exe, "upx")) is False
    (coll,) = calls(spec_tree, "COLLECT")
    assert ast.unparse(keyword(coll, "name")) == "APP_NAME"   # one folder: dist/Model Workbench/


def test_the_mac_bundle_has_an_id_and_its_plist_keys(spec_tree):
    c = constants(spec_tree)
    assert c["BUNDLE_ID"] == "org.modelworkbench.app"
    (bundle,) = calls(spec_tree, "BUNDLE")
    assert ast.unparse(keyword(bundle, "bundle_identifier")) == "BUNDLE_ID"
    node = keyword(bundle, "info_plist")
    assert isinstance(node, ast.Dict)
    plist = {ast.literal_eval(k): v for k, v in zip(node.keys, node.values)}
    assert ast.literal_eval(plist["NSHighResolutionCapable"]) is True
    assert ast.literal_eval(plist["LSMinimumSystemVersion"])
    assert ast.unparse(plist["CFBundleName"]) == "APP_NAME"


def test_the_spec_bundles_the_resources(spec_tree):
    datas = ast.unparse(assigned(spec_tree, "datas"))
    assert "('resources', 'resources')" in datas
    assert "starter_data()" in datas and "llama_data()" in datas
    # what the app reads from resources/ at run time is there to be bundled
    for name in ("catalog.json", "icons/app.png"):
        assert (ROOT / "resources" / name).is_file(), name
    assert list((ROOT / "resources" / "eval").glob("*.txt"))
    assert "resources" in ast.unparse(assigned(spec_tree, "hiddenimports"))  # imported via importlib.resources only


def test_the_spec_bundles_llama_cpp_libraries(spec_tree):
    c = constants(spec_tree)
    (analysis,) = calls(spec_tree, "Analysis")
    assert ast.unparse(keyword(analysis, "binaries")) == "llama_binaries()"
    assert {"llama", "ggml"} <= set(c["LLAMA_LIBS"])
    assert {"ggml-metal.metal", "default.metallib"} <= set(c["METAL_FILES"])  # macOS, when not embedded
    spec = importlib.util.find_spec("llama_cpp")
    lib = Path(spec.origin).parent / "lib"
    if sys.platform.startswith("linux"):
        # every soname the libraries link against is listed (libllama.so.0 only serves libmtmd, left out)
        sonames = {p.name[3:-5] for p in lib.glob("lib*.so.0")} - {"llama", "mtmd", "llava"}
        assert sonames <= set(c["LLAMA_SONAME_LIBS"]) | set(c["LLAMA_GPU_LIBS"]), sonames


def test_every_child_process_module_is_a_hidden_import(spec_tree):
    c = constants(spec_tree)
    hidden = ast.unparse(assigned(spec_tree, "hiddenimports"))
    assert "*CHILD_MODULES" in hidden
    used = child_modules_in_source()
    assert "runtime.engine.server" in used
    missing = {module: where for module, where in used.items() if module not in c["CHILD_MODULES"]}
    assert not missing, f"add these child modules to CHILD_MODULES in build_installer.spec: {missing}"
    for module in c["CHILD_MODULES"]:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_the_spec_leaves_out_tests_and_heavy_unused_libraries(spec_tree):
    excludes = set(constants(spec_tree)["EXCLUDES"])
    assert {"tests", "benchmarks", "pytest", "torch", "transformers"} <= excludes
    assert {"PySide6.QtWebEngineCore", "PySide6.QtQuick", "PySide6.Qt3DCore", "PySide6.QtMultimedia"} <= excludes
    assert "matplotlib.backends.backend_qtagg" in excludes and "matplotlib.backends.backend_agg" not in excludes
    # and nothing the app imports is excluded
    assert not {e for e in excludes if e.split(".")[0] in {"app", "widgets", "runtime", "resources"}}
    assert not {"PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets"} & excludes


def test_pyproject_has_a_build_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert any(req.startswith("pyinstaller") for req in project["optional-dependencies"]["build"])
