"""The Chat tab: conversations on the left, the transcript in the middle, model and settings on the right.

It composes small widgets and wires them to two owners of state: ``runtime.store.ConversationStore``
(what was said, saved as it happens: the user message on send, the reply when it ends or is stopped)
and ``ChatSession`` (the engine or server, and the reply being streamed).

Test hooks: ``send(text)``, ``stop()``, ``regenerate()``, ``edit_message(message_id)``,
``load_local(path, options)``, ``connect_remote(url, key, model)``, ``reload_engine()``,
``loader.confirm_too_big`` (replaceable),
``open_conversation(id)``, ``new_conversation()``; the signals ``sig_reply_finished(message|None)``
and ``sig_model_ready(str)``; the attributes ``session``, ``engine`` and ``store``.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout,
                               QWidget)

from runtime.chat_types import LoadOptions
from widgets.banner import Banner
from widgets.busy_bar import BusyBar
from widgets.chat_input import ChatInput
from widgets.chat_session import ChatSession
from widgets.conversation_list import ConversationList
from widgets.conversation_settings import ConversationSettings
from widgets.message_view import MessageView
from widgets.model_loader import ModelLoader
from widgets.model_picker import ModelPicker
from widgets.workers import error_text

DEFAULT_TITLE = "New chat"
TITLE_LENGTH = 48


def title_from(text: str) -> str:
    """A conversation title from its first message: the first line, shortened."""
    line = text.strip().splitlines()[0] if text.strip() else DEFAULT_TITLE
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


class ChatTab(QWidget):
    """Chat with a local model or a remote server; conversations persist in the store."""

    sig_reply_finished = Signal(object)   # the saved assistant Message, or None when nothing was kept
    sig_model_ready = Signal(str)
    sig_library_refresh_requested = Signal()

    def __init__(self, store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.session = ChatSession(self)
        self.loader = ModelLoader(self.session, self)
        self.conversation_id: int | None = None
        self._edit_position: int | None = None
        self._reply_conversation: int | None = None
        self._build()
        self._wire()
        ids = self.conversations.ids()
        if ids:
            self.open_conversation(ids[0])
        self._update_controls()

    # -- layout -----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.conversations = ConversationList(self.store)
        self.banner = Banner()
        self.view = MessageView()
        self.edit_note = QLabel()
        self.edit_note.hide()
        self.cancel_edit_button = QPushButton("Cancel edit")
        self.cancel_edit_button.hide()
        self.input = ChatInput()
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.regenerate_button = QPushButton("Regenerate")
        self.picker = ModelPicker()
        self.busy = BusyBar()
        self.settings_panel = ConversationSettings()

        edit_row = QHBoxLayout()
        edit_row.addWidget(self.edit_note, 1)
        edit_row.addWidget(self.cancel_edit_button)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.regenerate_button, self.stop_button, self.send_button):
            buttons.addWidget(button)
        middle = QWidget()
        column = QVBoxLayout(middle)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.banner)
        column.addWidget(self.view, 1)
        column.addLayout(edit_row)
        column.addWidget(self.input)
        column.addLayout(buttons)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.picker)
        side_layout.addWidget(self.busy)
        side_layout.addWidget(self.settings_panel, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        for widget in (self.conversations, middle, side):
            self.splitter.addWidget(widget)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([220, 640, 300])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

    def _wire(self) -> None:
        self.conversations.sig_selected.connect(self._on_conversation_selected)
        self.conversations.sig_new_requested.connect(self.new_conversation)
        self.conversations.sig_deleted.connect(self._on_conversation_deleted)
        self.view.sig_edit_requested.connect(self.edit_message)
        self.cancel_edit_button.clicked.connect(self.cancel_edit)
        self.input.sig_submit.connect(self.send)
        self.send_button.clicked.connect(lambda: self.send())
        self.stop_button.clicked.connect(self.stop)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.settings_panel.sig_changed.connect(self._save_settings)
        self.picker.local.sig_load.connect(self._on_load_requested)
        self.picker.local.sig_refresh.connect(self.sig_library_refresh_requested)
        self.picker.remote.sig_connect.connect(self.connect_remote)
        self.busy.sig_cancel.connect(self.loader.cancel)
        self.loader.sig_busy.connect(self._on_busy)
        self.loader.sig_idle.connect(self._on_idle)
        self.loader.sig_failed.connect(self._on_load_failed)
        self.banner.sig_action.connect(self._on_banner_action)

        s = self.session
        s.sig_busy_changed.connect(self._update_controls)
        s.sig_ready.connect(self._on_ready)
        s.sig_text.connect(self.view.append_stream_text)
        s.sig_reply_done.connect(self._on_reply_done)
        s.sig_reply_failed.connect(self._on_reply_failed)
        s.sig_engine_died.connect(self._on_engine_died)

    @property
    def engine(self):
        """The running LocalEngine, or None."""
        return self.session.engine

    # -- library and loading ----------------------------------------------------------------------

    def set_library(self, rows: list, prefer: str = "") -> None:
        """Offer these LibraryRows in the model picker."""
        self.picker.local.set_rows(rows, prefer)

    def load_preferred_model(self) -> bool:
        """Load the model the picker shows (last used, else the starter) so a new user can chat at once.

        Only when nothing is loaded yet and the model comfortably fits; False otherwise.
        """
        row = self.picker.local.current_row()
        if row is None or row.fit is None or row.fit.status != "fits":
            return False
        if self.session.backend or self.loader.busy:
            return False
        return self.load_local(str(row.entry.path), self.picker.local.options(), info=row.entry.info)

    def _on_load_requested(self, row, options: LoadOptions) -> None:
        self.load_local(str(row.entry.path), options, info=row.entry.info)

    def load_local(self, model_path: str, options: LoadOptions | None = None, info=None) -> bool:
        """Load a local model (fit check first; a question if it is too big). False if busy."""
        self.banner.dismiss()
        return self.loader.load_local(model_path, options or self.picker.local.options(), info)

    def connect_remote(self, base_url: str, api_key: str = "", model: str = "") -> bool:
        """Check a remote OpenAI-compatible server off the UI thread, then chat with it."""
        self.banner.dismiss()
        return self.loader.connect_remote(base_url, api_key, model)

    def reload_engine(self) -> bool:
        """Start a fresh engine with the model and options of the one that stopped."""
        if not self.loader.reload():
            return False
        self.banner.dismiss()
        return True

    def _on_busy(self, text: str) -> None:
        self.busy.start(text)
        self._update_controls()

    def _on_idle(self) -> None:
        self.busy.finish()
        if not self.session.ready:
            self.picker.set_status("No model loaded.")
        self._update_controls()

    def _on_ready(self, description: str) -> None:
        self.banner.dismiss()
        if self.session.backend == "local":
            self.picker.local.select_path(self.session.model_ref)
            self.picker.local.set_options(self.session.load_options)
        self.picker.set_status(description)
        self.sig_model_ready.emit(description)

    def _on_load_failed(self, error) -> None:
        self.banner.show_message(error_text(error), "error")

    # -- conversations ----------------------------------------------------------------------------

    def new_conversation(self) -> int:
        """Create an empty conversation with the current settings and open it."""
        if self.session.generating:
            return self.conversation_id or -1
        self.settings_panel.flush()
        system_prompt, sampling = self.settings_panel.values()
        conv = self.store.create_conversation(
            DEFAULT_TITLE, backend=self.session.backend or "local", model_ref=self.session.model_ref,
            remote_base_url=self.session.remote_base_url, system_prompt=system_prompt, sampling=sampling,
            load=self.session.load_options)
        self.conversations.reload(conv.id)
        self.open_conversation(conv.id)
        return conv.id

    def open_conversation(self, conversation_id: int | None) -> None:
        """Show a saved conversation (its messages, system prompt and sampling)."""
        if self.session.generating:
            return
        if conversation_id != self.conversation_id:
            self.settings_panel.flush()
        self.cancel_edit()
        self.conversation_id = conversation_id
        if conversation_id is None:
            self.view.set_messages([])
        else:
            conv = self.store.get_conversation(conversation_id)
            self.settings_panel.set_values(conv.system_prompt, conv.sampling)
            self.view.set_messages(self.store.messages(conversation_id))
            if not self.session.backend:
                self.picker.show_conversation_backend(conv.backend, conv.model_ref, conv.remote_base_url)
        if self.conversations.current_id() != conversation_id:
            self.conversations.select(conversation_id)
        self._update_controls()

    def _on_conversation_selected(self, conversation_id) -> None:
        if conversation_id != self.conversation_id:
            self.open_conversation(conversation_id)

    def _on_conversation_deleted(self, conversation_id: int) -> None:
        if conversation_id == self.conversation_id:
            self.conversation_id = None
            self.open_conversation(self.conversations.current_id())

    def _save_settings(self) -> None:
        if self.conversation_id is None:
            return
        system_prompt, sampling = self.settings_panel.values()
        self.store.update_conversation(self.conversation_id, system_prompt=system_prompt, sampling=sampling)

    # -- sending ----------------------------------------------------------------------------------

    def send(self, text: str | None = None) -> bool:
        """Send ``text`` (default: the input box) and stream the reply. False if nothing was sent."""
        text = (self.input.toPlainText() if text is None else text).strip()
        if not text or self.session.generating:
            return False
        if not self.session.ready:
            self._explain_not_ready()
            return False
        self.settings_panel.flush()
        conv_id = self._conversation_for(text)
        if self._edit_position is not None:
            self.store.delete_messages_from(conv_id, self._edit_position)
            self.cancel_edit()
            self.view.set_messages(self.store.messages(conv_id))
        message = self.store.add_message(conv_id, "user", text)
        self.view.append_message(message)
        self.input.clear()
        self._start_reply(conv_id)
        return True

    def regenerate(self) -> bool:
        """Drop the last reply and ask for a new one to the same messages."""
        conv_id = self.conversation_id
        if conv_id is None or self.session.generating or not self.session.ready:
            return False
        self.settings_panel.flush()
        messages = self.store.messages(conv_id)
        if messages and messages[-1].role == "assistant":
            self.store.delete_messages_from(conv_id, messages[-1].position)
            messages = messages[:-1]
            self.view.set_messages(messages)
        if not messages or messages[-1].role != "user":
            return False
        self.cancel_edit()
        self._start_reply(conv_id)
        return True

    def stop(self) -> None:
        """Stop the reply; what was generated so far is kept and saved."""
        self.session.stop()

    def edit_message(self, message_id: int) -> bool:
        """Put a user message back in the input; sending replaces it and everything after it."""
        if self.conversation_id is None or self.session.generating:
            return False
        found = [m for m in self.store.messages(self.conversation_id) if m.id == message_id]
        if not found or found[0].role != "user":
            return False
        self._edit_position = found[0].position
        self.input.setPlainText(found[0].content)
        self.input.setFocus()
        self.edit_note.setText("Editing an earlier message: sending replaces it and every message after it.")
        self.edit_note.show()
        self.cancel_edit_button.show()
        return True

    def cancel_edit(self) -> None:
        if self._edit_position is not None:
            self.input.clear()
        self._edit_position = None
        self.edit_note.hide()
        self.cancel_edit_button.hide()

    def _conversation_for(self, text: str) -> int:
        """The open conversation brought up to date with the backend, or a new one titled from ``text``."""
        if self.conversation_id is None:
            self.new_conversation()
        conv = self.store.get_conversation(self.conversation_id)
        changes = {}
        if conv.title == DEFAULT_TITLE and not self.store.messages(conv.id):
            changes["title"] = title_from(text)
        for field in ("backend", "model_ref", "remote_base_url"):
            if getattr(self.session, field) and getattr(conv, field) != getattr(self.session, field):
                changes[field] = getattr(self.session, field)
        if changes:
            self.store.update_conversation(conv.id, **changes)
        return conv.id

    def _start_reply(self, conv_id: int) -> None:
        _system_prompt, params = self.settings_panel.values()
        self._reply_conversation = conv_id
        self.banner.dismiss()
        self.view.begin_stream()
        self.session.generate(self.store.chat_messages(conv_id), params)
        self.conversations.reload()

    def _finish_reply(self, text: str, stats) -> None:
        conv_id, self._reply_conversation = self._reply_conversation, None
        message = None
        if conv_id is not None and (text or stats is not None):
            message = self.store.add_message(conv_id, "assistant", text, stats)
        self.view.end_stream(message)
        self.conversations.reload()
        self._update_controls()
        self.sig_reply_finished.emit(message)

    def _on_reply_done(self, reply) -> None:
        text = reply.text or self.view.streamed_text
        if not text and reply.stats.finish_reason == "cancelled":
            self._finish_reply("", None)
        else:
            self._finish_reply(text, reply.stats)

    def _on_reply_failed(self, error) -> None:
        self._finish_reply(self.view.streamed_text, None)
        if not self.session.engine_dead:
            self.banner.show_message(error_text(error), "error")

    def _on_engine_died(self, reason: str) -> None:
        self.picker.set_status("The model engine stopped.")
        self.banner.show_message(f"The model engine stopped: {reason}. "
                                 "This conversation is saved; reload the model to continue.",
                                 "error", action="reload", action_text="Reload")
        self._update_controls()

    def _on_banner_action(self, action: str) -> None:
        if action == "reload":
            self.reload_engine()

    def _explain_not_ready(self) -> None:
        if self.session.loading:
            self.banner.show_message("The model is still loading.", "info")
        elif self.session.engine_dead:
            self._on_engine_died(self.session.engine.exit_reason())
        else:
            self.banner.show_message("Load a model (or connect to a server) first, on the right.", "info")

    # -- state ------------------------------------------------------------------------------------

    def _update_controls(self) -> None:
        s = self.session
        generating = s.generating
        has_messages = self.conversation_id is not None and not self.view.document().isEmpty()
        self.send_button.setEnabled(s.ready and not generating)
        self.stop_button.setEnabled(generating)
        self.regenerate_button.setEnabled(s.ready and not generating and has_messages)
        self.conversations.setEnabled(not generating)
        self.picker.set_busy(self.loader.busy)

    def splitter_sizes(self) -> list[int]:
        return self.splitter.sizes()

    def set_splitter_sizes(self, sizes: list[int]) -> None:
        if len(sizes) == self.splitter.count() and sum(sizes) > 0:
            self.splitter.setSizes(sizes)

    def shutdown(self) -> None:
        """Stop the reply (saving it), stop loading, join threads and end the engine process."""
        self.settings_panel.flush()
        self.loader.shutdown()
        self.session.shutdown()
