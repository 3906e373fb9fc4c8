"""Saved conversations: search box, list, New / Rename / Delete.

Reads and writes through a ``runtime.store.conversations.ConversationStore``. The dialogs (rename, confirm
delete) can be bypassed by passing the answer, which is how tests drive it.

The UI thread never waits on SQLite for long: a search runs once typing pauses (SEARCH_DELAY_MS), on a
worker, through the store's full-text index, and an answer to a search the user has since changed is
dropped; ``schedule_reload()`` folds several requests in one event-loop turn into one rebuild; and
when the database is busy or broken the list says so under the search box and keeps what it showed
(the store gives the UI thread a short lock timeout).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QMessageBox, QPushButton, QVBoxLayout, QWidget)

from runtime.errors import StoreError
from widgets.workers import Worker

ID_ROLE = Qt.ItemDataRole.UserRole
SEARCH_DELAY_MS = 250


RENAME_DIALOG_MIN_WIDTH = 420  # the platform's tiny default cut the dialog's own title


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
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._start_search)
        self._search_worker: Worker | None = None
        self.search.textChanged.connect(lambda _text: self._search_timer.start())
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(0)
        self._reload_timer.timeout.connect(lambda: self.reload(self._pending_select))
        self._pending_select: int | None = None
        self.rebuilds = 0  # how many times the list was re-read (tests check that requests fold)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #a33;")
        self.problem.hide()
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
        layout.addWidget(self.problem)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._quiet = False
        self.reload()

    # -- reading ----------------------------------------------------------------------------------

    def reload(self, select_id: int | None = None) -> None:
        """Re-read the list (with the current search), keeping or setting the selection.

        Never emits sig_selected: a search that hides the open conversation does not close it.
        If the database cannot be read, the list stays as it was and says why.
        """
        self._search_timer.stop()
        self._reload_timer.stop()
        self._pending_select = None
        try:
            conversations = self.store.list_conversations(self.search.text())
        except StoreError as exc:
            self.show_problem(exc)
            return
        self._show(conversations, select_id)

    def _start_search(self) -> None:
        """Run the search in the box on a worker; its answer is shown only if the box still says so."""
        query, store = self.search.text(), self.store
        if self._search_worker is not None and self._search_worker.running:
            self._search_worker.cancel()  # its answer will be dropped: it no longer matches the box
        worker = Worker(lambda job: store.list_conversations(query), name="conversation-search")
        worker.sig_done.connect(lambda found: self._on_searched(query, found))
        worker.sig_failed.connect(lambda error: self.show_problem(error) if isinstance(error, StoreError) else None)
        self._search_worker = worker
        worker.start()

    def _on_searched(self, query: str, conversations: list) -> None:
        if query == self.search.text() and not self._search_timer.isActive():
            self._show(conversations)

    def shutdown(self) -> None:
        """Wait for a search still running (the window is closing)."""
        self._search_timer.stop()
        if self._search_worker is not None:
            self._search_worker.wait()

    def _show(self, conversations: list, select_id: int | None = None) -> None:
        """Rebuild the list from ``conversations``, keeping or setting the selection."""
        keep = select_id if select_id is not None else self.current_id()
        self.rebuilds += 1
        self.show_problem(None)
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

    def schedule_reload(self, select_id: int | None = None) -> None:
        """Reload once control returns to the event loop; requests made meanwhile fold into one."""
        if select_id is not None:
            self._pending_select = select_id
        self._reload_timer.start()

    def flush(self) -> None:
        """Run a pending search or scheduled reload now, on this thread (before reading the list)."""
        if self._search_timer.isActive() or self._reload_timer.isActive():
            self.reload(self._pending_select)

    def show_problem(self, error: StoreError | None) -> None:
        """Say under the search box why the list could not be read or changed (None: all is well)."""
        if error is None:
            self.problem.hide()
            return
        self.problem.setText(f"{error.message}\n{error.hint}" if error.hint else error.message)
        self.problem.show()

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
        self.flush()
        if conversation_id is not None and conversation_id not in self.ids() and self.search.text():
            self.search.clear()
            self.reload()
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
            dialog = self.rename_dialog(self.list.currentItem().text())
            if dialog.exec() != QInputDialog.DialogCode.Accepted:
                return False
            title = dialog.textValue()
        if not title.strip():
            return False
        try:
            self.store.rename(conv_id, title)
        except StoreError as exc:
            self.show_problem(exc)
            return False
        self.reload(conv_id)
        return True

    def rename_dialog(self, current: str) -> QInputDialog:
        """The Rename dialog, wide enough for its own title and a long conversation title."""
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Rename conversation")
        dialog.setLabelText("New title for this conversation:")
        dialog.setTextValue(current)
        text_width = dialog.fontMetrics().horizontalAdvance(max(current, dialog.windowTitle(), key=len))
        # The dialog's layout sizes it to its contents: widen the text field, the dialog follows.
        dialog.findChild(QLineEdit).setMinimumWidth(min(720, max(RENAME_DIALOG_MIN_WIDTH, text_width + 40)))
        return dialog

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
        try:
            self.store.delete_conversation(conv_id)
        except StoreError as exc:
            self.show_problem(exc)
            return False
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
