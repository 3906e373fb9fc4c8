"""The download queue: one controller that owns the download workers and keeps the store in step.

``DownloadController(store)`` runs ``runtime.store.downloads.run_recorded`` for each queued record,
``max_parallel`` at a time, on workers. Every store write happens on those workers (the UI thread
never waits on the database): "running" at the start, the bytes done about once a second, and the
outcome. Pause cancels the worker and keeps the partial file (status "paused"); Cancel also deletes
it (``discard_partial``, status "cancelled"); closing the app leaves running downloads "queued".
``restore()`` on start brings back what the store holds unfinished: queued and running records start
again (continuing from the bytes on disk), paused ones wait for Resume, failed ones offer Retry.

Signals (DESIGN.md, one controller per journey): ``sig_progress(id, done, total, message)``,
``sig_done(id, paths)``, ``sig_failed(id, error)``, ``sig_cancelled(id, status)`` with status
"paused" or "cancelled", and ``sig_changed(record)`` whenever a record's status changes.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from runtime.errors import WorkbenchError
from widgets.workers import Worker

SHOWN_ON_START = ("queued", "running", "paused", "failed")


def run_download(store, record_id: int, intent: dict, job) -> list[Path]:
    """Download one record's files, writing its status and bytes to ``store``. Runs on a worker.

    ``intent["why"]`` says what a cancel means: "pause" (keep the partial), "cancel" (discard it) or
    "shutdown" (keep it and leave the record queued for the next start).
    """
    from runtime.store.downloads import run_recorded

    local = run_recorded(store, store.get(record_id), progress=job.progress, cancel=job.cancel,
                         after_cancel=lambda: intent.get("why", "pause"))
    return [Path(p) for p in local]


def discard_record(store, record_id: int) -> None:
    """Cancel a download that is not running: delete its partial files, mark it cancelled."""
    from runtime.hub.download import discard_partial

    record = store.get(record_id)
    discard_partial(record.repo_id, record.files, record.commit_sha or record.revision, record.dest)
    store.update(record_id, status="cancelled", done_bytes=0)


class DownloadController(QObject):
    """The queue of downloads of one window; see the module docstring."""

    sig_added = Signal(object)                   # DownloadRecord
    sig_changed = Signal(object)                 # DownloadRecord (its status changed)
    sig_progress = Signal(int, float, float, str)
    sig_done = Signal(int, list)                 # id, local paths
    sig_failed = Signal(int, object)             # id, error object
    sig_cancelled = Signal(int, str)             # id, "paused" | "cancelled"
    sig_removed = Signal(int)
    sig_store_error = Signal(object)             # a StoreError from a write on the UI thread (busy database)

    def __init__(self, store, parent=None, max_parallel: int = 1):
        super().__init__(parent)
        self.store = store
        self.max_parallel = max_parallel
        self.records: dict[int, object] = {}     # id -> the DownloadRecord as last known here
        self._order: list[int] = []              # ids in the order they were added
        self._running: dict[int, tuple[Worker, dict]] = {}
        self._side: list[Worker] = []            # short jobs: discarding a partial
        self._closing = False

    # -- what there is ----------------------------------------------------------------------------

    def ids(self) -> list[int]:
        return list(self._order)

    def is_running(self, download_id: int) -> bool:
        return download_id in self._running

    def restore(self) -> list[int]:
        """Show the store's unfinished and failed records; start the queued and running ones again."""
        for record in self.store.records(SHOWN_ON_START):
            if record.id in self.records:
                continue
            if record.status == "running":   # the app that ran it stopped: continue from the bytes on disk
                record.status = "queued"
            self._remember(record)
        self._pump()
        return self.ids()

    # -- asking -----------------------------------------------------------------------------------

    def enqueue(self, repo_id: str, revision: str, files: list, label: str = "", dest: str | None = None):
        """Queue the download of ``files`` (one choice); the same unfinished one is continued, not doubled."""
        existing = self.store.find_unfinished(repo_id, [f.path for f in files], dest)
        if existing is not None and existing.id in self._running:
            return existing
        if existing is not None:
            record = self.store.update(existing.id, status="queued")
        else:
            record = self.store.add(repo_id, revision, files, dest=dest, label=label)
        if record.id in self.records:
            self._set(record)
        else:
            self._remember(record)
        self._pump()
        return record

    def pause(self, download_id: int) -> bool:
        """Stop a running or queued download, keeping what it has (Resume continues it)."""
        if download_id in self._running:
            worker, intent = self._running[download_id]
            intent["why"] = "pause"
            worker.cancel()
            return True
        record = self.records.get(download_id)
        if record is None or record.status != "queued" or not self._write(download_id, status="paused"):
            return False
        self.sig_cancelled.emit(download_id, "paused")
        return True

    def resume(self, download_id: int) -> bool:
        """Queue a paused or failed download again; it continues from the bytes on disk."""
        record = self.records.get(download_id)
        if record is None or download_id in self._running or record.status not in ("paused", "failed", "cancelled"):
            return False
        if not self._write(download_id, status="queued"):
            return False
        self._pump()
        return True

    def cancel(self, download_id: int) -> bool:
        """Stop a download for good and delete its partial files."""
        if download_id in self._running:
            worker, intent = self._running[download_id]
            intent["why"] = "cancel"
            worker.cancel()
            return True
        record = self.records.get(download_id)
        if record is None or record.status in ("done", "cancelled"):
            return False
        worker = Worker(lambda job: discard_record(self.store, download_id), name="download-discard")
        worker.sig_done.connect(lambda _r: self._after_discard(download_id))
        worker.sig_failed.connect(lambda error: self.sig_failed.emit(download_id, error))
        worker.sig_finished.connect(lambda: self._side.remove(worker) if worker in self._side else None)
        self._side.append(worker)
        worker.start()
        return True

    def remove(self, download_id: int) -> bool:
        """Take a finished, failed or cancelled download off the list (its files stay)."""
        record = self.records.get(download_id)
        if record is None or download_id in self._running or record.status in ("queued", "running", "paused"):
            return False
        self.records.pop(download_id)
        self._order.remove(download_id)
        self.sig_removed.emit(download_id)
        return True

    # -- running ----------------------------------------------------------------------------------

    def _pump(self) -> None:
        if self._closing:
            return
        for download_id in self._order:
            if len(self._running) >= self.max_parallel:
                return
            record = self.records[download_id]
            if record.status == "queued" and download_id not in self._running:
                self._start(download_id)

    def _start(self, download_id: int) -> None:
        intent: dict = {}
        worker = Worker(lambda job: run_download(self.store, download_id, intent, job), name="download")
        worker.sig_progress.connect(lambda done, total, text: self._on_progress(download_id, done, total, text))
        worker.sig_done.connect(lambda local: self._on_done(download_id, local))
        worker.sig_failed.connect(lambda error: self._on_failed(download_id, error))
        worker.sig_cancelled.connect(lambda: self._on_cancelled(download_id, intent.get("why", "pause")))
        worker.sig_finished.connect(lambda: self._on_finished(download_id))
        self._running[download_id] = (worker, intent)
        record = self.records[download_id]
        record.status = "running"
        self.sig_changed.emit(record)
        worker.start()

    def _on_progress(self, download_id: int, done: float, total: float, text: str) -> None:
        record = self.records.get(download_id)
        if record is not None:
            record.done_bytes, record.total_bytes = int(done), int(total) or record.total_bytes
        self.sig_progress.emit(download_id, done, total, text)

    def _on_done(self, download_id: int, local: list) -> None:
        record = self.records[download_id]
        record.status, record.paths, record.error = "done", [str(p) for p in local], None
        record.done_bytes = record.total_bytes
        self.sig_changed.emit(record)
        self.sig_done.emit(download_id, list(local))

    def _on_failed(self, download_id: int, error) -> None:
        record = self.records[download_id]
        record.status = "failed"
        record.error = error.to_payload() if isinstance(error, WorkbenchError) else {"message": str(error)}
        self.sig_changed.emit(record)
        self.sig_failed.emit(download_id, error)

    def _on_cancelled(self, download_id: int, why: str) -> None:
        record = self.records[download_id]
        if why == "shutdown":
            record.status = "queued"
            return
        record.status = "cancelled" if why == "cancel" else "paused"
        if why == "cancel":
            record.done_bytes = 0
        self.sig_changed.emit(record)
        self.sig_cancelled.emit(download_id, record.status)

    def _on_finished(self, download_id: int) -> None:
        self._running.pop(download_id, None)
        self._pump()

    def _after_discard(self, download_id: int) -> None:
        record = self.records.get(download_id)
        if record is not None:
            record.status, record.done_bytes = "cancelled", 0
            self.sig_changed.emit(record)
        self.sig_cancelled.emit(download_id, "cancelled")

    # -- bookkeeping ------------------------------------------------------------------------------

    def _remember(self, record) -> None:
        self.records[record.id] = record
        self._order.append(record.id)
        self.sig_added.emit(record)

    def _write(self, download_id: int, **changes) -> bool:
        """Change a record from the UI thread (the store waits briefly there); False when it is busy."""
        from runtime.errors import StoreError

        try:
            self._set(self.store.update(download_id, **changes))
        except StoreError as exc:
            self.sig_store_error.emit(exc)
            return False
        return True

    def _set(self, record) -> None:
        self.records[record.id] = record
        self.sig_changed.emit(record)

    def shutdown(self) -> None:
        """Stop every download, keeping its bytes; the records stay queued for the next start."""
        self._closing = True
        for worker, intent in list(self._running.values()):
            intent["why"] = "shutdown"
            worker.cancel()
        for worker, _intent in list(self._running.values()):
            worker.wait()
        for worker in list(self._side):
            worker.wait()
