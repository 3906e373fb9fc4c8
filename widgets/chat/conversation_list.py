"""Saved conversations: search box, list, New / Rename / Delete.

Reads and writes through a ``runtime.store.conversations.ConversationStore``. The dialogs (rename, confirm delete)
can be bypassed by passing the answer, which is how tests drive it.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLineEdit, QListWidget, QListWidgetItem,
                               QMessageBox, QPushButton, QVBoxLayout, QWidget)

ID_ROLE = Qt.ItemDataRole.UserRole


class ConversationList(QWidget):
    """Lists conversations newest first; emits the id of the one the user opens."""

    sig_selected = Signal(object)      # conversation id, or None when nothing is selected
    sig_new_requested = Signal()
    sig_deleted = Signal(int)

    def __init__(self, store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search titles and messages")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _text: self.reload())
        self.list = QListWidget()
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.currentItemChanged.connect(self._on_current_changed)
        self.new_button = QPushButton("New")
        self.rename_button = QPushButton("Rename")
        self.delete_button = QPushButton("Delete")
        self.new_button.clicked.connect(lambda: self.sig_new_requested.emit())
        self.rename_button.clicked.connect(lambda: self.rename_selected())
        self.delete_button.clicked.connect(lambda: self.delete_selected())

        buttons = QHBoxLayout()
        for button in (self.new_button, self.rename_button, self.delete_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._quiet = False
        self.reload()

    # -- reading ----------------------------------------------------------------------------------

    def reload(self, select_id: int | None = None) -> None:
        """Re-read the list (with the current search), keeping or setting the selection.

        Never emits sig_selected: a search that hides the open conversation does not close it.
        """
        keep = select_id if select_id is not None else self.current_id()
        conversations = self.store.list_conversations(self.search.text())
        self._quiet = True
        try:
            self.list.clear()
            for conv in conversations:
                item = QListWidgetItem(conv.title)
                item.setData(ID_ROLE, conv.id)
                item.setToolTip(conv.model_ref or conv.remote_base_url or "")
                self.list.addItem(item)
                if conv.id == keep:
                    self.list.setCurrentItem(item)
        finally:
            self._quiet = False
        self._update_buttons()

    def ids(self) -> list[int]:
        """Conversation ids as listed (newest first, search applied)."""
        return [self.list.item(i).data(ID_ROLE) for i in range(self.list.count())]

    def titles(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(ID_ROLE) if item is not None else None

    # -- acting -----------------------------------------------------------------------------------

    def select(self, conversation_id: int | None) -> None:
        """Select a conversation by id (clearing the search if it hides it); emits sig_selected."""
        if conversation_id is not None and conversation_id not in self.ids() and self.search.text():
            self.search.clear()
        for i in range(self.list.count()):
            if self.list.item(i).data(ID_ROLE) == conversation_id:
                self.list.setCurrentRow(i)
                return
        self.list.setCurrentRow(-1)

    def rename_selected(self, title: str | None = None) -> bool:
        """Rename the selected conversation; asks for the title when none is given."""
        conv_id = self.current_id()
        if conv_id is None:
            return False
        if title is None:
            current = self.list.currentItem().text()
            title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=current)
            if not ok:
                return False
        if not title.strip():
            return False
        self.store.rename(conv_id, title)
        self.reload(conv_id)
        return True

    def delete_selected(self, confirm: bool | None = None) -> bool:
        """Delete the selected conversation after confirmation (``confirm=True`` skips the question)."""
        conv_id = self.current_id()
        if conv_id is None:
            return False
        if confirm is None:
            title = self.list.currentItem().text()
            answer = QMessageBox.question(
                self, "Delete conversation",
                f"Delete “{title}” and all its messages? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            confirm = answer == QMessageBox.StandardButton.Yes
        if not confirm:
            return False
        row = self.list.currentRow()
        self.store.delete_conversation(conv_id)
        self._quiet = True
        try:
            self.list.takeItem(row)
            self.list.setCurrentRow(min(row, self.list.count() - 1))
        finally:
            self._quiet = False
        self._update_buttons()
        self.sig_deleted.emit(conv_id)
        self.sig_selected.emit(self.current_id())
        return True

    def _on_current_changed(self, *_items) -> None:
        self._update_buttons()
        if not self._quiet:
            self.sig_selected.emit(self.current_id())

    def _update_buttons(self) -> None:
        has = self.current_id() is not None
        self.rename_button.setEnabled(has)
        self.delete_button.setEnabled(has)
