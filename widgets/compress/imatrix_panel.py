""""Use importance matrix": quantize with the statistics of a calibration text.

The panel holds a tick box and where the matrix comes from: computed before the quantizations from a
calibration text (the one shipped with the app, or a file the person picks), or an importance matrix
file that already exists (ours or llama-imatrix's). The tab queues the computation as a job of its
own (off the UI thread, with progress and Cancel). ``set_required(types)`` ticks it and keeps it
ticked while a type llama.cpp makes only with an importance matrix is chosen, and says why.
``sig_changed`` fires on every change.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QRadioButton,
                               QVBoxLayout, QWidget)

EXPLAIN = ("An importance matrix tells llama.cpp which weights matter most on real text, so 4-bit and "
           "smaller types keep more quality. It is computed first from the calibration text (a few minutes "
           "for a small model).")


def ask_file(parent, title: str, filters: str) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, title, "", filters)
    return path or None


class ImatrixPanel(QWidget):
    sig_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        from runtime.compress.calibration import default_calibration_path

        self.choose_file = ask_file          # tests replace it
        self.default_text = default_calibration_path()
        self.text_path: Path | None = None   # None: the shipped text
        self.matrix_path: Path | None = None
        self._required: list[str] = []

        self.use = QCheckBox("Use importance matrix")
        self.use.setObjectName("use_imatrix")
        self.use.setToolTip(EXPLAIN)
        self.compute = QRadioButton("Compute it from a text:")
        self.compute.setChecked(True)
        self.text_label = QLabel()
        self.text_button = QPushButton("Choose text…")
        self.default_button = QPushButton("Shipped text")
        self.existing = QRadioButton("Use an importance matrix file:")
        self.file_label = QLabel("none chosen")
        self.file_button = QPushButton("Choose file…")
        self.why = QLabel(EXPLAIN)
        self.why.setWordWrap(True)
        self.why.setStyleSheet("color: #555555;")

        row1 = QHBoxLayout()
        row1.addWidget(self.compute)
        row1.addWidget(self.text_label, 1)
        row1.addWidget(self.default_button)
        row1.addWidget(self.text_button)
        row2 = QHBoxLayout()
        row2.addWidget(self.existing)
        row2.addWidget(self.file_label, 1)
        row2.addWidget(self.file_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        layout.addWidget(self.use)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addWidget(self.why)

        self.use.toggled.connect(self._changed)
        self.compute.toggled.connect(self._changed)
        self.text_button.clicked.connect(self._pick_text)
        self.default_button.clicked.connect(lambda: self.set_text(None))
        self.file_button.clicked.connect(self._pick_matrix)
        self._refresh()

    # -- what it says ----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.use.isChecked()

    @property
    def computes(self) -> bool:
        """True: a job computes the matrix from ``text()``; False: ``matrix_path`` is used as it is."""
        return self.compute.isChecked()

    def text(self) -> Path:
        return self.text_path or self.default_text

    def problem(self) -> str:
        """Why the ticked panel cannot be used yet ('' when it can)."""
        if not self.enabled:
            return ""
        if self.computes:
            return "" if self.text().is_file() else f"The calibration text {self.text()} does not exist."
        return "" if self.matrix_path is not None else "Choose the importance matrix file first."

    # -- changing it -----------------------------------------------------------------------------

    def set_text(self, path: str | Path | None) -> None:
        self.text_path = Path(path) if path else None
        self.compute.setChecked(True)
        self._changed()

    def set_matrix(self, path: str | Path) -> None:
        """Use an existing importance matrix file (read now: a file that is not one is refused)."""
        from runtime.compress.imatrix import load

        matrix = load(path)  # ModelFileError for anything else
        self.matrix_path = Path(path)
        self.file_label.setText(f"{Path(path).name} ({matrix.describe()})")
        self.existing.setChecked(True)
        self._changed()

    def set_required(self, qtypes: list[str]) -> None:
        """The chosen types that need an importance matrix: ticked and kept ticked while there are any."""
        self._required = list(qtypes)
        if self._required:
            self.use.setChecked(True)
        self._refresh()

    def _pick_text(self) -> None:
        path = self.choose_file(self, "Choose a calibration text", "Text files (*.txt *.md);;All files (*)")
        if path:
            self.set_text(path)

    def _pick_matrix(self) -> None:
        from runtime.errors import WorkbenchError

        path = self.choose_file(self, "Choose an importance matrix", "Importance matrix (*.gguf);;All files (*)")
        if path:
            try:
                self.set_matrix(path)
            except WorkbenchError as exc:
                self.file_label.setText(f"Not usable: {exc.message}")

    def _changed(self, *_args) -> None:
        self._refresh()
        self.sig_changed.emit()

    def _refresh(self) -> None:
        on = self.enabled
        self.use.setEnabled(not self._required)
        for widget in (self.compute, self.existing, self.text_label, self.text_button, self.default_button):
            widget.setEnabled(on)
        self.file_button.setEnabled(on)
        self.file_label.setEnabled(on)
        name = self.text().name + (" (shipped with the app)" if self.text_path is None else "")
        self.text_label.setText(name)
        if self._required:
            self.why.setText(f"{', '.join(self._required)} can only be made with an importance matrix "
                             "(llama.cpp refuses them without one), so it stays ticked. " + EXPLAIN)
        else:
            self.why.setText(EXPLAIN)
