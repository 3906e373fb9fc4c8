"""Choose what the chat talks to: a model from the local library, or a remote OpenAI-compatible server.

The picker only collects choices and emits them; loading and connecting are the chat session's job.
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QRadioButton, QSizePolicy, QSpinBox, QStackedWidget, QVBoxLayout, QWidget)

from runtime.engine.types import LoadOptions, max_threads
from runtime.models.library import SOURCE_LABELS
from widgets.common.fit_badge import fit_label, fit_style

MAX_GPU_LAYERS = 999
AUTO_LAYERS = -2   # the spin box value shown as "Auto" (LoadOptions.n_gpu_layers None)


class GpuLayersSpinBox(QSpinBox):
    """GPU layers: "Auto" (the default: all when the GPU has room, else CPU), "All" (-1) or a number."""

    WORDS = {"auto": AUTO_LAYERS, "all": -1}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setRange(AUTO_LAYERS, MAX_GPU_LAYERS)
        self.setSpecialValueText("Auto")
        self.setToolTip("Layers offloaded to the GPU. Auto: all layers when this llama.cpp build has a GPU "
                        "backend and the model fits in its memory, else none (CPU). All: every layer. "
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
    """Library model + load options (context length, threads, GPU layers) + Load."""

    sig_load = Signal(object, object)       # LibraryRow, LoadOptions
    sig_refresh = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.models = QComboBox()
        self.models.setMinimumContentsLength(18)
        self.models.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.models.currentIndexChanged.connect(self._on_model_changed)
        self.refresh_button = QPushButton("↻")
        self.refresh_button.setToolTip("Scan the library again")
        self.refresh_button.setMaximumWidth(32)
        self.refresh_button.clicked.connect(lambda: self.sig_refresh.emit())
        self.fit = QLabel()
        self.fit.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(256, 1_048_576)
        self.n_ctx.setSingleStep(512)
        self.n_ctx.setToolTip("How many tokens of conversation the model can see. More needs more memory.")
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
        form.addRow("Model", row)
        form.addRow("Fit", self.fit)
        form.addRow("Context", self.n_ctx)
        form.addRow("Threads", self.n_threads)
        form.addRow("GPU layers", self.n_gpu_layers)
        form.addRow(self.load_button)
        self._rows: list = []
        self.set_options(LoadOptions())
        self._on_model_changed()

    def set_rows(self, rows: list, prefer: str = "") -> None:
        """Offer the readable models among these LibraryRows, keeping the selection when possible."""
        keep = prefer or self.current_path()
        self._rows = [r for r in rows if r.entry.info is not None]
        self.models.blockSignals(True)
        self.models.clear()
        for row in self._rows:
            info = row.entry.info
            source = SOURCE_LABELS.get(row.entry.source, row.entry.source).lower()
            self.models.addItem(f"{row.entry.display_name}  ({info.file_type}, {source})")
        self.models.blockSignals(False)
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

    def current_row(self):
        index = self.models.currentIndex()
        return self._rows[index] if 0 <= index < len(self._rows) else None

    def current_path(self) -> str:
        row = self.current_row()
        return str(row.entry.path) if row else ""

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
            self.fit.setText("")
            self.fit.setStyleSheet("")
            return
        context = row.entry.info.context_length
        if context:
            self.n_ctx.setMaximum(int(context))
        status = row.fit.status if row.fit else None
        self.fit.setText(fit_label(status) if row.fit else "unknown")
        self.fit.setStyleSheet(fit_style(status))
        self.fit.setToolTip(row.fit.message if row.fit else "")

    def _on_load(self) -> None:
        row = self.current_row()
        if row is not None:
            self.sig_load.emit(row, self.options())


class RemoteServerForm(QWidget):
    """Base URL + API key + model name + Connect."""

    sig_connect = Signal(str, str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.base_url = QLineEdit()
        self.base_url.setPlaceholderText("http://localhost:8080/v1")
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("optional; never saved")
        self.model = QLineEdit()
        self.model.setPlaceholderText("optional: the server's first model")
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self._on_connect)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Server URL", self.base_url)
        form.addRow("API key", self.api_key)
        form.addRow("Model", self.model)
        form.addRow(self.connect_button)

    def _on_connect(self) -> None:
        url = self.base_url.text().strip() or self.base_url.placeholderText()
        self.sig_connect.emit(url, self.api_key.text(), self.model.text().strip())


class ModelPicker(QWidget):
    """Local / Remote switch over the two forms, plus a line saying what is loaded."""

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
        self.local_choice.toggled.connect(lambda on: self.pages.setCurrentIndex(0 if on else 1))
        self.status = QLabel("No model loaded.")
        self.status.setWordWrap(True)

        choices = QHBoxLayout()
        choices.addWidget(self.local_choice)
        choices.addWidget(self.remote_choice)
        choices.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(choices)
        layout.addWidget(self.pages)
        layout.addWidget(self.status)

    def set_busy(self, busy: bool) -> None:
        """Disable Load and Connect while a model loads or a reply is generated."""
        self.local.load_button.setEnabled(not busy and self.local.current_row() is not None)
        self.remote.connect_button.setEnabled(not busy)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def show_conversation_backend(self, backend: str, model_ref: str, base_url: str) -> None:
        """Pre-select what a reopened conversation used (nothing is loaded automatically)."""
        if backend == "remote":
            self.remote_choice.setChecked(True)
            self.remote.base_url.setText(base_url)
            self.remote.model.setText(model_ref)
        elif model_ref:
            self.local_choice.setChecked(True)
            self.local.select_path(model_ref)

