"""Choose what the chat talks to: a model from the local library, or a remote OpenAI-compatible server.

The picker only collects choices and emits them; loading and connecting are the chat session's job.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QRadioButton, QSizePolicy, QSpinBox, QStackedWidget, QVBoxLayout, QWidget)

from runtime.engine.types import LoadOptions, max_threads
from runtime.models.library import SOURCE_LABELS
from widgets.common.fit_badge import fit_label, fit_style

MAX_GPU_LAYERS = 999
MAX_NAME_WIDTH = 420  # pixels: beyond this a name is cut in the closed list (the line under it is whole)
SHORT_SOURCES = {"app": "app folder", "added": "added", "hf-cache": "HF cache", "starter": "starter"}
AUTO_LAYERS = -2   # the spin box value shown as "Auto" (LoadOptions.n_gpu_layers None)


class GpuLayersSpinBox(QSpinBox):
    """GPU layers: "Auto" (the default: all when the GPU has room, else CPU), "All" (-1) or a number."""

    WORDS = {"auto": AUTO_LAYERS, "all": -1}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setRange(AUTO_LAYERS, MAX_GPU_LAYERS)
        self.setSpecialValueText("Auto")
        self.setToolTip("Layers offloaded to the GPU. Auto: all layers when this llama.cpp build has a GPU "
                        "backend and the model fits in its memory, as many as fit when only part does, else none "
                        "(CPU). All: every layer. "
                        "0: CPU only. The line under the picker says where the model runs once loaded.")

    def textFromValue(self, value: int) -> str:
        return "All" if value == -1 else super().textFromValue(value)

    def valueFromText(self, text: str) -> int:
        word = text.strip().lower()
        return self.WORDS[word] if word in self.WORDS else super().valueFromText(text)

    def validate(self, text: str, pos: int):
        word = text.strip().lower()
        if word in self.WORDS:
            return QValidator.State.Acceptable, text, pos
        if word and any(w.startswith(word) for w in self.WORDS):
            return QValidator.State.Intermediate, text, pos
        return super().validate(text, pos)

    def layers(self) -> int | None:
        """The choice as LoadOptions.n_gpu_layers: None (auto), -1 (all) or N."""
        return None if self.value() == AUTO_LAYERS else self.value()

    def set_layers(self, n_gpu_layers: int | None) -> None:
        self.setValue(AUTO_LAYERS if n_gpu_layers is None else max(-1, n_gpu_layers))


class LocalModelForm(QWidget):
    """Library model + load options (context length, threads, GPU layers) + Load.

    Each model is listed by its whole name with its quant once ("SmolLM2-135M-Instruct Q4_1") and
    where it comes from; the popup is as wide as the longest entry, and the line under the list
    repeats the choice in full. The Fit badge is judged for the context length in the Context field
    (``runtime.models.hardware.check_fit`` on the header already read: no file is opened).
    """

    sig_load = Signal(object, object)       # LibraryRow, LoadOptions
    sig_refresh = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.models = QComboBox()
        # As wide as the longest name (the side panel grows, never cuts it); the popup too.
        self.models.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.models.view().setTextElideMode(Qt.TextElideMode.ElideNone)
        self.models.currentIndexChanged.connect(self._on_model_changed)
        self.refresh_button = QPushButton("↻")
        self.refresh_button.setToolTip("Scan the library again")
        self.refresh_button.setMaximumWidth(32)
        self.refresh_button.clicked.connect(lambda: self.sig_refresh.emit())
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setStyleSheet("color: #616161;")
        self.fit = QLabel()
        self.fit.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(256, 1_048_576)
        self.n_ctx.setSingleStep(512)
        self.n_ctx.setToolTip("How many tokens of conversation the model can see. More needs more memory.")
        self.n_ctx.valueChanged.connect(self._update_fit)
        self.n_threads = QSpinBox()
        self.n_threads.setRange(1, max_threads())
        self.n_threads.setToolTip("CPU threads used for generation.")
        self.n_gpu_layers = GpuLayersSpinBox()
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self._on_load)

        row = QHBoxLayout()
        row.addWidget(self.models, 1)
        row.addWidget(self.refresh_button)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(QLabel("Model"))
        form.addRow(row)                  # the whole width of the panel: names are not cut
        form.addRow(self.details)
        form.addRow("Fit", self.fit)
        form.addRow("Context", self.n_ctx)
        form.addRow("Threads", self.n_threads)
        form.addRow("GPU layers", self.n_gpu_layers)
        form.addRow(self.load_button)
        self._rows: list = []
        self.verdict = None               # the FitVerdict the badge shows (for the Context value)
        self.set_options(LoadOptions())
        self._on_model_changed()

    @staticmethod
    def item_text(row) -> str:
        """"SmolLM2-135M-Instruct Q4_1 (starter)": the whole name, its quant once, and its source."""
        from widgets.chat.session import model_label

        info = row.entry.info
        source = SHORT_SOURCES.get(row.entry.source, row.entry.source)
        return f"{model_label(row.entry.display_name, info.file_type if info else '')} ({source})"

    def set_rows(self, rows: list, prefer: str = "") -> None:
        """Offer the readable models among these LibraryRows, keeping the selection when possible."""
        keep = prefer or self.current_path()
        self._rows = [r for r in rows if r.entry.info is not None]
        self.models.blockSignals(True)
        self.models.clear()
        metrics = self.models.fontMetrics()
        widest = 0
        for index, row in enumerate(self._rows):
            text = self.item_text(row)
            self.models.addItem(text)
            self.models.setItemData(index, f"{text}\n{row.entry.path}", Qt.ItemDataRole.ToolTipRole)
            widest = max(widest, metrics.horizontalAdvance(text))
        self.models.view().setMinimumWidth(widest + 48)  # the popup shows every name whole
        self.models.blockSignals(False)
        # ... and so does the closed list: the side panel widens for a long name (up to a limit)
        self.models.setMinimumWidth(min(self.models.sizeHint().width(), MAX_NAME_WIDTH))
        if not self._rows:
            self.models.setPlaceholderText("No models found")
        self.select_path(keep)
        self._on_model_changed()

    def select_path(self, path: str) -> bool:
        # by the rows, not item data: Qt drops the odd bytes of a path that is not UTF-8
        index = next((i for i, r in enumerate(self._rows) if path and str(r.entry.path) == str(path)), -1)
        if index >= 0:
            self.models.setCurrentIndex(index)
        return index >= 0

    def row_for(self, path: str):
        """The LibraryRow offered for this model path, or None."""
        return next((r for r in self._rows if str(r.entry.path) == path), None)

    def current_row(self):
        index = self.models.currentIndex()
        return self._rows[index] if 0 <= index < len(self._rows) else None

    def current_path(self) -> str:
        row = self.current_row()
        return str(row.entry.path) if row else ""

    def current_label(self) -> str:
        """The chosen model as the chat names it ("SmolLM2-135M-Instruct Q4_1"), or ''."""
        from widgets.chat.session import model_label

        row = self.current_row()
        return model_label(str(row.entry.path), row.entry.info.file_type) if row else ""

    def options(self) -> LoadOptions:
        return LoadOptions(n_ctx=self.n_ctx.value(), n_threads=self.n_threads.value(),
                           n_gpu_layers=self.n_gpu_layers.layers())

    def set_options(self, options: LoadOptions) -> None:
        self.n_ctx.setValue(options.n_ctx)
        self.n_threads.setValue(options.n_threads)
        self.n_gpu_layers.set_layers(options.n_gpu_layers)

    def _on_model_changed(self, *_args) -> None:
        row = self.current_row()
        self.load_button.setEnabled(row is not None)
        if row is None:
            self.details.setText("")
            self.models.setToolTip("")
            self._update_fit()
            return
        info = row.entry.info
        context = info.context_length
        if context:
            self.n_ctx.setMaximum(int(context))
        source = SOURCE_LABELS.get(row.entry.source, row.entry.source)
        params = f"{info.parameter_count / 1e9:.1f}B" if info.parameter_count >= 1e9 else (
            f"{info.parameter_count / 1e6:.0f}M" if info.parameter_count else "")
        facts = [self.item_text(row).rsplit(" (", 1)[0], info.architecture, params, source]
        self.details.setText(" · ".join(str(f) for f in facts if f))  # the whole name, wrapped if need be
        self.models.setToolTip(f"{self.item_text(row)}\n{row.entry.path}")
        self._update_fit()

    def _update_fit(self, *_args) -> None:
        """Judge the fit for the context in the Context field (the library judged it for its own)."""
        row = self.current_row()
        self.verdict = None
        if row is not None:
            if row.fit is not None and getattr(row, "fit_ctx", 0) == self.n_ctx.value():
                self.verdict = row.fit
            else:
                from runtime.models.hardware import check_fit

                try:
                    self.verdict = check_fit(row.entry.info, self.n_ctx.value(), gpus=getattr(row, "gpus", None))
                except Exception:  # noqa: BLE001 - an odd header: no verdict rather than no picker
                    self.verdict = row.fit
        status = self.verdict.status if self.verdict else None
        self.fit.setText("" if row is None else fit_label(status) if self.verdict else "unknown")
        self.fit.setStyleSheet(fit_style(status))
        self.fit.setToolTip(self.verdict.message if self.verdict else "")

    def _on_load(self) -> None:
        row = self.current_row()
        if row is not None:
            self.sig_load.emit(row, self.options())


NEW_SERVER = "New server…"


class RemoteServerForm(QWidget):
    """Saved servers (a list plus "New server…"), name, URL, API key, model; Save, Delete, Connect.

    Only collects and shows: the tab saves, deletes and connects. The API key field never shows a
    saved key; left empty, Connect uses the key saved for the chosen server (OS keyring).
    """

    sig_connect = Signal()
    sig_save = Signal()
    sig_delete = Signal()
    sig_server_chosen = Signal(object)     # RemoteServer, or None for "New server…"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.servers = QComboBox()
        self.servers.currentIndexChanged.connect(self._on_server_changed)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Home GPU")
        self.base_url = QLineEdit()
        self.base_url.setPlaceholderText("http://localhost:8080/v1")
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("optional")
        self.key_note = QLabel()
        self.key_note.setWordWrap(True)
        self.key_note.setStyleSheet("color: #616161;")
        self.model = QLineEdit()
        self.model.setPlaceholderText("optional: the server's first model")
        self.connection = QLabel("Not connected.")
        self.connection.setWordWrap(True)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Keep this server (name, address, model) for next time; the API key goes "
                                    "to the OS keyring.")
        self.delete_button = QPushButton("Delete")
        self.connect_button = QPushButton("Connect")
        self.save_button.clicked.connect(lambda: self.sig_save.emit())
        self.delete_button.clicked.connect(lambda: self.sig_delete.emit())
        self.connect_button.clicked.connect(lambda: self.sig_connect.emit())
        buttons = QHBoxLayout()
        for button in (self.save_button, self.delete_button, self.connect_button):
            buttons.addWidget(button)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Server", self.servers)
        form.addRow("Name", self.name)
        form.addRow("Server URL", self.base_url)
        form.addRow("API key", self.api_key)
        form.addRow(self.key_note)
        form.addRow("Model", self.model)
        form.addRow(buttons)
        form.addRow(self.connection)
        self._servers: list = []
        self.set_servers([])

    def set_servers(self, servers: list, select_id: int | None = None) -> None:
        """Offer these saved RemoteServers (and "New server…"), selecting ``select_id`` when given."""
        keep = select_id if select_id is not None else getattr(self.current_server(), "id", None)
        self._servers = list(servers)
        self.servers.blockSignals(True)
        self.servers.clear()
        for server in self._servers:
            self.servers.addItem(server.name)
        self.servers.addItem(NEW_SERVER)
        index = next((i for i, srv in enumerate(self._servers) if srv.id == keep), len(self._servers))
        self.servers.setCurrentIndex(index)
        self.servers.blockSignals(False)
        self._on_server_changed(emit=False)

    def select_server(self, server_id: int | None) -> bool:
        index = next((i for i, srv in enumerate(self._servers) if srv.id == server_id), -1)
        if index >= 0:
            self.servers.setCurrentIndex(index)
        return index >= 0

    def current_server(self):
        """The saved RemoteServer chosen, or None for "New server…"."""
        index = self.servers.currentIndex() if hasattr(self, "servers") else -1
        return self._servers[index] if 0 <= index < len(getattr(self, "_servers", [])) else None

    def url(self) -> str:
        return self.base_url.text().strip() or self.base_url.placeholderText()

    def set_key_note(self, text: str) -> None:
        self.key_note.setText(text)
        self.key_note.setVisible(bool(text))

    def set_connection(self, text: str) -> None:
        self.connection.setText(text)

    def _on_server_changed(self, *_args, emit: bool = True) -> None:
        server = self.current_server()
        self.name.setText(server.name if server else "")
        self.base_url.setText(server.base_url if server else "")
        self.model.setText(server.model if server else "")
        self.api_key.clear()
        self.api_key.setPlaceholderText("leave empty to use the saved key, if any" if server else "optional")
        self.delete_button.setEnabled(server is not None)
        if emit:
            self.sig_server_chosen.emit(server)


class ModelPicker(QWidget):
    """Local / Remote switch over the two forms, plus a line saying where messages go.

    The switch chooses where the next message goes (``sig_target_chosen("local" | "remote")``);
    ``set_status`` shows the tab's sentence about it.
    """

    sig_target_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.local_choice = QRadioButton("This computer")
        self.remote_choice = QRadioButton("Remote server")
        self.local_choice.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.local_choice)
        group.addButton(self.remote_choice)
        self.local = LocalModelForm()
        self.remote = RemoteServerForm()
        self.pages = QStackedWidget()
        self.pages.addWidget(self.local)
        self.pages.addWidget(self.remote)
        self.local_choice.toggled.connect(self._on_choice)
        self.status = QLabel("No model loaded.")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("font-weight: 600;")

        choices = QHBoxLayout()
        choices.addWidget(self.local_choice)
        choices.addWidget(self.remote_choice)
        choices.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(choices)
        layout.addWidget(self.pages)
        layout.addWidget(self.status)

    def _on_choice(self, local_on: bool) -> None:
        self.pages.setCurrentIndex(0 if local_on else 1)
        self.sig_target_chosen.emit("local" if local_on else "remote")

    def choice(self) -> str:
        return "local" if self.local_choice.isChecked() else "remote"

    def show_choice(self, kind: str) -> None:
        """Check the radio button of ``kind`` ("local" | "remote") without announcing it."""
        button = self.local_choice if kind == "local" else self.remote_choice
        if not button.isChecked():
            self.blockSignals(True)
            try:
                button.setChecked(True)
            finally:
                self.blockSignals(False)

    def set_busy(self, busy: bool) -> None:
        """Disable Load and Connect while a model loads or a reply is generated."""
        self.local.load_button.setEnabled(not busy and self.local.current_row() is not None)
        self.remote.connect_button.setEnabled(not busy)

    def set_status(self, text: str) -> None:
        self.status.setText(text)
