"""The Chat tab: conversations on the left, the transcript in the middle, model and settings on the right.

It composes small widgets and only shows things. The conversation logic (send, regenerate, edit
and resend, titles, saving stopped or broken-off replies, fitting long chats into the context) is
``runtime.chat.session.ConversationSession``, one per open conversation, whose blocking turns run
on workers through ``ChatSession`` (the engine or server, and the reply being streamed). The store
is read here to show a conversation; the turn writes to it off the UI thread.

A reply the store could not save (another program holds the database's write lock) stays shown;
a banner says so, offers "Copy reply", and "Retry" once the background retries are spent
(``ChatSession.unsaved``). Nothing here waits on the database lock for long: UI-thread writes give up
after ``UI_BUSY_TIMEOUT_S``, and the turn's writes and retries run on workers.

Test hooks: ``send(text)``, ``stop()``, ``regenerate()``, ``edit_message(message_id)``,
``load_local(path, options)``, ``connect_remote(url, key, model)``, ``reload_engine()``,
``loader.confirm_too_big`` (replaceable),
``open_conversation(id)``, ``new_conversation()``, ``copy_reply()``; the signals ``sig_reply_finished(message|None)``
and ``sig_model_ready(str)``; the attributes ``session``, ``chat`` (the open ConversationSession),
``engine`` and ``store``.
"""
from __future__ import annotations

from types import SimpleNamespace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout,
                               QWidget)

from runtime.chat.session import DEFAULT_TITLE, ConversationSession
from runtime.engine.types import LoadOptions
from runtime.errors import EngineBuildMismatch, StoreError
from widgets.common.banner import Banner
from widgets.common.busy_bar import BusyBar
from widgets.chat.input import ChatInput
from widgets.chat.session import ChatSession
from widgets.chat.conversation_list import ConversationList
from widgets.chat.conversation_settings import ConversationSettings
from widgets.chat.message_view import MessageView
from widgets.chat.model_loader import ModelLoader
from widgets.chat.model_picker import ModelPicker
from widgets.workers import error_text


UI_BUSY_TIMEOUT_S = 0.25  # a write from the UI thread waits this long for another writer, then says so


