"""The downloads list: one row per download with its bytes, percent, speed, time left and buttons.

It only shows a ``DownloadController``'s records and calls its methods; finished rows offer
"Chat" and "Compress" (``sig_open_requested(action, path)``).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from runtime.models.gguf_info import format_size
from widgets.common.row_list import RowList

STATUS_TEXT = {"queued": "Waiting", "running": "Downloading", "paused": "Paused", "failed": "Failed",
               "done": "Done", "cancelled": "Cancelled"}


class DownloadItem(QFrame):
    """One download: title, progress bar, figures, and Pause/Resume, Cancel (or Chat, Compress)."""

    def __init__(self, record, controller, panel: "DownloadsPanel"):
        super().__init__()
        self.setObjectName("downloadItem")
        self.setStyleSheet("#downloadItem { border-bottom: 1px solid #dddddd; }")
        self.download_id = record.id
        self.controller, self.panel = controller, panel
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setMaximumHeight(16)
        self.figures = QLabel()
        self.figures.setTextFormat(Qt.TextFormat.PlainText)
        self.figures.setWordWrap(True)
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.chat_button = QPushButton("Chat")
        self.compress_button = QPushButton("Compress")
        self.remove_button = QPushButton("Remove from list")
        self.pause_button.clicked.connect(self._on_pause)
        self.cancel_button.clicked.connect(lambda: controller.cancel(self.download_id))
        self.chat_button.clicked.connect(lambda: self._open("chat"))
        self.compress_button.clicked.connect(lambda: self._open("compress"))
        self.remove_button.clicked.connect(lambda: controller.remove(self.download_id))

        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(self.title)
        text.addWidget(self.bar)
        text.addWidget(self.figures)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(text, 1)
        for button in (self.pause_button, self.cancel_button, self.chat_button, self.compress_button,
                       self.remove_button):
            layout.addWidget(button)
        self.message = ""
        self.update_record(record)

    def update_record(self, record) -> None:
        self.record = record
        files = f" ({len(record.files)} files)" if len(record.files) > 1 else ""
        label = record.label or record.files[0].path
        self.title.setText(f"{record.repo_id} · {label}{files}")
        self.title.setToolTip("\n".join(f.path for f in record.files) + (f"\nInto {record.dest}" if record.dest else
                                                                         "\nInto the Hugging Face cache"))
        status = record.status
        active = status in ("queued", "running")
        self.pause_button.setText("Pause" if active else ("Retry" if status == "failed" else "Resume"))
        self.pause_button.setVisible(status not in ("done",))
        self.cancel_button.setVisible(status not in ("done", "cancelled"))
        self.chat_button.setVisible(status == "done" and self._kind() == "gguf")
        self.compress_button.setVisible(status == "done")
        self.remove_button.setVisible(status in ("done", "cancelled", "failed"))
        if status == "failed" and record.error:
            error = record.error_object() if hasattr(record, "error_object") else None
            self.message = error.user_text() if error is not None else str(record.error.get("message", ""))
        elif status != "running":
            self.message = ""
        self._show_figures(record.done_bytes, record.total_bytes)

    def set_progress(self, done: float, total: float, message: str) -> None:
        self.record.done_bytes, self.record.total_bytes = int(done), int(total) or self.record.total_bytes
        self.message = message
        self._show_figures(done, total)

    def _show_figures(self, done: float, total: float) -> None:
        status = self.record.status
        fraction = done / total if total else 0.0
        self.bar.setValue(int(1000 * min(max(fraction, 0.0), 1.0)))
        self.bar.setFormat(f"{fraction:.0%}")
        text = f"{STATUS_TEXT.get(status, status)} · {format_size(done)} of {format_size(total)}"
        if status == "running" and self.message:
            # runtime.hub.download's own words: the file, bytes, speed and time left (RateMeter)
            text = f"{STATUS_TEXT['running']} · {self.message}"
        if status == "failed" and self.message:
            text += f"\n{self.message}"
        if status == "paused":
            text += " · Resume continues from here"
        self.figures.setText(text)
        self.figures.setStyleSheet("color: #b71c1c;" if status == "failed" else "")

    def _kind(self) -> str:
        paths = self.record.paths or [f.path for f in self.record.files]
        return "gguf" if paths and str(paths[0]).lower().endswith(".gguf") else "checkpoint"

    def _on_pause(self) -> None:
        if self.record.status in ("queued", "running"):
            self.controller.pause(self.download_id)
        else:
            self.controller.resume(self.download_id)

    def _open(self, action: str) -> None:
        from pathlib import Path

        if not self.record.paths:
            return
        first = Path(self.record.paths[0])
        # a checkpoint is opened as its folder (config.json and the weights), a GGUF as its first file
        self.panel.sig_open_requested.emit(action, str(first if self._kind() == "gguf" else first.parent))


class DownloadsPanel(RowList):
    """A titled, scrollable list of DownloadItems; hidden while there is nothing to show."""

    sig_open_requested = Signal(str, str)

    def __init__(self, controller, parent: QWidget | None = None):
        super().__init__("Downloads", parent)
        self.controller = controller
        self.items: dict[int, DownloadItem] = {}
        controller.sig_added.connect(self._on_added)
        controller.sig_changed.connect(self._on_changed)
        controller.sig_progress.connect(self._on_progress)
        controller.sig_removed.connect(self._on_removed)
        for download_id in controller.ids():
            self._on_added(controller.records[download_id])
        self._update_summary()

    def item(self, download_id: int) -> DownloadItem | None:
        return self.items.get(download_id)

    def _on_added(self, record) -> None:
        if record.id in self.items:
            return
        item = DownloadItem(record, self.controller, self)
        self.items[record.id] = item
        self.add_row(item)
        self._update_summary()

    def _on_changed(self, record) -> None:
        item = self.items.get(record.id)
        if item is not None:
            item.update_record(record)
        self._update_summary()

    def _on_progress(self, download_id: int, done: float, total: float, message: str) -> None:
        item = self.items.get(download_id)
        if item is not None:
            item.set_progress(done, total, message)

    def _on_removed(self, download_id: int) -> None:
        item = self.items.pop(download_id, None)
        if item is not None:
            self.remove_row(item)
            item.deleteLater()
        self._update_summary()

    def _update_summary(self) -> None:
        records = [i.record for i in self.items.values()]
        active = sum(1 for r in records if r.status in ("queued", "running"))
        self.summary.setText(f"{active} active, {len(records) - active} other" if records else
                             "Nothing downloading. Pick a file under “Find on Hugging Face”.")
        self.setVisible(bool(records))
