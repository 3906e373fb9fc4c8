"""The one way the GUI runs long work off the UI thread.

``Worker(fn)`` runs ``fn(job)`` on its own ``QThread``. ``job`` is a :class:`Job`: it carries the
cancel token and two thread-safe callbacks, ``job.progress(done, total, message)`` and
``job.text(piece)``, so a plain runtime function is adapted with a lambda::

    worker = Worker(lambda job: client.stream_chat(msgs, params, on_text=job.text, cancel=job.cancel))
    worker.sig_text.connect(view.append_stream_text)
    worker.sig_done.connect(on_reply)
    worker.start()

The worker thread never touches widgets and never emits per-token signals: it only appends to a
buffer. A QTimer on the UI thread flushes that buffer every ``FLUSH_MS`` as one ``sig_text`` and the
latest progress as one ``sig_progress``, so a fast model cannot flood the event loop. When ``fn``
ends, exactly one of ``sig_done(result)``, ``sig_failed(error)`` or ``sig_cancelled()`` follows the
last flush; ``sig_finished()`` comes after it. Errors arrive as exception objects, never strings.

Every started worker is tracked until its thread has been joined; ``shutdown_all()`` cancels and
joins them (the main window calls it on close) and ``running_workers()`` lets tests catch leaks.
"""
from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from runtime.errors import Cancelled, WorkbenchError
from runtime.jobs import CancelToken

FLUSH_MS = 40

_live: set["Worker"] = set()


class Job:
    """What the function running in a worker thread gets: cancel token, progress and text sinks."""

    def __init__(self) -> None:
        self.cancel = CancelToken()
        self._lock = threading.Lock()
        self._pieces: list[str] = []
        self._progress: tuple[float, float, str] | None = None

    def progress(self, done: float, total: float, message: str = "") -> None:
        """Record the latest progress; only the newest value per flush reaches the UI."""
        with self._lock:
            self._progress = (float(done), float(total), str(message))

    def text(self, piece: str) -> None:
        """Buffer a piece of streamed text; pieces are joined and delivered every FLUSH_MS."""
        if piece:
            with self._lock:
                self._pieces.append(piece)

    def take(self) -> tuple[str, tuple[float, float, str] | None]:
        """Hand the buffered text and progress to the UI side and clear them."""
        with self._lock:
            text, self._pieces = "".join(self._pieces), []
            progress, self._progress = self._progress, None
        return text, progress


class _FunctionThread(QThread):
    """Runs ``fn(job)`` once and keeps the outcome for the UI side to read after ``finished``."""

    def __init__(self, fn: Callable[[Job], Any], job: Job):
        super().__init__()
        self._fn = fn
        self._job = job
        self.outcome: tuple[str, Any] = ("failed", RuntimeError("the worker never ran"))

    def run(self) -> None:  # noqa: D102 - runs on the worker thread
        try:
            self.outcome = ("done", self._fn(self._job))
        except Cancelled:
            self.outcome = ("cancelled", None)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the UI as an object
            if not isinstance(exc, WorkbenchError):
                traceback.print_exc()
            self.outcome = ("failed", exc)


class Worker(QObject):
    """Runs one plain function on a QThread and reports back through queued, throttled signals."""

    sig_progress = Signal(float, float, str)
    sig_text = Signal(str)
    sig_done = Signal(object)
    sig_failed = Signal(object)
    sig_cancelled = Signal()
    sig_finished = Signal()

    def __init__(self, fn: Callable[[Job], Any], name: str = ""):
        # No Qt parent on purpose: the worker must outlive any widget until its thread is joined.
        super().__init__()
        self.name = name or getattr(fn, "__name__", "worker")
        self.job = Job()
        self._thread = _FunctionThread(fn, self.job)
        self._thread.setObjectName(self.name)
        self._thread.finished.connect(self._on_thread_finished)
        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self._flush)
        self._started = False
        self._ended = False

    # -- control (UI thread) --------------------------------------------------------------------

    def start(self) -> "Worker":
        if self._started:
            raise RuntimeError(f"worker {self.name!r} was already started")
        self._started = True
        _live.add(self)
        self._timer.start()
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the function to stop (it polls ``job.cancel``); the outcome signal still follows."""
        self.job.cancel.cancel()

    @property
    def running(self) -> bool:
        return self._started and not self._ended

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the thread ends, then deliver the outcome. True when it has ended."""
        if not self._started:
            return True
        if not self._thread.wait(timeout_ms):
            return False
        self._on_thread_finished()
        return True

    # -- delivery (UI thread) -------------------------------------------------------------------

    def _flush(self) -> None:
        text, progress = self.job.take()
        if progress is not None:
            self.sig_progress.emit(*progress)
        if text:
            self.sig_text.emit(text)

    def _on_thread_finished(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._timer.stop()
        self._thread.wait()
        self._flush()
        kind, value = self._thread.outcome
        try:
            if kind == "done":
                self.sig_done.emit(value)
            elif kind == "cancelled":
                self.sig_cancelled.emit()
            else:
                self.sig_failed.emit(value)
            self.sig_finished.emit()
        finally:
            _live.discard(self)


def run_in_thread(fn: Callable[[Job], Any], *, on_done=None, on_failed=None, on_cancelled=None,
                  on_text=None, on_progress=None, name: str = "") -> Worker:
    """Create, connect and start a Worker in one call; returns it (keep it to cancel it)."""
    worker = Worker(fn, name=name)
    for signal, slot in ((worker.sig_done, on_done), (worker.sig_failed, on_failed),
                         (worker.sig_cancelled, on_cancelled), (worker.sig_text, on_text),
                         (worker.sig_progress, on_progress)):
        if slot is not None:
            signal.connect(slot)
    return worker.start()


def running_workers() -> list[Worker]:
    """Workers started and not yet joined (tests use it to catch leaked threads)."""
    return list(_live)


def shutdown_all(timeout_ms: int = 15_000) -> list[Worker]:
    """Cancel every live worker and join its thread. Returns those that would not stop in time."""
    stuck = []
    for worker in list(_live):
        worker.cancel()
    for worker in list(_live):
        if not worker.wait(timeout_ms):
            stuck.append(worker)
    return stuck


def error_text(error: BaseException) -> str:
    """What the UI shows for a failure: the error's own message and hint, or a plain fallback (the
    technical name and text of an unexpected error are in ``error_details``)."""
    if isinstance(error, WorkbenchError):
        return error.user_text()
    return ("Something unexpected went wrong, and the task stopped. Nothing you made was changed. "
            "If it happens again, copy the details into a bug report.")


def error_details(error: BaseException) -> str:
    """The technical side of a failure, for the Details button: its class, file and facts (the system's
    own message, the engine's log, ...), one per line. '' for an expected error that has nothing more
    to tell than its message (a typo in an address): no Details button then."""
    lines = [f"{type(error).__module__}.{type(error).__qualname__}"]
    if isinstance(error, WorkbenchError):
        lines[0] += f" (kind: {error.kind})"
        if error.path:
            lines.append(f"File: {error.path}")
        for key, value in error.facts.items():
            text = str(value).strip()
            if text and key not in ("partial_reply", "turn"):
                lines.append(f"{key}: {text}" if "\n" not in text else f"{key}:\n{text}")
    else:
        lines[0] = f"{type(error).__name__}: {error} ({lines[0]})"
    cause = error.__cause__ or error.__context__
    if cause is not None and "details" not in getattr(error, "facts", {}):
        lines.append(f"Caused by {type(cause).__name__}: {cause}")
    return "\n".join(lines) if len(lines) > 1 or not isinstance(error, WorkbenchError) else ""