class ChatTab(QWidget):
    """Chat with a local model or a remote server; conversations persist in the store."""

    sig_reply_finished = Signal(object)   # the assistant Message (id None while unsaved), or None if nothing kept
    sig_model_ready = Signal(str)
    sig_library_refresh_requested = Signal()

    def __init__(self, store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        store.set_busy_timeout(UI_BUSY_TIMEOUT_S)  # this (UI) thread never waits long on the database
        self.session = ChatSession(self)
        self.loader = ModelLoader(self.session, self)
        self.conversation_id: int | None = None
        self.chat: ConversationSession | None = None
        self._shown_forgotten = 0  # the "beyond the model's memory" note the view shows
        self._edit_message_id: int | None = None
        self._sending: tuple[str, int | None] | None = None  # (text, edited message id) of the turn running
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
        s.sig_reply_saved.connect(self._on_reply_saved)
        s.sig_save_failed.connect(lambda error: self._show_unsaved(error, final=True))

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
        try:
            conv = self.store.create_conversation(
                DEFAULT_TITLE, backend=self.session.backend or "local", model_ref=self.session.model_ref,
                remote_base_url=self.session.remote_base_url, system_prompt=system_prompt, sampling=sampling,
                load=self.session.load_options, context_policy=self.settings_panel.context_policy())
        except StoreError as exc:
            self.banner.show_message(error_text(exc), "error")
            return -1
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
            self.chat = None
        else:
            if self.chat is None or self.chat.conversation_id != conversation_id:
                self.chat = ConversationSession(self.store, conversation_id)
            conv = self.store.get_conversation(conversation_id)
            self.settings_panel.set_values(conv.system_prompt, conv.sampling, conv.context_policy)
            if not self.session.backend:
                self.picker.show_conversation_backend(conv.backend, conv.model_ref, conv.remote_base_url)
        self._show_messages()
        if self.conversations.current_id() != conversation_id:
            self.conversations.select(conversation_id)
        self._update_controls()

    def _show_messages(self, messages=None) -> None:
        """Show the open conversation (or ``messages``), with the note on what the model no longer sees."""
        if self.conversation_id is None:
            self.view.set_messages([])
            return
        if messages is None:
            messages = self.store.messages(self.conversation_id)
            unsaved = self.session.unsaved
            if unsaved is not None and unsaved[0].conversation_id == self.conversation_id:
                messages = [*messages, _shown_reply(unsaved[1])]
        self._shown_forgotten = self.chat.dropped if self.chat else 0
        self.view.set_messages(messages, forgotten=self._shown_forgotten)

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
        try:
            self.store.update_conversation(self.conversation_id, system_prompt=system_prompt, sampling=sampling,
                                           context_policy=self.settings_panel.context_policy())
        except StoreError as exc:  # busy (another program writing) or broken: say so, never freeze
            self.banner.show_message(f"The settings were not saved. {error_text(exc)}", "error")

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
        if self.conversation_id is None and self.new_conversation() < 0:
            return False
        edit_id = self._edit_message_id
        self.cancel_edit()
        self.input.clear()
        if edit_id is not None:
            messages = self.store.messages(self.conversation_id)
            kept = next((messages[:i] for i, m in enumerate(messages) if m.id == edit_id), messages)
            self._show_messages(kept)
        self.view.append_message(SimpleNamespace(id=None, role="user", content=text, stats=None))
        self._begin_reply((text, edit_id))
        params = self.settings_panel.values()[1]
        if edit_id is None:
            self.session.send(self.chat, text, params)
        else:
            self.session.edit_and_resend(self.chat, edit_id, text, params)
        return True

    def regenerate(self) -> bool:
        """Drop the last reply and ask for a new one to the same messages."""
        if self.conversation_id is None or self.session.generating or not self.session.ready:
            return False
        self.settings_panel.flush()
        messages = self.store.messages(self.conversation_id)
        if messages and messages[-1].role == "assistant":
            messages = messages[:-1]
        if not messages or messages[-1].role != "user":
            return False
        self.cancel_edit()
        self._show_messages(messages)
        self._begin_reply(None)
        self.session.regenerate(self.chat, self.settings_panel.values()[1])
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
        self._enter_edit(message_id, found[0].content)
        return True

    def _enter_edit(self, message_id: int, text: str) -> None:
        self._edit_message_id = message_id
        self.input.setPlainText(text)
        self.input.setFocus()
        self.edit_note.setText("Editing an earlier message: sending replaces it and every message after it.")
        self.edit_note.show()
        self.cancel_edit_button.show()

    def cancel_edit(self) -> None:
        if self._edit_message_id is not None:
            self.input.clear()
        self._edit_message_id = None
        self.edit_note.hide()
        self.cancel_edit_button.hide()

    def _begin_reply(self, sending: tuple[str, int | None] | None) -> None:
        self._sending = sending
        self.banner.dismiss()
        self.view.begin_stream()

    def _finish_reply(self, message, redraw: bool = True) -> None:
        """Show the conversation as saved (the reply, or what was kept of it) and report the message.

        ``redraw=False``: the view already shows it (the streamed reply was rendered in place).
        """
        self._sending = None
        if redraw:
            self._show_messages()
        self.conversations.schedule_reload()  # the turn retitled or reordered it: one rebuild per reply
        self._update_controls()
        self.sig_reply_finished.emit(message)

    def _on_reply_done(self, turn) -> None:
        message = _shown_reply(turn)
        if turn is None or turn.dropped != self._shown_forgotten:
            # stopped before anything was saved, or the note on forgotten messages moved: redraw
            self._finish_reply(message)
        else:
            # The usual case: render the reply in place, costing the reply only, not the whole
            # transcript (a redraw of 100 messages takes ~100 ms on the UI thread).
            self.view.end_stream(message)
            if turn.user is not None:
                self.view.set_pending_user_id(turn.user.id)
            self._finish_reply(message, redraw=False)
        if turn is not None and turn.save_error is not None:
            self._show_unsaved(turn.save_error, final=False)

    def _on_reply_failed(self, error) -> None:
        sending = self._sending
        written = hasattr(error, "partial_reply")  # the turn failed after it saved the user's message
        if sending and not written and not self.input.toPlainText():
            text, edit_id = sending  # nothing was written (too long, engine gone): give the message back
            if edit_id is not None:
                self._enter_edit(edit_id, text)
            else:
                self.input.setPlainText(text)
        turn = getattr(error, "turn", None)
        self._finish_reply(_shown_reply(turn) if turn is not None else None)
        unsaved = self.session.unsaved  # this reply, or an earlier one the turn had to save first
        if unsaved is not None:
            first = error is unsaved[1].save_error
            before = "Nothing was sent: the reply before must be saved first." if first else error_text(error)
            self._show_unsaved(unsaved[1].save_error, final=True, before=before)
        elif not self.session.engine_dead:
            self.banner.show_message(error_text(error), "error")

    def _on_engine_died(self, error) -> None:
        """Say why the engine died; offer Reload unless this llama.cpp build cannot run on this CPU."""
        self.picker.set_status("The model engine stopped.")
        if isinstance(error, EngineBuildMismatch):
            self.banner.show_message(f"{error_text(error)}\nThis conversation is saved.", "error")
        else:
            self.banner.show_message(f"{error.message} This conversation is saved; reload the model to continue.",
                                     "error", action="reload", action_text="Reload")
        self._update_controls()

    def _on_banner_action(self, action: str) -> None:
        if action == "reload":
            self.reload_engine()
        elif action == "copy_reply":
            self.copy_reply()
        elif action == "retry_save" and self.session.retry_save():
            self.banner.show_message("Saving the reply…", "info", "copy_reply", "Copy reply")

    # -- replies not saved yet --------------------------------------------------------------------

    def copy_reply(self) -> bool:
        """Put the reply that is not saved yet on the clipboard. False when there is none."""
        if self.session.unsaved is None:
            return False
        QGuiApplication.clipboard().setText(self.session.unsaved[1].text)
        return True

    def _show_unsaved(self, error, final: bool, before: str = "") -> None:
        """Say that a reply is not saved: retrying in the background, or (``final``) failed, with Retry."""
        if final:
            text = (f"The reply could not be saved. {error_text(error)}\nIt is still shown here: click Retry "
                    "once that is done, or Copy reply to keep it elsewhere.")
        else:
            text = (f"The reply is not saved yet ({error.message}). Retrying in the background; "
                    "the reply stays shown here meanwhile.")
        text = f"{before}\n{text}" if before else text
        more = (("retry_save", "Retry"),) if final else ()
        self.banner.show_message(text, "error" if final else "warning", "copy_reply", "Copy reply", more)

    def _on_reply_saved(self, message) -> None:
        if self.banner.action == "copy_reply":
            if message is not None:
                self.banner.show_message("The reply is saved now.", "info")
            else:  # its conversation was deleted meanwhile, and the reply with it
                self.banner.dismiss()
        self.conversations.schedule_reload()

    def _explain_not_ready(self) -> None:
        if self.session.loading:
            self.banner.show_message("The model is still loading.", "info")
        elif self.session.engine_dead:
            self._on_engine_died(self.session.engine.crash_error("idle"))
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
        self.conversations.shutdown()
        self.loader.shutdown()
        self.session.shutdown()


def _shown_reply(turn):
    """What to show for a turn's reply: the saved message, the unsaved text (id None), or None."""
    if turn is None or turn.save_error is None:
        return None if turn is None else turn.reply
    return SimpleNamespace(id=None, role="assistant", content=turn.text, stats=turn.stats)
