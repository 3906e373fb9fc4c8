"""The conversation transcript: one QTextBrowser of message cards, appended to, never rebuilt per token.

Each message is a card (a QTextFrame with a background and border; the user's sit to the right).
Replies are markdown, rendered by ``widgets.chat.markdown_render`` (headings, lists, quotes, tables,
code blocks with colours, the language and a Copy link); user messages are shown as typed. Lines
wrap anywhere if they must, and the horizontal scroll bar is off: nothing widens the transcript.

Streaming: ``runtime.chat.markdown_blocks.BlockStream`` cuts the reply into finished blocks, each
rendered once when it completes, and the growing last block (the tail), which is the only part
re-rendered on each new piece (code in it is left uncoloured until it is finished). So each piece
costs the new text plus the last block, and when the reply ends only the tail is rendered for good:
nothing jumps.

Links: "edit" on a user message emits ``sig_edit_requested(message_id)``; "Copy" on a code block
puts its exact source on the clipboard; the example prompts of the welcome card emit
``sig_prompt_chosen(text)``; http(s) links open in the browser. Nothing else is followed, and no
resource (image, file) is ever loaded. The figures line under a reply is in plain words
(``ReplyStats.summary``); its tooltip has the exact figures (``ReplyStats.details``).
A centred grey note marks where the messages the model still sees begin, when earlier ones no
longer fit its context.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (QColor, QDesktopServices, QFont, QGuiApplication, QTextBlockFormat, QTextCharFormat,
                           QTextCursor, QTextOption)
from PySide6.QtWidgets import QTextBrowser

from runtime.chat.context import forgotten_notice
from runtime.chat.markdown_blocks import BlockStream
from runtime.chat.markdown_highlight import highlight
from widgets.chat.markdown_render import COPY_SCHEME, MarkdownWriter, Theme

ROLE_LABELS = {"user": "You", "assistant": "Assistant", "system": "System"}
ROLE_COLOURS = {"user": ("#1565c0", "#64b5f6"), "assistant": ("#2e7d32", "#81c784"),
                "system": ("#6d4c41", "#bcaaa4")}  # (light, dark)
EDIT_SCHEME = "edit"
PROMPT_SCHEME = "prompt"
EXAMPLE_PROMPTS = ["Explain in two sentences what a GGUF file is.",
                   "Write a short Python function that checks if a word is a palindrome.",
                   "Give me three ideas for a quick vegetarian dinner."]


class MessageView(QTextBrowser):
    """Shows messages (``runtime.store.conversations.Message``) and one streaming reply at a time."""

    sig_edit_requested = Signal(int)
    sig_prompt_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self.setPlaceholderText("No messages yet.")
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.document().setUndoRedoEnabled(False)
        self.document().setDocumentMargin(8)
        self._stream: BlockStream | None = None
        self._stream_frame = None
        self._stream_start = 0      # where the streamed card begins (to remove it when nothing is kept)
        self._body_pos = 0          # end of the streamed card's header line
        self._tail_pos = 0          # end of the finished part of the streamed reply
        self._tail_fresh = False    # ... which is an empty block the next block takes over
        self._stream_parts: list[str] = []
        self._pending_link: QTextCursor | None = None  # after "You" of a user message not saved yet
        self._codes: dict[int, str] = {}  # copy:<n> -> the code block's source
        self._next_code = 0
        self._prompts: list[str] = []
        self.showing_welcome = False
        self.editable_ids: set[int] = set()
        self._theme_cache: Theme | None = None
        QTimer.singleShot(0, _warm_up_highlighting)

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.FontChange):
            self._theme_cache = None  # messages shown from now on take the new colours
        super().changeEvent(event)

    # -- whole messages ---------------------------------------------------------------------------

    def set_messages(self, messages, forgotten: int = 0) -> None:
        """Replace the transcript with these messages (used when a conversation is opened or a turn ends).

        ``forgotten`` > 0 puts a note before the first message the model still sees:
        "3 earlier messages are beyond the model's memory".
        """
        self._reset()
        for index, message in enumerate(messages):
            if index == forgotten and forgotten > 0:
                self.append_notice(forgotten_notice(forgotten))
            self.append_message(message)

    def _reset(self) -> None:
        self._stream = None
        self._stream_frame = None
        self._stream_parts = []
        self._pending_link = None
        self.editable_ids = set()
        self._codes, self._next_code = {}, 0
        self._prompts = []
        self.showing_welcome = False
        self.clear()
        self.document().setUndoRedoEnabled(False)

    def show_welcome(self, model_name: str | None, prompts: list[str]) -> None:
        """An empty conversation: name the model (or say how to get one) and offer example prompts.

        Clicking a prompt emits ``sig_prompt_chosen(prompt)``. The next message replaces this card.
        """
        self._reset()
        theme = self._theme()
        cursor = self._end_cursor()
        cursor.insertFrame(theme.card_format("assistant"))
        title = QTextCharFormat()
        title.setFontWeight(QFont.Weight.Bold)
        title.setFontPointSize(theme.point_size * 1.2)
        title.setForeground(QColor(theme.text))
        cursor.insertText("Welcome", title)
        plain = QTextCharFormat()
        plain.setForeground(QColor(theme.text))
        cursor.insertBlock(_spaced(6), plain)
        if model_name:
            cursor.insertText("You are chatting with ", plain)
            bold = QTextCharFormat(plain)
            bold.setFontWeight(QFont.Weight.Bold)
            cursor.insertText(model_name, bold)
            cursor.insertText(". Type a message below, or click one of these to try it:", plain)
        else:
            cursor.insertText("No model is loaded yet: pick one on the right (or connect to a server), "
                              "then type a message below. For example:", plain)
        self._prompts = list(prompts)
        for index, prompt in enumerate(self._prompts):
            link = QTextCharFormat()
            link.setAnchor(True)
            link.setAnchorHref(f"{PROMPT_SCHEME}:{index}")
            link.setForeground(QColor(theme.link))
            link.setFontUnderline(True)
            link.setToolTip("Use this prompt" if model_name else "Put this prompt in the message box")
            block = _spaced(4)
            block.setIndent(1)
            cursor.insertBlock(block, plain)
            cursor.insertText(f"“{prompt}”", link)
        self.showing_welcome = True

    def append_notice(self, text: str) -> None:
        """Append a grey, italic line that is not a message (e.g. what the model no longer sees)."""
        self._leave_welcome()
        with self._kept_at_bottom():
            cursor = self._end_cursor()
            block = QTextBlockFormat()
            block.setAlignment(Qt.AlignmentFlag.AlignCenter)
            block.setTopMargin(8)
            block.setBottomMargin(4)
            cursor.setBlockFormat(block)  # the end is always an empty block after the last card
            note = QTextCharFormat()
            note.setFontItalic(True)
            note.setForeground(QColor(self._theme().muted))
            cursor.insertText(f"— {text} —", note)

    def append_message(self, message) -> None:
        """Append one finished message at the end."""
        self._leave_welcome()
        with self._kept_at_bottom():
            cursor = self._open_card(message.role, message.id)
            if message.role == "user" and message.id is None:
                # A cursor at the start of the header line: later insertions all come after it, so it
                # stays put (one at the line's end would be pushed along by the body inserted there).
                self._pending_link = QTextCursor(cursor)
                self._pending_link.movePosition(QTextCursor.MoveOperation.StartOfBlock)
            fresh = False
            if message.role == "assistant":
                writer = self._writer(cursor)
                writer.write(message.content)
                fresh = writer.fresh
            else:
                plain = QTextCharFormat()
                plain.setForeground(QColor(self._theme().text))
                cursor.insertBlock(_spaced(4), plain)
                cursor.insertText(message.content, plain)
            self._insert_stats(cursor, message, fresh)
        if message.role == "user" and message.id is not None:
            self.editable_ids.add(message.id)

    def set_pending_user_id(self, message_id: int) -> None:
        """Give the user message shown before it was saved (id None) its id: its "edit" link appears."""
        cursor, self._pending_link = self._pending_link, None
        if cursor is not None:
            cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock)  # after "You"
            self._insert_edit_link(cursor, message_id)
            self.editable_ids.add(message_id)

    def is_empty(self) -> bool:
        """No messages shown (the welcome card does not count)."""
        return self.showing_welcome or self.document().isEmpty()

    def code_source(self, code_id: int) -> str | None:
        """The exact text of the code block whose Copy link is ``copy:<code_id>``."""
        return self._codes.get(code_id)

    # -- streaming --------------------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    @property
    def streamed_text(self) -> str:
        return "".join(self._stream_parts)

    def begin_stream(self) -> None:
        """Start an assistant reply that text pieces will be appended to."""
        self._leave_welcome()
        with self._kept_at_bottom():
            self._stream_start = self._end_cursor().position()
            cursor = self._open_card("assistant", None)
            self._stream_frame = cursor.currentFrame()
            self._tail_pos = self._body_pos = cursor.position()
            self._tail_fresh = False
        self._stream = BlockStream()
        self._stream_parts = []

    def append_stream_text(self, text: str) -> None:
        """Add a piece of the reply: finished blocks are rendered once, the growing last block again."""
        if self._stream is None or not text:
            return
        self._stream_parts.append(text)
        finished = self._stream.feed(text)
        with self._kept_at_bottom():
            cursor = self._clear_tail()
            if finished:
                self._write_finished(cursor, finished)
            self._write_tail(cursor)
            cursor.endEditBlock()

    def end_stream(self, message=None) -> None:
        """Finish the reply: render its last block for good and add its figures line.

        Without a message (nothing worth saving) the streamed card is removed. If the saved text is
        not what was streamed, the reply is rendered again from the saved text.
        """
        if self._stream is None:
            return
        stream, self._stream = self._stream, None
        with self._kept_at_bottom():
            if message is None:
                cursor = self._end_cursor()
                cursor.setPosition(self._stream_start, QTextCursor.MoveMode.KeepAnchor)
                cursor.removeSelectedText()
                cursor.setBlockFormat(QTextBlockFormat())
                self._stream_frame = None
                self._stream_parts = []
                return
            cursor = self._clear_tail()
            content = message.content or ""
            if content.startswith(stream.finished):
                rest = content[len(stream.finished):]
            else:  # the saved reply differs from the streamed one: render the saved one
                cursor.setPosition(self._body_pos)
                cursor.setPosition(self._stream_frame.lastPosition(), QTextCursor.MoveMode.KeepAnchor)
                cursor.removeSelectedText()
                self._tail_fresh = False
                rest = content
            fresh = self._tail_fresh
            if rest:
                writer = self._writer(cursor, fresh=fresh)
                writer.write(rest)
                fresh = writer.fresh
            self._insert_stats(cursor, message, fresh)
            cursor.endEditBlock()
        self._stream_frame = None
        self._stream_parts = []

    def _clear_tail(self) -> QTextCursor:
        """Remove the provisional tail; return a cursor (in an edit block) where writing resumes."""
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        cursor.setPosition(self._tail_pos)
        end = self._stream_frame.lastPosition()
        if end > self._tail_pos:
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
        return cursor

    def _write_finished(self, cursor: QTextCursor, markdown: str) -> None:
        writer = self._writer(cursor, fresh=self._tail_fresh)
        writer.write(markdown)
        self._tail_pos, self._tail_fresh = cursor.position(), writer.fresh

    def _write_tail(self, cursor: QTextCursor) -> None:
        """Render the growing last block, code uncoloured; its code ids are reused by the next render."""
        if self._stream.tail.strip():
            self._writer(cursor, fresh=self._tail_fresh, provisional=True).write(self._stream.tail)

    # -- pieces -----------------------------------------------------------------------------------

    def _theme(self) -> Theme:
        if self._theme_cache is None:
            self._theme_cache = Theme.from_palette(self.palette(), self.font())
        return self._theme_cache

    def _writer(self, cursor: QTextCursor, fresh: bool = False, provisional: bool = False) -> MarkdownWriter:
        """A writer at ``cursor``; its code blocks get Copy ids. ``provisional`` (the streamed tail):
        code uncoloured, and its ids are handed out again by the next render of the tail."""
        taken = [0]

        def register(code: str) -> int:
            code_id = self._next_code + taken[0]
            self._codes[code_id] = code
            if provisional:
                taken[0] += 1
            else:
                self._next_code += 1
            return code_id

        return MarkdownWriter(cursor, self._theme(), register, fresh=fresh, colour_code=not provisional)

    def _end_cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _open_card(self, role: str, message_id: int | None) -> QTextCursor:
        """A new card at the end with its header line ("You  edit"); the cursor is at the header's end."""
        theme = self._theme()
        cursor = self._end_cursor()
        cursor.insertFrame(theme.card_format(role))
        label = QTextCharFormat()
        label.setFontWeight(QFont.Weight.Bold)
        light, dark = ROLE_COLOURS.get(role, ("#000000", "#ffffff"))
        label.setForeground(QColor(dark if theme.dark else light))
        cursor.insertText(ROLE_LABELS.get(role, role.title()), label)
        if role == "user" and message_id is not None:
            self._insert_edit_link(cursor, message_id)
        return cursor

    def _insert_edit_link(self, cursor: QTextCursor, message_id: int) -> None:
        link = QTextCharFormat()
        link.setAnchor(True)
        link.setAnchorHref(f"{EDIT_SCHEME}:{message_id}")
        link.setForeground(QColor(self._theme().muted))
        link.setFontUnderline(True)
        link.setToolTip("Change this message and send it again")
        cursor.insertText("   ", QTextCharFormat())
        cursor.insertText("edit", link)

    def _insert_stats(self, cursor: QTextCursor, message, fresh: bool = False) -> None:
        if message.role != "assistant" or message.stats is None:
            return
        small = QTextCharFormat()
        small.setForeground(QColor(self._theme().muted))
        small.setFontPointSize(max(7.0, self._theme().point_size - 1.5))
        small.setToolTip(message.stats.details())
        block = _spaced(8)
        if fresh:
            cursor.setBlockFormat(block)
            cursor.setBlockCharFormat(QTextCharFormat())
        else:
            cursor.insertBlock(block, QTextCharFormat())
        cursor.insertText(message.stats.summary(), small)

    def _leave_welcome(self) -> None:
        if self.showing_welcome:
            self._reset()

    # -- behaviour --------------------------------------------------------------------------------

    def loadResource(self, kind, url):  # noqa: N802 (Qt's name)
        """Never load anything a reply names (images, files): the transcript shows only its own text."""
        return None

    def _kept_at_bottom(self):
        return _StickToBottom(self)

    def _on_anchor(self, url: QUrl) -> None:
        scheme = url.scheme()
        if scheme == EDIT_SCHEME:
            try:
                self.sig_edit_requested.emit(int(url.path()))
            except ValueError:
                pass
        elif scheme == COPY_SCHEME:
            try:
                code = self._codes.get(int(url.path()))
            except ValueError:
                code = None
            if code is not None:
                QGuiApplication.clipboard().setText(code)
        elif scheme == PROMPT_SCHEME:
            try:
                prompt = self._prompts[int(url.path())]
            except (ValueError, IndexError):
                return
            self.sig_prompt_chosen.emit(prompt)
        elif scheme in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)


def _warm_up_highlighting() -> None:
    """Load Pygments' lexer table and a common lexer once the window is idle, not mid-reply
    (the first code block would otherwise stall the event loop ~50 ms on a slow machine)."""
    highlight("x = 1\n", "python")


def _spaced(top: float) -> QTextBlockFormat:
    block = QTextBlockFormat()
    block.setTopMargin(top)
    return block


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
