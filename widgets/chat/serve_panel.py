""""Serve to other apps": the loaded local model's OpenAI-compatible API for other programs.

Off by default. When switched on, the chat session's local engine opens a second listener
(``LocalEngine.serve``) on 127.0.0.1 and the port shown, with an API key of its own (random, one per
window, so other apps keep working after a model reload); the panel then shows the base URL, the key
and a ready ``curl`` line, each with a Copy button. Another address than this computer's own is
served only after the person typed it and confirmed a warning (``confirm_public``, replaceable in
tests). Errors (port taken, no such address) are shown in words and leave the switch off.

The panel only reads ``session.engine``; when that engine is replaced or stops, serving ends with it
and the panel turns off and says so. Every blocking call runs on a Worker.

Test hooks: ``switch``, ``port``, ``address``, ``url``, ``key``, ``curl``, ``status``, ``served``,
``confirm_public``; signals ``sig_serving(ServedApi)``, ``sig_stopped(reason)``, ``sig_failed(error)``.
"""
from __future__ import annotations

import secrets

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QMessageBox, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from runtime.engine.local import is_loopback
from widgets.workers import Worker, error_text

DEFAULT_PORT = 8080   # llama-server's, so tools set up for it work unchanged
DEFAULT_HOST = "127.0.0.1"
INTRO = ("Lets other programs on this computer (editors, scripts, other chat apps) use the loaded model "
         "through an OpenAI-compatible API.")


