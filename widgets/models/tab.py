"""The Models tab: the local library in a table, refreshed off the UI thread."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTableView, QVBoxLayout, QWidget)

from widgets.models.library_model import LibraryTableModel, scan_library_rows
from widgets.workers import Worker, error_text

HUB_NOTE = ("Searching and downloading models from Hugging Face arrives in a later version. "
            "For now this list shows the models already on this computer: the app's models folder, "
            "the Hugging Face cache and the bundled starter model.")


class ModelsTab(QWidget):
    """Library table + Refresh button + a status line. Emits the scanned rows for other tabs."""

    sig_library_loaded = Signal(list)   # list[LibraryRow]

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = LibraryTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.status = QLabel("The library has not been scanned yet.")
        self.notice = QLabel()   # what the last scan skipped (unreadable folders); hidden when nothing
        self.notice.setWordWrap(True)
        self.notice.setTextFormat(Qt.TextFormat.PlainText)  # folder names are not markup
        self.notice.setStyleSheet("color: #8a5a00;")
        self.notice.setVisible(False)
        note = QLabel(HUB_NOTE)
        note.setWordWrap(True)
        note.setStyleSheet("color: #555555; font-style: italic;")

        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Models on this computer</b>"))
        top.addStretch(1)
        top.addWidget(self.status)
        top.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.notice)
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        self._worker: Worker | None = None

    @property
    def scanning(self) -> bool:
        return self._worker is not None and self._worker.running

    def refresh(self) -> None:
        """Rescan the library on a worker thread (ignored while a scan runs)."""
        if self.scanning:
            return
        self.refresh_button.setEnabled(False)
        self.status.setText("Scanning…")
        self._worker = Worker(lambda job: scan_library_rows(), name="library-scan")
        self._worker.sig_done.connect(self._on_rows)
        self._worker.sig_failed.connect(self._on_failed)
        self._worker.sig_finished.connect(self._on_finished)
        self._worker.start()

    def _on_rows(self, result: tuple) -> None:
        rows, problems = result
        self.model.set_rows(rows)
        unreadable = sum(1 for r in rows if r.entry.info is None)
        text = f"{len(rows)} model{'s' if len(rows) != 1 else ''} found"
        if unreadable:
            text += f", {unreadable} unreadable"
        if not rows:
            text = "No models found yet."
        if problems:
            text += f" ({len(problems)} skipped)"
        self.status.setText(text)
        self.notice.setText("Skipped, could not be read:\n" + "\n".join(f"• {p}" for p in problems))
        self.notice.setToolTip("Fix the permissions (or remove the folder) and press Refresh.")
        self.notice.setVisible(bool(problems))
        self.sig_library_loaded.emit(rows)

    def _on_failed(self, error: BaseException) -> None:
        self.status.setText(f"Scan failed: {error_text(error)}")

    def _on_finished(self) -> None:
        self.refresh_button.setEnabled(True)

    def shutdown(self) -> None:
        """Join the scan thread (the scan has no cancel hook; it is a short disk walk)."""
        if self._worker is not None:
            self._worker.wait()
