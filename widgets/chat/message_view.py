"""The conversation transcript: one QTextBrowser, appended to, never rebuilt per token.

Finished assistant messages are rendered from markdown with Qt's own parser
(``QTextCursor.insertMarkdown``); user messages are shown as typed. A reply being streamed is
appended as plain text through a cursor kept at the end (cost proportional to the new text only)
and replaced by its markdown rendering once, when the reply ends. Each user message carries an
"edit" link that emits ``sig_edit_requested(message_id)``. A centred grey note marks where the
messages the model still sees begin, when earlier ones no longer fit its context.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser

from runtime.chat.context import forgotten_notice

ROLE_LABELS = {"user": "You", "assistant": "Assistant", "system": "System"}
ROLE_COLOURS = {"user": "#1565c0", "assistant": "#2e7d32", "system": "#6d4c41"}
EDIT_SCHEME = "edit"


class MessageView(QTextBrowser):
    """Shows messages (``runtime.store.conversations.Message``) and one streaming reply at a time."""

    sig_edit_requested = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self.setPlaceholderText("No messages yet. Load a model, then type below.")
        self._stream_cursor: QTextCursor | None = None
        self._stream_start = 0
        self._stream_header_pos = 0
        self._stream_parts: list[str] = []
        self._pending_link: QTextCursor | None = None  # after "You" of a user message not saved yet
        self.editable_ids: set[int] = set()

    # -- whole messages ---------------------------------------------------------------------------

    def set_messages(self, messages, forgotten: int = 0) -> None:
        """Replace the transcript with these messages (used when a conversation is opened or a turn ends).

        ``forgotten`` > 0 puts a note before the first message the model still sees:
        "3 earlier messages are beyond the model's memory".
        """
        self._stream_cursor = None
        self._stream_parts = []
        self._pending_link = None
        self.editable_ids = set()
        self.clear()
        for index, message in enumerate(messages):
            if index == forgotten and forgotten > 0:
                self.append_notice(forgotten_notice(forgotten))
            self.append_message(message)

    def append_notice(self, text: str) -> None:
        """Append a grey, italic line that is not a message (e.g. what the model no longer sees)."""
        with self._kept_at_bottom():
            cursor = self._end_cursor()
            block = QTextBlockFormat()
            block.setAlignment(Qt.AlignmentFlag.AlignCenter)
            if not self.document().isEmpty():
                block.setTopMargin(14)
                cursor.insertBlock(block, QTextCharFormat())
            else:
                cursor.setBlockFormat(block)
            note = QTextCharFormat()
            note.setFontItalic(True)
            note.setForeground(QColor("#757575"))
            cursor.insertText(f"— {text} —", note)

    def append_message(self, message) -> None:
        """Append one finished message at the end."""
        with self._kept_at_bottom():
            cursor = self._end_cursor()
            self._insert_header(cursor, message.role, message.id)
            if message.role == "user" and message.id is None:
                # A cursor at the start of the header line: later insertions all come after it, so it
                # stays put (one at the line's end would be pushed along by the body inserted there).
                self._pending_link = QTextCursor(cursor)
                self._pending_link.movePosition(QTextCursor.MoveOperation.StartOfBlock)
            self._insert_body(cursor, message.role, message.content)
            self._insert_stats(cursor, message)
        if message.role == "user" and message.id is not None:
            self.editable_ids.add(message.id)

    def set_pending_user_id(self, message_id: int) -> None:
        """Give the user message shown before it was saved (id None) its id: its "edit" link appears."""
        cursor, self._pending_link = self._pending_link, None
        if cursor is not None:
            cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock)  # after "You"
            self._insert_edit_link(cursor, message_id)
            self.editable_ids.add(message_id)

    # -- streaming --------------------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        return self._stream_cursor is not None

    @property
    def streamed_text(self) -> str:
        return "".join(self._stream_parts)

    def begin_stream(self) -> None:
        """Start an assistant reply that text pieces will be appended to."""
        with self._kept_at_bottom():
            cursor = self._end_cursor()
            self._stream_header_pos = cursor.position()
            self._insert_header(cursor, "assistant", None)
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
            self._stream_start = cursor.position()
        self._stream_cursor = cursor
        self._stream_parts = []

    def append_stream_text(self, text: str) -> None:
        """Append plain text to the reply being streamed: O(len(text)), no re-rendering."""
        if self._stream_cursor is None or not text:
            return
        self._stream_parts.append(text)
        with self._kept_at_bottom():
            self._stream_cursor.insertText(text, QTextCharFormat())

    def end_stream(self, message=None) -> None:
        """Replace the streamed plain text by the saved message rendered as markdown, with its stats.

        Without a message (nothing worth saving) the streamed header and text are removed.
        """
        if self._stream_cursor is None:
            return
        cursor = self._stream_cursor
        self._stream_cursor = None
        with self._kept_at_bottom():
            if message is None:
                cursor.setPosition(self._stream_header_pos)
                cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
                cursor.removeSelectedText()
                return
            cursor.setPosition(self._stream_start)
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
            cursor.insertMarkdown(message.content)
            self._insert_stats(cursor, message)
        self._stream_parts = []

    # -- pieces -----------------------------------------------------------------------------------

    def _end_cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _insert_header(self, cursor: QTextCursor, role: str, message_id: int | None) -> None:
        block = QTextBlockFormat()
        if not self.document().isEmpty():
            block.setTopMargin(14)
            cursor.insertBlock(block, QTextCharFormat())
        else:
            cursor.setBlockFormat(block)
        label = QTextCharFormat()
        label.setFontWeight(QFont.Weight.Bold)
        label.setForeground(QColor(ROLE_COLOURS.get(role, "#000000")))
        cursor.insertText(ROLE_LABELS.get(role, role.title()), label)
        if role == "user" and message_id is not None:
            self._insert_edit_link(cursor, message_id)

    @staticmethod
    def _insert_edit_link(cursor: QTextCursor, message_id: int) -> None:
        link = QTextCharFormat()
        link.setAnchor(True)
        link.setAnchorHref(f"{EDIT_SCHEME}:{message_id}")
        link.setForeground(QColor("#757575"))
        link.setFontUnderline(True)
        cursor.insertText("   ", QTextCharFormat())
        cursor.insertText("edit", link)

    @staticmethod
    def _insert_body(cursor: QTextCursor, role: str, content: str) -> None:
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        if role == "assistant":
            cursor.insertMarkdown(content)
        else:
            cursor.insertText(content, QTextCharFormat())

    @staticmethod
    def _insert_stats(cursor: QTextCursor, message) -> None:
        if message.role != "assistant" or message.stats is None:
            return
        small = QTextCharFormat()
        small.setForeground(QColor("#757575"))
        small.setFontPointSize(max(7.0, QFont().pointSizeF() - 1.5))
        block = QTextBlockFormat()
        block.setTopMargin(4)
        cursor.insertBlock(block, QTextCharFormat())
        cursor.insertText(message.stats.summary(), small)

    # -- behaviour --------------------------------------------------------------------------------

    def _kept_at_bottom(self):
        return _StickToBottom(self)

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == EDIT_SCHEME:
            try:
                self.sig_edit_requested.emit(int(url.path()))
            except ValueError:
                pass
        elif url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)


class _StickToBottom:
    """Context manager: if the view was scrolled to the bottom, keep it there after an insert."""

    def __init__(self, view: QTextBrowser):
        self._bar = view.verticalScrollBar()
        self._at_bottom = False

    def __enter__(self):
        self._at_bottom = self._bar.value() >= self._bar.maximum() - 4
        return self

    def __exit__(self, *exc):
        if self._at_bottom:
            self._bar.setValue(self._bar.maximum())
        return False