class ServePanel(QGroupBox):
    """The switch, where to listen, and (while on) the URL, key and curl line to copy."""

    sig_serving = Signal(object)   # runtime.engine.local.ServedApi
    sig_stopped = Signal(str)      # why serving ended, in words
    sig_failed = Signal(object)    # the error that kept it from starting

    def __init__(self, session, parent: QWidget | None = None):
        super().__init__("Serve to other apps", parent)
        self.session = session
        self.api_key = secrets.token_urlsafe(24)
        self.served = None            # the ServedApi while on
        self._engine = None           # the LocalEngine it is served from (or being switched on)
        self._worker: Worker | None = None
        self._quiet: list[Worker] = []  # unserve calls whose outcome nobody waits for

        self.switch = QCheckBox("Serve the loaded model to other apps")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(DEFAULT_PORT)
        self.address = QLineEdit(DEFAULT_HOST)
        self.address.setToolTip("127.0.0.1: this computer only. Another address lets other computers reach "
                                "the model; you will be asked to confirm.")
        self.status = QLabel(INTRO)
        self.status.setWordWrap(True)
        self.url = QLineEdit()
        self.key = QLineEdit()
        self.curl = QPlainTextEdit()
        self.curl.setMaximumHeight(80)
        for field in (self.url, self.key, self.curl):
            field.setReadOnly(True)
        self.copy_url = QPushButton("Copy")
        self.copy_key = QPushButton("Copy")
        self.copy_curl = QPushButton("Copy curl")

        where = QFormLayout()
        where.addRow("Address", self.address)
        where.addRow("Port", self.port)
        self.details = QWidget()
        rows = QVBoxLayout(self.details)
        rows.setContentsMargins(0, 0, 0, 0)
        for label, field, button in (("Base URL", self.url, self.copy_url), ("API key", self.key, self.copy_key)):
            row = QHBoxLayout()
            row.addWidget(QLabel(label))
            row.addWidget(field, 1)
            row.addWidget(button)
            rows.addLayout(row)
        rows.addWidget(QLabel("Try it in a terminal:"))
        rows.addWidget(self.curl)
        rows.addWidget(self.copy_curl)
        self.details.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.switch)
        layout.addLayout(where)
        layout.addWidget(self.status)
        layout.addWidget(self.details)

        self.switch.toggled.connect(self._on_toggled)
        self.copy_url.clicked.connect(lambda: self._copy(self.url.text()))
        self.copy_key.clicked.connect(lambda: self._copy(self.key.text()))
        self.copy_curl.clicked.connect(lambda: self._copy(self.curl.toPlainText()))
        for signal in (session.sig_ready, session.sig_busy_changed):
            signal.connect(self._check_engine)
        session.sig_engine_died.connect(lambda _error: self._check_engine())
        self._update_controls()

    # -- the person's choices -------------------------------------------------------------------

    def confirm_public(self, host: str) -> bool:
        """Ask before serving beyond this computer. Tests may replace this."""
        answer = QMessageBox.warning(
            self, "Serve to other computers?",
            f"Serving on {host} lets other computers that can reach this address use the model "
            "(with the API key), for example everyone on this Wi-Fi network.\n\n"
            "Serve on this address anyway? Use 127.0.0.1 to keep it to this computer.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _on_toggled(self, on: bool) -> None:
        if on:
            self._switch_on()
        else:
            self._switch_off()

    def _switch_on(self) -> None:
        engine = self.session.engine
        if engine is None or not engine.alive:
            self._show_off("Load a local model first: serving shares the model loaded here.")
            return
        host = self.address.text().strip() or DEFAULT_HOST
        if not is_loopback(host) and not self.confirm_public(host):
            self._show_off(f"Not served: {host} would let other computers in. Use 127.0.0.1 for this computer only.")
            return
        port, key = self.port.value(), self.api_key
        self._engine = engine
        self.status.setText(f"Starting to serve on {host}:{port}…")
        self._worker = Worker(lambda _job: engine.serve(host, port, key), name="serve-api")
        self._worker.sig_done.connect(self._on_serving)
        self._worker.sig_failed.connect(self._on_serve_failed)
        self._worker.sig_finished.connect(self._update_controls)
        self._worker.start()
        self._update_controls()

    def _switch_off(self) -> None:
        engine, self._engine = self._engine, None
        self._clear("Stopped serving." if self.served is not None else INTRO)
        if engine is None or not engine.alive:
            self.sig_stopped.emit("Stopped serving.")
            return
        self._worker = Worker(lambda _job: engine.unserve(), name="unserve-api")
        self._worker.sig_finished.connect(lambda: self.sig_stopped.emit("Stopped serving."))
        self._worker.sig_finished.connect(self._update_controls)
        self._worker.start()
        self._update_controls()

    # -- outcomes -------------------------------------------------------------------------------

    def _on_serving(self, api) -> None:
        if self._engine is None or self._engine is not self.session.engine or not self._engine.alive:
            # replaced or gone while it started: serving ends with that engine
            self._detach(self._engine, "The model changed while serving started, so it is not served.")
            return
        self.served = api
        self.url.setText(api.base_url)
        self.key.setText(api.api_key)
        self.curl.setPlainText(api.curl_command())
        reach = ("for apps on this computer" if api.local_only
                 else f"on {api.host}: other computers can reach it too")
        self.status.setText(f"Serving {api.model} {reach}.")
        self.details.show()
        self.sig_serving.emit(api)

    def _on_serve_failed(self, error) -> None:
        self._engine = None
        self._show_off(f"Not served. {error_text(error)}")
        self.sig_failed.emit(error)

    def _check_engine(self) -> None:
        """Turn off when the engine that serves is replaced or has stopped."""
        engine = self._engine
        if engine is not None and not self.busy and (engine is not self.session.engine or not engine.alive):
            self._detach(engine, "The model engine stopped or was replaced, so serving stopped. "
                                 "Switch it on again to serve the model loaded now.")
        self._update_controls()

    def _detach(self, engine, reason: str) -> None:
        self._engine = None
        was_on = self.served is not None or self.switch.isChecked()
        self._show_off(reason)
        if engine is not None and engine.alive:  # a replaced engine still running: close its port
            worker = Worker(lambda _job: engine.unserve(), name="unserve-api")
            worker.sig_finished.connect(lambda: self._quiet.remove(worker))
            self._quiet.append(worker)
            worker.start()
        if was_on:
            self.sig_stopped.emit(reason)

    # -- display --------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.running

    def _show_off(self, text: str) -> None:
        with QSignalBlocker(self.switch):
            self.switch.setChecked(False)
        self._clear(text)
        self._update_controls()

    def _clear(self, text: str) -> None:
        self.served = None
        self.details.hide()
        for field in (self.url, self.key, self.curl):
            field.clear()
        self.status.setText(text)

    def _update_controls(self) -> None:
        engine = self.session.engine
        has_engine = engine is not None and engine.alive
        self.switch.setEnabled(not self.busy and (has_engine or self.switch.isChecked()))
        editable = not self.busy and not self.switch.isChecked()
        self.port.setEnabled(editable)
        self.address.setEnabled(editable)

    @staticmethod
    def _copy(text: str) -> None:
        if text:
            QGuiApplication.clipboard().setText(text)

    def shutdown(self) -> None:
        """Join the workers (the engine's end closes the served port anyway)."""
        for worker in [self._worker, *self._quiet]:
            if worker is not None:
                worker.wait()
