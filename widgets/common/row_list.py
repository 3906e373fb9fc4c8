"""A titled, scrolling list of row widgets with a one-line summary: the frame of the job lists."""
from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget


class RowList(QWidget):
    """``heading`` and ``summary`` on top, rows beneath (newest last), scrolling when they overflow."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.heading = QLabel(f"<b>{title}</b>")
        self.summary = QLabel()
        self._list = QWidget()
        self._rows = QVBoxLayout(self._list)
        self._rows.setContentsMargins(0, 0, 0, 0)
        self._rows.setSpacing(0)
        self._rows.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self._list)
        top = QHBoxLayout()
        top.addWidget(self.heading)
        top.addWidget(self.summary, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)

    def add_row(self, row: QWidget) -> None:
        self._rows.insertWidget(self._rows.count() - 1, row)   # before the stretch

    def remove_row(self, row: QWidget) -> None:
        self._rows.removeWidget(row)
