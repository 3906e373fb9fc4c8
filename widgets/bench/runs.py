"""The Benchmark tab's controller: one run at a time, off the UI thread, rows as they finish.

``start(...)`` runs ``runtime.bench.run.run_benchmark`` on a Worker with the tab's ``BenchStore``
(each final row is stored as it comes, so a cancel keeps the complete ones). Signals:
``sig_progress(done, total, message)``, ``sig_result(VariantResult)`` for each final row,
``sig_done(BenchRun)``, ``sig_failed(error)``, ``sig_cancelled()``.
"""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal

from widgets.workers import Worker


class BenchController(QObject):
    sig_progress = Signal(float, float, str)
    sig_result = Signal(object)
    sig_done = Signal(object)
    sig_failed = Signal(object)
    sig_cancelled = Signal()

    def __init__(self, store=None, parent: QObject | None = None):
        super().__init__(parent)
        self.store = store               # a BenchStore, or None: nothing is kept
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._inbox: list = []           # rows finished on the worker thread, not yet delivered

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.running

    def start(self, paths: list[str], options, *, quality: bool, text_path: str | None = None,
              reference_path: str | None = None, original: str | None = None,
              original_precisions=("fp32", "bf16", "int8")) -> bool:
        """Measure ``paths`` (and the ``original`` checkpoint in PyTorch); False when a run is already going."""
        if self.running:
            return False
        from runtime.bench.run import run_benchmark

        store = self.store

        def received(row) -> None:
            with self._lock:
                self._inbox.append(row)

        worker = Worker(lambda job: run_benchmark(paths, options, quality=quality, text_path=text_path,
                                                  reference_path=reference_path, store=store,
                                                  on_result=received, original=original,
                                                  original_precisions=tuple(original_precisions),
                                                  progress=job.progress, cancel=job.cancel),
                        name="benchmark")
        worker.sig_progress.connect(self._on_progress)
        worker.sig_done.connect(lambda run: (self._deliver(), self.sig_done.emit(run)))
        worker.sig_failed.connect(lambda error: (self._deliver(), self.sig_failed.emit(error)))
        worker.sig_cancelled.connect(lambda: (self._deliver(), self.sig_cancelled.emit()))
        self._worker = worker
        worker.start()
        return True

    def _on_progress(self, done: float, total: float, message: str) -> None:
        self._deliver()
        self.sig_progress.emit(done, total, message)

    def _deliver(self) -> None:
        with self._lock:
            rows, self._inbox = self._inbox, []
        for row in rows:
            self.sig_result.emit(row)

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def shutdown(self) -> None:
        """Cancel the run (its complete rows stay stored) and join its thread."""
        if self._worker is not None:
            self._worker.cancel()
            self._worker.wait()
