"""Download records, in the app's SQLite file (the same one as conversations). Qt-free, thread-safe.

One record per choice the person downloads (one file, or all parts of a split GGUF or checkpoint):
repo, revision, files (path, size, sha256), destination (None: the Hugging Face cache), status,
bytes done/total, the last error as a payload (``WorkbenchError.to_payload()``), the local paths once
done, and times. ``unfinished()`` lists what a restarted app or CLI should resume; the bytes
themselves live on disk as partial files that ``runtime.hub.download`` continues from.
Access tokens never go in this database.

Statuses: queued -> running -> done | paused (cancel that keeps the partial) | failed (keeps it too)
| cancelled (cancel for good: the partial was discarded). paused/failed/cancelled may be queued again.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from runtime.errors import DownloadError, StoreError, WorkbenchError, from_payload
from runtime.hub.types import RemoteFile
from runtime.store.database import Database

STATUSES = ("queued", "running", "paused", "failed", "done", "cancelled")
UNFINISHED = ("queued", "running", "paused")
_UNSET = object()


@dataclass
class DownloadRecord:
    id: int
    repo_id: str
    revision: str                  # as asked ("main", a tag or a commit)
    files: list[RemoteFile]
    dest: str | None               # a folder, or None for the Hugging Face cache
    status: str
    done_bytes: int
    total_bytes: int
    created_at: float
    updated_at: float
    label: str = ""                # what the person picked, e.g. "Q4_K_M" (for lists)
    commit_sha: str | None = None  # the commit the files came from, once known
    error: dict | None = None      # the last error's payload, or None
    paths: list[str] = field(default_factory=list)  # local paths, once done
    finished_at: float | None = None

    def error_object(self) -> WorkbenchError | None:
        """The last error rebuilt as its WorkbenchError class (kind, hint and facts kept)."""
        return from_payload(self.error, DownloadError) if self.error else None

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0


class DownloadStore(Database):
    """Download records in ``paths.database_path()`` (or ``path``); see the module docstring."""

    what = "download store"

    def add(self, repo_id: str, revision: str, files: list[RemoteFile], dest: str | None = None,
            label: str = "", status: str = "queued") -> DownloadRecord:
        """A new record for downloading ``files`` of ``repo_id`` at ``revision`` into ``dest``."""
        if not files:
            raise ValueError("A download needs at least one file.")
        _check_status(status)
        files_json = json.dumps([f.to_dict() for f in files])
        total = sum(int(f.size or 0) for f in files)
        with self._tx(write=True) as db:
            now = self._now()
            cur = db.execute(
                "INSERT INTO downloads (repo_id, revision, label, files_json, dest, status, total_bytes,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (repo_id, revision, label, files_json, _dest(dest), status, total, now, now))
            row = db.execute("SELECT * FROM downloads WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _record(row)

    def get(self, download_id: int) -> DownloadRecord:
        with self._tx() as db:
            row = db.execute("SELECT * FROM downloads WHERE id = ?", (download_id,)).fetchone()
        if row is None:
            raise _unknown(download_id, self.path)
        return _record(row)

    def records(self, statuses: tuple[str, ...] | None = None) -> list[DownloadRecord]:
        """Records in the order they were added, optionally only those with one of ``statuses``."""
        sql, args = "SELECT * FROM downloads", ()
        if statuses:
            for s in statuses:
                _check_status(s)
            sql += f" WHERE status IN ({', '.join('?' for _ in statuses)})"
            args = tuple(statuses)
        with self._tx() as db:
            rows = db.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [_record(r) for r in rows]

    def unfinished(self) -> list[DownloadRecord]:
        """Queued, running (the app that ran them stopped or crashed) and paused records, oldest first."""
        return self.records(UNFINISHED)

    def find_unfinished(self, repo_id: str, file_paths: list[str], dest: str | None = None) -> DownloadRecord | None:
        """The newest record that is not done or cancelled for the same repo, files and destination
        (so running the same download again continues its record)."""
        wanted = sorted(file_paths)
        for record in reversed(self.records(("queued", "running", "paused", "failed"))):
            if (record.repo_id == repo_id and record.dest == _dest(dest)
                    and sorted(f.path for f in record.files) == wanted):
                return record
        return None

    def update(self, download_id: int, *, status: str | None = None, done_bytes: int | None = None,
               total_bytes: int | None = None, error=_UNSET, paths: list | None = None,
               commit_sha: str | None = None, files: list[RemoteFile] | None = None) -> DownloadRecord:
        """Change some fields. ``error``: a WorkbenchError, a payload dict, or None to clear it.

        Status "running" or "queued" clears the last error; "done" sets ``finished_at``.
        """
        columns: dict[str, object] = {}
        if status is not None:
            columns["status"] = _check_status(status)
            if status in ("running", "queued") and error is _UNSET:
                columns["error_json"] = None
            columns["finished_at"] = self._now() if status == "done" else None
        if done_bytes is not None:
            columns["done_bytes"] = int(done_bytes)
        if total_bytes is not None:
            columns["total_bytes"] = int(total_bytes)
        if error is not _UNSET:
            payload = error.to_payload() if isinstance(error, WorkbenchError) else error
            columns["error_json"] = json.dumps(payload) if payload is not None else None
        if paths is not None:
            columns["paths_json"] = json.dumps([str(p) for p in paths])
        if commit_sha is not None:
            columns["commit_sha"] = commit_sha
        if files is not None:
            columns["files_json"] = json.dumps([f.to_dict() for f in files])
        with self._tx(write=True) as db:
            columns["updated_at"] = self._now()
            assignments = ", ".join(f"{name} = ?" for name in columns)
            cur = db.execute(f"UPDATE downloads SET {assignments} WHERE id = ?", (*columns.values(), download_id))
            if cur.rowcount == 0:
                raise _unknown(download_id, self.path)
            row = db.execute("SELECT * FROM downloads WHERE id = ?", (download_id,)).fetchone()
        return _record(row)

    def delete(self, download_id: int) -> None:
        """Forget a record (the files it downloaded stay on disk)."""
        with self._tx(write=True) as db:
            if db.execute("DELETE FROM downloads WHERE id = ?", (download_id,)).rowcount == 0:
                raise _unknown(download_id, self.path)


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"Unknown download status {status!r}; expected one of {', '.join(STATUSES)}.")
    return status


def _dest(dest) -> str | None:
    return str(dest) if dest is not None else None


def _unknown(download_id: int, path) -> StoreError:
    return StoreError(f"No download with id {download_id} in {path}.", path=path,
                      hint="It may have been removed from the list.", download_id=download_id)


def _record(row: sqlite3.Row) -> DownloadRecord:
    files = [RemoteFile(**{k: v for k, v in f.items() if k in ("path", "size", "sha256", "blob_id")})
             for f in json.loads(row["files_json"])]
    return DownloadRecord(
        id=row["id"], repo_id=row["repo_id"], revision=row["revision"], files=files, dest=row["dest"],
        status=row["status"], done_bytes=row["done_bytes"], total_bytes=row["total_bytes"],
        created_at=row["created_at"], updated_at=row["updated_at"], label=row["label"],
        commit_sha=row["commit_sha"], error=json.loads(row["error_json"]) if row["error_json"] else None,
        paths=json.loads(row["paths_json"] or "[]"), finished_at=row["finished_at"])


# -- running a recorded download (the Models tab and `workbench download` share it) ----------------

STORE_EVERY_S = 1.0   # how often the bytes done reach the record while a download runs


def run_recorded(store: DownloadStore | None, record: DownloadRecord, *, token=None, progress=None,
                 cancel=None, after_cancel=lambda: "pause") -> list:
    """Download ``record``'s files, keeping its status and bytes in ``store``; returns the local paths.

    ``store`` None (the database could not be opened) downloads without a record. A busy database
    never stops the download: an update that cannot be written is skipped, the next one catches up.
    On Cancelled, ``after_cancel()`` says what the cancel meant: "pause" (keep the partial: paused),
    "shutdown" (keep it: queued, so the next start resumes it) or "cancel" (discard it: cancelled).
    A failure is recorded with its error (``failed``, the partial kept) and raised.
    """
    import time

    from runtime.errors import Cancelled
    from runtime.hub.download import bytes_on_disk, discard_partial, download_files
    from runtime.jobs import no_progress

    progress = progress or no_progress
    revision = record.revision  # as asked: the cache's refs/<revision> then points at what came
    last = [0.0]

    def update(**fields) -> None:
        if store is None:
            return
        try:
            store.update(record.id, **fields)
        except StoreError:
            pass  # a busy or failing database: the next update (or the next run) records it

    def report(done: float, total: float, message: str) -> None:
        progress(done, total, message)
        now = time.monotonic()
        if now - last[0] >= STORE_EVERY_S:
            last[0] = now
            update(done_bytes=int(done), total_bytes=int(total))

    def kept() -> int:
        try:
            return bytes_on_disk(record.repo_id, record.files, revision, record.dest)
        except OSError:
            return 0

    update(status="running")
    try:
        local = download_files(record.repo_id, record.files, revision=revision, dest=record.dest,
                               token=token, progress=report, cancel=cancel)
    except Cancelled:
        why = after_cancel()
        if why == "cancel":
            discard_partial(record.repo_id, record.files, revision, record.dest)
            update(status="cancelled", done_bytes=0)
        else:
            update(status="queued" if why == "shutdown" else "paused", done_bytes=kept())
        raise
    except BaseException as exc:
        update(status="failed", done_bytes=kept(), error=exc if isinstance(exc, WorkbenchError) else None)
        raise
    update(status="done", done_bytes=record.total_bytes, total_bytes=record.total_bytes,
           paths=[str(p) for p in local], commit_sha=record.commit_sha or _commit_in(local))
    if record.dest is not None:
        _add_to_library(local)
    return local


def _add_to_library(local: list) -> None:
    """Models saved into a folder of the person's choosing join the library by reference."""
    from pathlib import Path

    from runtime.errors import ModelFileError
    from runtime.models.library import is_candidate
    from runtime.models.references import add_reference

    for path in local:
        if is_candidate(Path(path)):
            try:
                add_reference(path)
            except (ModelFileError, OSError):
                pass  # not a usable model on its own (e.g. a later split part): the files are there anyway


def _commit_in(local: list) -> str | None:
    """The commit folder a file in the Hugging Face cache sits in (``snapshots/<commit>/...``), if any."""
    import re
    from pathlib import Path

    for path in local:
        parts = Path(path).parts
        if "snapshots" in parts:
            i = parts.index("snapshots")
            if i + 1 < len(parts) and re.fullmatch(r"[0-9a-f]{40}", parts[i + 1]):
                return parts[i + 1]
    return None
