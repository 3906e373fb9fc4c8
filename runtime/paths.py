"""Where the app keeps its files. The one module that decides it.

``WORKBENCH_HOME`` overrides everything (tests point it at a temporary folder). Otherwise the
platform's convention: ``~/Library/Application Support/ModelWorkbench`` on macOS,
``%LOCALAPPDATA%/ModelWorkbench`` on Windows, ``$XDG_DATA_HOME/model-workbench`` elsewhere.
The Hugging Face cache follows huggingface_hub's own variables (HF_HUB_CACHE, HF_HOME).
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Callable


def app_home() -> Path:
    override = os.environ.get("WORKBENCH_HOME")
    if override:
        return Path(override).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "ModelWorkbench"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "ModelWorkbench"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "model-workbench"


def models_dir() -> Path:
    """The app's own models folder (downloads, conversions, quantizations)."""
    return app_home() / "models"


def database_path() -> Path:
    return app_home() / "workbench.sqlite3"


def settings_path() -> Path:
    """INI file for window state and preferences (read through QSettings by the GUI)."""
    return app_home() / "settings.ini"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring HF_HUB_CACHE and HF_HOME like huggingface_hub does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_safely(path: Path, write: Callable, binary: bool) -> Path:
    """Run ``write(handle)`` on a temporary file next to ``path``, then rename it to ``path``: an export
    that fails (disk full, cancelled) leaves no half file. Raises ExportError naming what went wrong."""
    from runtime.errors import ExportError

    folder = path.parent
    if path.is_dir():
        raise ExportError(f"{path} is a folder.", path=path, hint="Give a file name to export to.")
    if not folder.is_dir():
        raise ExportError(f"The folder {folder} does not exist.", path=path,
                          hint="Choose an existing folder, or create it first.")
    # A plain open (not mkstemp) so the file gets the usual permissions, not mkstemp's owner-only ones.
    tmp_path = folder / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        handle = open(tmp_path, "xb") if binary else open(tmp_path, "x", encoding="utf-8", newline="")
    except OSError as exc:
        raise _export_error(path, exc) from exc
    try:
        with handle:
            write(handle)
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, ExportError):
            raise _export_error(path, exc) from exc
        raise
    return path


def _export_error(path: Path, exc: OSError):
    from runtime.errors import ExportError

    return ExportError(f"Cannot write {path}: {exc.strerror or exc}", path=path, errno=exc.errno)
