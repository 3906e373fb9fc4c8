"""Getting the chat a model to talk to, without blocking the UI.

For a local model: judge the fit on a worker (GGUF header + ``runtime.models.hardware.check_fit``), ask
the user when the verdict is "too big", then let the ``ChatSession`` start the engine. For a remote
server: let the session check it. ``sig_busy(text)`` says what is happening, ``sig_failed(error)``
carries the error object, ``sig_idle`` follows every outcome (ready, failed or cancelled).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from runtime.engine.types import LoadOptions
from widgets.chat.session import ChatSession
from widgets.workers import Worker


def judge_fit(model_path: str, n_ctx: int, info=None):
    """Worker body: the fit verdict for loading this model at this context length."""
    from runtime.models.gguf_info import read_gguf_info
    from runtime.models.hardware import check_fit

    return check_fit(info if info is not None else read_gguf_info(model_path), n_ctx)


class ModelLoader(QObject):
    """Fit check, confirmation, and load/connect requests for one ChatSession."""

    sig_busy = Signal(str)
    sig_idle = Signal()
    sig_failed = Signal(object)

    def __init__(self, session: ChatSession, dialog_parent: QWidget):
        super().__init__(dialog_parent)
        self.session = session
        self._dialog_parent = dialog_parent
        self._fit_worker: Worker | None = None
        session.sig_ready.connect(self.sig_idle)
        session.sig_load_failed.connect(self._on_failed)
        session.sig_load_cancelled.connect(self.sig_idle)

    @property
    def busy(self) -> bool:
        """True while a fit check, a load or a server check runs (or a reply is being generated)."""
        checking = self._fit_worker is not None and self._fit_worker.running
        return checking or self.session.loading or self.session.generating

    def load_local(self, model_path: str, options: LoadOptions, info=None) -> bool:
        """Judge the fit off the UI thread, ask if it is too big, then start the engine."""
        if self.busy:
            return False
        self.sig_busy.emit("Checking memory…")
        worker = Worker(lambda job: judge_fit(model_path, options.n_ctx, info), name="fit-check")
        worker.sig_done.connect(lambda verdict: self._after_fit(model_path, options, verdict))
        worker.sig_failed.connect(self._on_failed)
        worker.sig_cancelled.connect(self.sig_idle)
        self._fit_worker = worker
        worker.start()
        return True

    def connect_remote(self, base_url: str, api_key: str = "", model: str = "") -> bool:
        if self.busy:
            return False
        self.sig_busy.emit(f"Connecting to {base_url}…")
        self.session.connect_remote(base_url, api_key, model)
        return True

    def reload(self) -> bool:
        """Start a fresh engine with the model and options of the one that stopped."""
        if self.busy or self.session.backend != "local" or not self.session.model_ref:
            return False
        self.sig_busy.emit(f"Reloading {Path(self.session.model_ref).stem}…")
        return self.session.reload()

    def cancel(self) -> None:
        if self._fit_worker is not None:
            self._fit_worker.cancel()
        self.session.cancel_load()

    def confirm_too_big(self, verdict) -> bool:
        """Ask whether to load a model that will probably not fit. Tests may replace this."""
        from runtime.models.gguf_info import format_size

        answer = QMessageBox.warning(
            self._dialog_parent, "This model is probably too big",
            f"{verdict.message}\n\nNeeded: about {format_size(verdict.needed_bytes)}; "
            f"available: {format_size(verdict.available_bytes)}.\n\n"
            "Loading it may make the computer very slow or fail. Load anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def shutdown(self) -> None:
        if self._fit_worker is not None:
            self._fit_worker.cancel()
            self._fit_worker.wait()

    def _after_fit(self, model_path: str, options: LoadOptions, verdict) -> None:
        if verdict.status == "too_big" and not self.confirm_too_big(verdict):
            self.sig_idle.emit()
            return
        self.sig_busy.emit(f"Loading {Path(model_path).stem}…")
        self.session.load_local(model_path, options)

    def _on_failed(self, error) -> None:
        self.sig_failed.emit(error)
        self.sig_idle.emit()
