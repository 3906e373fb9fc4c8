"""Models added to the library by reference: files that stay where they are, remembered by path.

The list is a small JSON file in the app's folder (``library-references.json``), written to a
temporary name and renamed, so a crash never leaves half a list. The library scan includes these
files (``runtime.models.library.scan_library_report``); forgetting one never touches the file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from runtime import paths
from runtime.errors import ModelFileError, StoreError
from runtime.models.gguf_info import read_gguf_info
from runtime.models.library import is_inside, split_parts

FILE_NAME = "library-references.json"


def references_path() -> Path:
    return paths.app_home() / FILE_NAME


def load_references() -> list[Path]:
    """The referenced files, in the order they were added. A missing list is an empty one.

    Raises StoreError when the list exists but cannot be read (the scan names it as a problem).
    """
    path = references_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"Could not read the list of added models {path}: {exc.strerror or exc}",
                         path=path, hint="Check the file's permissions.") from None
    try:
        data = json.loads(text)
        files = data["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ValueError("'files' is not a list of paths")
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"The list of added models {path} is damaged ({exc})", path=path,
                         hint="Delete the file and add the models again.") from None
    return [Path(f) for f in files]


def _save(files: list[Path]) -> None:
    path = references_path()
    paths.ensure_dir(path.parent)
    data = json.dumps({"version": 1, "files": [os.fspath(f) for f in files]}, indent=1)
    fd, temp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def already_scanned(path: Path) -> bool:
    """True for files the library finds anyway: in the app's models folder or the Hugging Face cache."""
    return is_inside(path, paths.models_dir()) or is_inside(path, paths.hf_cache_dir())


def add_reference(path: str | os.PathLike) -> Path:
    """Remember ``path`` (a readable GGUF, the first part of a split model). Returns the absolute path.

    Raises ModelFileError (from ``read_gguf_info``) for a file that is not a usable GGUF, so nothing
    bad is ever added. A file the library scans anyway, or one already added, is not added twice.
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    parts = split_parts(path)
    if parts and parts[0] != path:
        raise ModelFileError(f"{path.name} is one part of a split model", path=path,
                             hint=f"Add its first part, {parts[0].name}; the other parts are found with it.")
    read_gguf_info(path)
    if already_scanned(path):
        return path
    files = load_references()
    if path not in files:
        _save([*files, path])
    return path


def forget_reference(path: str | os.PathLike) -> bool:
    """Drop ``path`` from the list (the file itself is left alone). False when it was not listed."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    files = load_references()
    if path not in files:
        return False
    _save([f for f in files if f != path])
    return True
