"""The source picker: a library model or a checkpoint folder, and the facts read from it.

It only shows and asks: a pick leaves as ``sig_source_chosen(path)``, "Checkpoint folder…" as
``sig_folder_requested()``; the tab reads the source on a worker and calls ``show_facts`` or
``show_problem``.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

PLACEHOLDER = "Pick a model from the library…"


class SourcePanel(QWidget):
    """Combo of library models + "Checkpoint folder…" + the facts of the picked source."""

    sig_source_chosen = Signal(str)
    sig_folder_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.models = QComboBox()
        self.models.setMinimumContentsLength(40)
        self.models.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.models.addItem(PLACEHOLDER, None)
        self.models.currentIndexChanged.connect(self._on_pick)
        self.folder_button = QPushButton("Checkpoint folder…")
        self.folder_button.setToolTip("A Hugging Face checkpoint on this computer: a folder with config.json "
                                      "and its weights (safetensors or pytorch_model*.bin).")
        self.folder_button.clicked.connect(self.sig_folder_requested)
        self.status = QLabel("Pick a source: a model from the library (GGUF) or a checkpoint folder.")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.facts = QWidget()
        self._grid = QGridLayout(self.facts)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setHorizontalSpacing(18)
        self._grid.setVerticalSpacing(2)
        self.facts.hide()
        self.path_label = QLabel()
        self.path_label.setTextFormat(Qt.TextFormat.PlainText)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setStyleSheet("color: #555555;")
        self.path_label.hide()

        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Source</b>"))
        top.addWidget(self.models, 1)
        top.addWidget(self.folder_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.path_label)
        layout.addWidget(self.facts)
        layout.addWidget(self.status)
        self._quiet = False

    # -- the list ---------------------------------------------------------------------------------

    def set_library(self, rows: list) -> None:
        """Offer the library's readable GGUF files (``LibraryRow`` objects); keep the current pick."""
        from runtime.models.library import SOURCE_LABELS

        current = self.current_path()
        extra = [(self.models.itemText(i), self.models.itemData(i)) for i in range(1, self.models.count())
                 if self.models.itemData(i) and Path(self.models.itemData(i)).is_dir()]
        self._quiet = True
        try:
            self.models.clear()
            self.models.addItem(PLACEHOLDER, None)
            for row in rows:
                entry = row.entry
                if entry.info is None:
                    continue
                source = SOURCE_LABELS.get(entry.source, entry.source)
                self.models.addItem(f"{entry.display_name}  ({entry.info.file_type}, {source})", str(entry.path))
                self.models.setItemData(self.models.count() - 1, str(entry.path), Qt.ItemDataRole.ToolTipRole)
            for text, data in extra:
                self.models.addItem(text, data)
            index = self.models.findData(current) if current else 0
            if index < 0:   # a file picked by path that the library does not list
                index = self._add(current)
            self.models.setCurrentIndex(index)
        finally:
            self._quiet = False

    def paths(self) -> list[str]:
        """The sources on offer, in order (library files, then folders picked)."""
        return [self.models.itemData(i) for i in range(1, self.models.count())]

    def current_path(self) -> str | None:
        return self.models.currentData()

    def select_path(self, path: str) -> None:
        """Pick ``path`` (added to the list when it is not in it): emits sig_source_chosen."""
        index = self.models.findData(str(path))
        if index < 0:
            index = self._add(str(path))
        if index == self.models.currentIndex():
            self.sig_source_chosen.emit(str(path))
        else:
            self.models.setCurrentIndex(index)

    def _add(self, path: str) -> int:
        p = Path(path)
        label = f"{p.name}  (checkpoint folder)" if p.is_dir() else f"{p.stem}  ({p.parent})"
        self.models.addItem(label, path)
        self.models.setItemData(self.models.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        return self.models.count() - 1

    def _on_pick(self, _index: int) -> None:
        if self._quiet:
            return
        path = self.current_path()
        if path:
            self.sig_source_chosen.emit(path)
        else:
            self.clear_facts()

    # -- the facts --------------------------------------------------------------------------------

    def show_reading(self, path: str) -> None:
        self._set_path(path)
        self.facts.hide()
        self._set_status(f"Reading {Path(path).name}…")

    def show_facts(self, facts) -> None:
        """Architecture, parameters, dtype or quant, size, ... of a ``SourceFacts``."""
        self._set_path(facts.path)
        while self._grid.count():
            item = self._grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        per_row = 3
        for i, (label, value) in enumerate(facts.details):
            name = QLabel(label)
            name.setStyleSheet("color: #555555;")
            text = QLabel(value)
            text.setTextFormat(Qt.TextFormat.PlainText)
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            text.setObjectName(f"fact_{label.lower()}")
            self._grid.addWidget(name, i // per_row, 2 * (i % per_row))
            self._grid.addWidget(text, i // per_row, 2 * (i % per_row) + 1)
        self._grid.setColumnStretch(2 * per_row, 1)
        self.facts.show()
        kind = "Checkpoint folder" if facts.kind == "checkpoint" else "GGUF file"
        if facts.problem:
            self._set_status(f"This checkpoint cannot be converted: {facts.problem}", error=True)
        elif facts.quantized:
            self._set_status(f"{kind}, already quantized ({facts.dtype}): making smaller types from it means "
                             "requantizing (tick Requantize below).", warning=True)
        else:
            self._set_status(f"{kind}: tick the types to make below.")

    def show_problem(self, path: str, text: str) -> None:
        """The source could not be read: say why (the runtime's message and hint)."""
        self._set_path(path)
        self.facts.hide()
        self._set_status(text, error=True)

    def clear_facts(self) -> None:
        self.facts.hide()
        self.path_label.hide()
        self._set_status("Pick a source: a model from the library (GGUF) or a checkpoint folder.")

    def fact(self, label: str) -> str:
        """The value shown for ``label`` ("Architecture", "Size", ...), '' when not shown (for tests)."""
        widget = self.facts.findChild(QLabel, f"fact_{label.lower()}")
        return widget.text() if widget is not None and not self.facts.isHidden() else ""

    def _set_path(self, path: str) -> None:
        from runtime.models.library import readable

        self.path_label.setText(readable(str(path)))
        self.path_label.show()

    def _set_status(self, text: str, error: bool = False, warning: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b71c1c;" if error else ("color: #8a5a00;" if warning else ""))
