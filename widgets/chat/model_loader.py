"""Getting the chat a model to talk to, without blocking the UI.

For a local model: judge the fit on a worker (GGUF header + ``runtime.models.hardware.check_fit``), ask
the user when the verdict is "too big", then let the ``ChatSession`` start the engine. For a remote
server: check the address at once (``runtime.engine.client.check_base_url``, the check every
ChatClient makes), then let the session check the server; what is loaded stays loaded until the new
target is ready. ``sig_busy(text)`` says what is happening, ``sig_failed(error)`` carries the error
object, ``sig_idle`` follows every outcome (ready, failed or cancelled).
"""
from __future__ import annotations


from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from runtime.engine.types import LoadOptions
from widgets.chat.session import ChatSession, model_label
from widgets.workers import Worker


def judge_fit(model_path: str, n_ctx: int, info=None):
    """Worker body: the fit verdict for loading this model at this context length."""
    return _read_and_judge(model_path, n_ctx, info)[1]


def _read_and_judge(model_path: str, n_ctx: int, info=None):
    """Worker body: (the GGUF header, the fit verdict at this context length)."""
    from runtime.models.gguf_info import read_gguf_info
    from runtime.models.hardware import check_fit

    info = info if info is not None else read_gguf_info(model_path)
    return info, check_fit(info, n_ctx)


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
        worker = Worker(lambda job: _read_and_judge(model_path, options.n_ctx, info), name="fit-check")
        worker.sig_done.connect(lambda result: self._after_fit(model_path, options, *result))
        worker.sig_failed.connect(self._on_failed)
        worker.sig_cancelled.connect(self.sig_idle)
        self._fit_worker = worker
        worker.start()
        return True

    def connect_remote(self, base_url: str, api_key: str = "", model: str = "", name: str = "",
                       server_id: int | None = None, key_lookup=None) -> bool:
        """Check the address (at once, in words), then the server off the UI thread; False if busy or
        the address is wrong (``sig_failed`` then says why). Nothing that is loaded is touched."""
        if self.busy:
            return False
        from runtime.engine.client import check_base_url
        from runtime.errors import RemoteServerError

        try:
            base_url = check_base_url(base_url)
        except RemoteServerError as exc:
            self.sig_failed.emit(exc)
            return False
        self.sig_busy.emit(f"Connecting to {name or base_url}…")
        self.session.connect_remote(base_url, api_key, model, name=name, server_id=server_id,
                                    key_lookup=key_lookup)
        return True

    def reload(self) -> bool:
        """Start a fresh engine with the model and options of the one that stopped."""
        if self.busy or self.session.engine is None or not self.session.local_model_ref:
            return False
        self.sig_busy.emit(f"Reloading {self.session.local_label}…")
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

    def _after_fit(self, model_path: str, options: LoadOptions, info, verdict) -> None:
        if verdict.status == "too_big" and not self.confirm_too_big(verdict):
            self.sig_idle.emit()
            return
        label = model_label(model_path, getattr(info, "file_type", "") or "")
        self.sig_busy.emit(f"Loading {label}…")
        self.session.load_local(model_path, options, label)

    def _on_failed(self, error) -> None:
        self.sig_failed.emit(error)
        self.sig_idle.emit()
