"""The Chat tab: conversations on the left, the transcript in the middle, model and settings on the right.

It composes small widgets and only shows things. The conversation logic (send, regenerate, edit
and resend, titles, saving stopped or broken-off replies, fitting long chats into the context) is
``runtime.chat.session.ConversationSession``, one per open conversation, whose blocking turns run
on workers through ``ChatSession`` (the engine or server, and the reply being streamed). The store
is read here to show a conversation; the turn writes to it off the UI thread.

Where a message goes is explicit (``ChatSession.active``): the "This computer / Remote server"
switch chooses the target, the line under the picker always names it ("Messages go to: …"), and a
load or connect changes it only once the new one is ready (a failed connect changes nothing). A
conversation remembers the target that answered it; reopening one bound to another target keeps
sending to the current one (as LM Studio does) and says so, with a button to switch back (the
comparison is ``widgets.chat.conversation_target``). Saved remote servers (name, URL, model) live in
the database, their API keys in the OS keyring: ``widgets.chat.saved_servers.SavedServers``.

One reply generates at a time, but the conversation list stays usable while it streams: its text is
shown only while its own conversation is on screen (switching back re-shows it, still streaming),
and it is saved into that conversation whatever is shown. Send elsewhere meanwhile says it waits.

A reply the store could not save (another program holds the database's write lock) stays shown;
a banner says so, offers "Copy reply", and "Retry" once the background retries are spent
(``ChatSession.unsaved``). Nothing here waits on the database lock for long: UI-thread writes give up
after ``UI_BUSY_TIMEOUT_S``, and the turn's writes and retries run on workers. The banner's words
are ``widgets.chat.notices``; what the transcript adds to the stored messages (the turn being
written, an unsaved reply) is ``widgets.chat.transcript``.

Test hooks: ``send(text)``, ``stop()``, ``regenerate()``, ``edit_message(message_id)``,
``load_local(path, options)``, ``connect_remote(url, key, model)``, ``reload_engine()``,
``choose_target("local" | "remote")``, ``save_server()``, ``delete_server(confirm=True)``,
``switch_to_conversation_target()``, ``loader.confirm_too_big`` (replaceable),
``open_conversation(id)``, ``new_conversation()``, ``copy_reply()``; the signals
``sig_reply_finished(message|None)``, ``sig_model_ready(str)`` and ``sig_server_saved(server)``; the
attributes ``session``, ``chat`` (the open ConversationSession), ``engine``, ``store``, and from
``saved_servers``: ``servers`` (the RemoteServerStore), ``keys`` (ServerKeys) and ``keyring_ok``.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from runtime.chat.session import DEFAULT_TITLE, ConversationSession
from runtime.engine.types import LoadOptions
from runtime.errors import RemoteServerError, StoreError
from widgets.common.banner import Banner
from widgets.common.busy_bar import BusyBar
from widgets.chat.input import ChatInput
from widgets.chat.session import ChatSession
from widgets.chat.conversation_list import ConversationList
from widgets.chat.conversation_settings import ConversationSettings
from widgets.chat.conversation_target import preset_picker, same_server, same_target, target_text
from widgets.chat import notices
from widgets.chat.message_view import EXAMPLE_PROMPTS, MessageView
from widgets.chat.model_loader import ModelLoader
from widgets.chat.model_picker import ModelPicker
from widgets.chat.panels import FoldingPanels, VerticalScroll
from widgets.chat.saved_servers import SavedServers
from widgets.chat.transcript import before_message, shown_reply, unstored, with_turn_in_progress
from widgets.workers import error_text


UI_BUSY_TIMEOUT_S = 0.25  # a write from the UI thread waits this long for another writer, then says so


class ChatTab(QWidget):
    """Chat with a local model or a remote server; conversations persist in the store."""

    sig_reply_finished = Signal(object)   # the assistant Message (id None while unsaved), or None if nothing kept
    sig_model_ready = Signal(str)
    sig_library_refresh_requested = Signal()
    sig_server_saved = Signal(object)     # the RemoteServer saved (its key, if any, is stored by then)

    def __init__(self, store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        store.set_busy_timeout(UI_BUSY_TIMEOUT_S)  # this (UI) thread never waits long on the database
        self.session = ChatSession(self)
        self.loader = ModelLoader(self.session, self)
        self.conversation_id: int | None = None
        self.chat: ConversationSession | None = None
        self._chats: dict[int, ConversationSession] = {}  # one per conversation opened (keeps its cut)
        self._shown_forgotten = 0  # the "beyond the model's memory" note the view shows
        self._edit_message_id: int | None = None
        self._sending: tuple[str, int | None] | None = None  # (text, edited message id) of the turn running
        self._build()
        self.saved_servers = SavedServers(store.path, self.picker.remote, self.banner, self, UI_BUSY_TIMEOUT_S)
        self.servers, self.keys = self.saved_servers.servers, self.saved_servers.keys  # the store, the API keys
        self._wire()
        self._show_target()
        ids = self.conversations.ids()
        if ids:
            self.open_conversation(ids[0])
        else:
            self._show_welcome()
        self._update_controls()

    # -- layout -----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.panels = FoldingPanels({"conversations": 0, "side": 2},
                                    {"conversations": "☰ Chats", "side": "Model && settings ⚙"}, self)
        self._panel_toggles_row = self.panels.button_row()
        self.conversations = ConversationList(self.store)
        self.banner = Banner()
        self.view = MessageView()
        self.edit_note = QLabel()
        self.edit_note.hide()
        self.cancel_edit_button = QPushButton("Cancel edit")
        self.cancel_edit_button.hide()
        self.stream_note = QLabel()
        self.stream_note.setWordWrap(True)
        self.stream_note.setStyleSheet("color: #616161;")
        self.stream_note.hide()
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
        column.addLayout(self._panel_toggles_row)
        column.addWidget(self.banner)
        column.addWidget(self.view, 1)
        column.addLayout(edit_row)
        column.addWidget(self.stream_note)
        column.addWidget(self.input)
        column.addLayout(buttons)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.picker)
        side_layout.addWidget(self.busy)
        side_layout.addWidget(self.settings_panel, 1)
        from widgets.chat.serve_panel import ServePanel  # "Serve to other apps" (reads session.engine only)

        self.serve_panel = ServePanel(self.session)
        side_layout.addWidget(self.serve_panel)

        side_scroll = VerticalScroll(side)  # a short window scrolls the settings instead of growing

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        for widget in (self.conversations, middle, side_scroll):
            self.splitter.addWidget(widget)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([220, 640, 300])
        self.panels.attach(self.splitter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

    def _wire(self) -> None:
        self.conversations.sig_selected.connect(self._on_conversation_selected)
        self.conversations.sig_new_requested.connect(self.new_conversation)
        self.conversations.sig_deleted.connect(self._on_conversation_deleted)
        self.view.sig_edit_requested.connect(self.edit_message)
        self.view.sig_prompt_chosen.connect(self._on_prompt_chosen)
        self.cancel_edit_button.clicked.connect(self.cancel_edit)
        self.input.sig_submit.connect(self.send)
        self.send_button.clicked.connect(lambda: self.send())
        self.stop_button.clicked.connect(self.stop)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.settings_panel.sig_changed.connect(self._save_settings)
        self.picker.local.sig_load.connect(self._on_load_requested)
        self.picker.local.sig_refresh.connect(self.sig_library_refresh_requested)
        self.picker.sig_target_chosen.connect(self.choose_target)
        self.saved_servers.sig_connect.connect(self.connect_remote)
        self.saved_servers.sig_saved.connect(self.sig_server_saved)
        self.saved_servers.sig_deleted.connect(self._on_server_deleted)
        self.busy.sig_cancel.connect(self.loader.cancel)
        self.loader.sig_busy.connect(self._on_busy)
        self.loader.sig_idle.connect(self._on_idle)
        self.loader.sig_failed.connect(self._on_load_failed)
        self.banner.sig_action.connect(self._on_banner_action)

        s = self.session
        s.sig_busy_changed.connect(self._update_controls)
        s.sig_ready.connect(self._on_ready)
        s.sig_target_changed.connect(self._show_target)
        s.sig_text.connect(self._on_stream_text)
        s.sig_reply_done.connect(self._on_reply_done)
        s.sig_reply_failed.connect(self._on_reply_failed)
        s.sig_engine_died.connect(self._on_engine_died)
        s.sig_reply_saved.connect(self._on_reply_saved)
        s.sig_save_failed.connect(lambda error: notices.unsaved(self.banner, error, final=True))

    @property
    def engine(self):
        """The running LocalEngine, or None."""
        return self.session.engine

    @property
    def keyring_ok(self) -> bool | None:
        """Whether the OS keyring keeps API keys; None until checked."""
        return self.saved_servers.keyring_ok

    # -- library and loading ----------------------------------------------------------------------

    def set_library(self, rows: list, prefer: str = "") -> None:
        """Offer these LibraryRows in the model picker."""
        self.picker.local.set_rows(rows, prefer)

    def load_preferred_model(self) -> bool:
        """Load the model the picker shows (last used, else the starter) so a new user can chat at once.

        Only when nothing is loaded yet and the model comfortably fits; False otherwise.
        """
        row = self.picker.local.current_row()
        verdict = self.picker.local.verdict or (row.fit if row is not None else None)  # for the Context shown
        if row is None or verdict is None or verdict.status != "fits":
            return False
        if self.session.engine is not None or self.session.remote is not None or self.loader.busy:
            return False
        return self.load_local(str(row.entry.path), self.picker.local.options(), info=row.entry.info)

    def _on_load_requested(self, row, options: LoadOptions) -> None:
        self.load_local(str(row.entry.path), options, info=row.entry.info)

    def load_local(self, model_path: str, options: LoadOptions | None = None, info=None) -> bool:
        """Load a local model (fit check first; a question if it is too big). False if busy."""
        self.banner.dismiss()
        return self.loader.load_local(model_path, options or self.picker.local.options(), info)

    def connect_remote(self, base_url: str, api_key: str = "", model: str = "", server=None) -> bool:
        """Check a remote OpenAI-compatible server off the UI thread, then send messages to it.

        ``server``: the saved RemoteServer it is (its name is shown, its saved key used when
        ``api_key`` is empty). The address is checked first; until the server answers, messages go
        where they went before, and a failure leaves everything as it was.
        """
        self.banner.dismiss()
        lookup = self.saved_servers.key_lookup(server) if not api_key else None
        return self.loader.connect_remote(base_url, api_key, model, name=server.name if server else "",
                                          server_id=server.id if server else None, key_lookup=lookup)

    def choose_target(self, kind: str) -> None:
        """Send the next messages to "local" (this computer) or "remote" (the connected server).

        Nothing is loaded or stopped: a target that is not ready yet says so, and nothing is sent
        to it (nor anywhere else) until it is.
        """
        self.picker.show_choice(kind)
        self.session.set_active(kind)
        self._show_target()
        self._update_controls()

    def _show_target(self) -> None:
        """The line under the picker: where the next message goes (or why nothing will be sent)."""
        s = self.session
        self.picker.set_status(s.target_text())
        if s.remote is not None:
            self.picker.remote.set_connection(f"Connected to {s.remote_text()}.")
        else:
            self.picker.remote.set_connection("Not connected.")
        self._update_controls()

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
        self._show_target()
        self._update_controls()

    def _on_ready(self, description: str) -> None:
        self.banner.dismiss()
        s = self.session
        if s.backend == "local":
            self.picker.local.select_path(s.local_model_ref)
            self.picker.local.set_options(s.load_options)
        self.picker.show_choice(s.active)
        self._show_target()
        if self.view.showing_welcome:
            self._show_welcome()  # now naming the model
        self.sig_model_ready.emit(description)

    # -- the welcome card of an empty conversation (A) --------------------------------------------

    def _show_welcome(self) -> None:
        s = self.session
        if not s.ready:
            name = None
        elif s.backend == "local":
            name = s.local_label or "the model on this computer"
        else:
            name = s.remote_text() or "the server's model"
        self.view.show_welcome(name, EXAMPLE_PROMPTS)

    def _on_prompt_chosen(self, prompt: str) -> None:
        """An example prompt was clicked: send it when a model is ready, else leave it in the input."""
        if self.session.ready and not self.session.generating:
            self.send(prompt)
        else:
            self.input.setPlainText(prompt)
            self.input.setFocus()

    def _on_load_failed(self, error) -> None:
        after = ""
        if isinstance(error, RemoteServerError) and (self.session.engine is not None or self.session.remote):
            after = f"Nothing else changed. {self.session.target_text()}"
        self.banner.show_error(error, after=after)
        self._show_target()

    # -- saved remote servers (widgets.chat.saved_servers) ----------------------------------------

    def save_server(self):
        """Save the server in the remote form; the RemoteServer, or None (the banner says why).
        ``sig_server_saved`` follows once its key is stored."""
        return self.saved_servers.save()

    def delete_server(self, confirm: bool | None = None) -> bool:
        """Forget the chosen saved server and its key (conversations bound to it keep their messages)."""
        return self.saved_servers.delete(confirm)

    def _on_server_deleted(self, server) -> None:
        if self.session.remote_server_id == server.id:
            self.session.remote_name, self.session.remote_server_id = "", None  # still connected, now unsaved
        self._show_target()

    # -- conversations ----------------------------------------------------------------------------

    def new_conversation(self, from_panel: bool = False) -> int:
        """Create an empty conversation with the saved defaults ("Save as default", never the last
        chat's settings) and the current target, and open it. ``from_panel``: with the settings on
        show instead (a first message sent with no conversation open keeps what the person set up).

        Also while a reply streams into another conversation (it goes on there)."""
        self.settings_panel.flush()
        defaults = self.settings_panel.defaults()
        if from_panel:
            defaults.system_prompt, defaults.sampling = self.settings_panel.values()
            defaults.context_policy = self.settings_panel.context_policy()
        system_prompt, sampling = defaults.system_prompt, defaults.sampling
        s = self.session
        try:
            conv = self.store.create_conversation(
                DEFAULT_TITLE, backend=s.active, model_ref=s.model_ref,
                remote_base_url=s.remote_base_url, system_prompt=system_prompt, sampling=sampling,
                load=s.load_options, context_policy=defaults.context_policy,
                remote_server_id=s.remote_server_id if s.backend == "remote" else None)
        except StoreError as exc:
            self.banner.show_error(exc)
            return -1
        self.conversations.reload(conv.id)
        self.open_conversation(conv.id)
        return conv.id

    def open_conversation(self, conversation_id: int | None) -> None:
        """Show a saved conversation (its messages, system prompt and sampling).

        Also while a reply streams: a reply streaming into this conversation is shown streaming on.
        A conversation last answered by another target than the current one says so (messages go to
        the current target; a banner button switches to the conversation's).
        """
        if conversation_id != self.conversation_id:
            self.settings_panel.flush()
            if self.banner.action == "switch_target" or self.banner.action == "stop_reply":
                self.banner.dismiss()
        self.cancel_edit()
        self.conversation_id = conversation_id
        conv = None
        if conversation_id is None:
            self.chat = None
        else:
            self.chat = self._chat_for(conversation_id)
            conv = self.store.get_conversation(conversation_id)
            self.settings_panel.set_values(conv.system_prompt, conv.sampling, conv.context_policy)
        self._show_messages()
        if conv is not None:
            self._offer_conversation_target(conv)
        if self.conversations.current_id() != conversation_id:
            self.conversations.select(conversation_id)
        self._update_controls()

    def _chat_for(self, conversation_id: int) -> ConversationSession:
        """The one ConversationSession of this conversation (the running turn's, if it is this one)."""
        turn_chat = self.session._turn_chat
        if turn_chat is not None and turn_chat.conversation_id == conversation_id:
            self._chats[conversation_id] = turn_chat
        if conversation_id not in self._chats:
            self._chats[conversation_id] = ConversationSession(self.store, conversation_id)
        return self._chats[conversation_id]

    def _show_messages(self, messages=None) -> None:
        """Show the open conversation (or ``messages``), with the note on what the model no longer sees.

        When a reply is streaming into it, the transcript ends with that reply, streaming on.
        """
        if self.conversation_id is None:
            self._show_welcome()
            return
        streaming = messages is None and self.session.streaming_conversation_id == self.conversation_id
        if messages is None:
            messages = self.store.messages(self.conversation_id)
            unsaved = self.session.unsaved
            if unsaved is not None and unsaved[0].conversation_id == self.conversation_id:
                messages = [*messages, shown_reply(unsaved[1])]
            if streaming:
                messages = with_turn_in_progress(messages, self._sending)
        self._shown_forgotten = self.chat.dropped if self.chat else 0
        if not messages and not streaming:
            self._show_welcome()
            return
        self.view.set_messages(messages, forgotten=self._shown_forgotten)
        if streaming:
            self.view.begin_stream()
            self.view.append_stream_text(self.session.streamed_text)

    def _offer_conversation_target(self, conv) -> None:
        """Reopening a conversation answered elsewhere: say where the next message goes, offer to switch.

        With nothing loaded at all, the picker is only pre-set to the conversation's target.
        """
        s = self.session
        if s.engine is None and s.remote is None and not s.loading:
            self._preset_picker(conv)
            return
        if self.view.is_empty() or same_target(s, conv):
            return
        then = target_text(conv, s, self.picker.local, self.saved_servers)
        self.banner.show_message(
            f"This conversation was answered by {then}. {s.target_text()} Sending adds to this conversation with "
            "that target from now on.", "info", "switch_target", "Switch back")

    def _preset_picker(self, conv) -> None:
        """Pre-select what a conversation used (nothing is loaded or connected automatically)."""
        kind = preset_picker(self.picker, conv)
        if kind is not None:
            self.choose_target(kind)

    def switch_to_conversation_target(self) -> bool:
        """Make the open conversation's own target the one messages go to (load or connect if needed)."""
        if self.conversation_id is None:
            return False
        conv = self.store.get_conversation(self.conversation_id)
        s = self.session
        self.banner.dismiss()
        if conv.backend == "local":
            if s.engine is not None and s.local_model_ref == conv.model_ref:
                self.choose_target("local")
                return True
            if not conv.model_ref:
                return False
            self.picker.local.select_path(conv.model_ref)
            return self.load_local(conv.model_ref, self.picker.local.options())
        if same_server(s, conv):
            self.choose_target("remote")
            return True
        self._preset_picker(conv)
        server = self.picker.remote.current_server()
        if server is not None and server.id == conv.remote_server_id:
            return self.connect_remote(server.base_url, "", server.model, server=server)
        self.banner.show_message("Enter the server's API key if it needs one, and press Connect.", "info")
        return False

    def _on_conversation_selected(self, conversation_id) -> None:
        if conversation_id != self.conversation_id:
            self.open_conversation(conversation_id)

    def _on_conversation_deleted(self, conversation_id: int) -> None:
        self._chats.pop(conversation_id, None)
        if conversation_id == self.session.streaming_conversation_id:
            self.session.stop()  # its reply has nowhere to go now
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
            self.banner.show_error(exc, before="The settings were not saved.")

    # -- sending ----------------------------------------------------------------------------------

    def send(self, text: str | None = None) -> bool:
        """Send ``text`` (default: the input box) and stream the reply. False if nothing was sent."""
        text = (self.input.toPlainText() if text is None else text).strip()
        if not text:
            return False
        if not self._can_start_reply():
            return False
        if self.conversation_id is None and self.new_conversation(from_panel=True) < 0:
            return False
        edit_id = self._edit_message_id
        self.cancel_edit()
        self.input.clear()
        if edit_id is not None:
            messages = self.store.messages(self.conversation_id)
            self._show_messages(before_message(messages, edit_id))
        self.view.append_message(unstored("user", text))
        self._begin_reply((text, edit_id))
        params = self.settings_panel.values()[1]
        if edit_id is None:
            self.session.send(self.chat, text, params)
        else:
            self.session.edit_and_resend(self.chat, edit_id, text, params)
        return True

    def regenerate(self) -> bool:
        """Drop the last reply and ask for a new one to the same messages."""
        if self.conversation_id is None:
            return False
        if not self._can_start_reply():
            return False
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

    def _can_start_reply(self) -> bool:
        """True (with the settings saved) when a reply can start now; else the banner says why not."""
        if self.session.generating:
            self._explain_one_at_a_time()
            return False
        if not self.session.ready:
            self._explain_not_ready()
            return False
        self.settings_panel.flush()
        return True

    def stop(self) -> None:
        """Stop the reply (wherever it streams); what was generated so far is kept and saved."""
        self.session.stop()

    def _explain_one_at_a_time(self) -> None:
        conv_id = self.session.streaming_conversation_id
        elsewhere = self._conversation_title(conv_id) if conv_id != self.conversation_id else None
        notices.one_at_a_time(self.banner, elsewhere)

    def edit_message(self, message_id: int) -> bool:
        """Put a user message back in the input; sending replaces it and everything after it."""
        if self.conversation_id is None or self.session.streaming_conversation_id == self.conversation_id:
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
        self._update_stream_note()
        self.conversations.schedule_reload()  # the turn retitled or reordered it: one rebuild per reply
        self._update_controls()
        self.sig_reply_finished.emit(message)

    def _on_stream_text(self, text: str) -> None:
        """A piece of the reply: shown only while its own conversation is on screen."""
        if self.session.turn_conversation_id == self.conversation_id:
            self.view.append_stream_text(text)

    def _on_reply_done(self, turn) -> None:
        message = shown_reply(turn)
        if self.session.turn_conversation_id != self.conversation_id:
            # the reply went on in a conversation not shown now: it is saved there; nothing to draw
            self._sending = None
            self._finish_reply(message, redraw=False)
        elif turn is None or turn.dropped != self._shown_forgotten:
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
            notices.unsaved(self.banner, turn.save_error, final=False)

    def _on_reply_failed(self, error) -> None:
        sending = self._sending
        written = hasattr(error, "partial_reply")  # the turn failed after it saved the user's message
        elsewhere = self.session.turn_conversation_id != self.conversation_id
        if elsewhere:
            self._sending = None
            self._finish_reply(None, redraw=False)
            title = self._conversation_title(self.session.turn_conversation_id)
            lost = f" Your message was: {sending[0]}" if sending and not written else ""
            self.banner.show_error(error, before=f"The reply in “{title}” failed.", after=lost.strip())
            return
        if sending and not written and not self.input.toPlainText():
            text, edit_id = sending  # nothing was written (too long, engine gone): give the message back
            if edit_id is not None:
                self._enter_edit(edit_id, text)
            else:
                self.input.setPlainText(text)
        turn = getattr(error, "turn", None)
        self._finish_reply(shown_reply(turn) if turn is not None else None)
        unsaved = self.session.unsaved  # this reply, or an earlier one the turn had to save first
        if unsaved is not None:
            first = error is unsaved[1].save_error
            before = "Nothing was sent: the reply before must be saved first." if first else error_text(error)
            notices.unsaved(self.banner, unsaved[1].save_error, final=True, before=before)
        elif not self.session.engine_dead:
            self.banner.show_error(error)

    def _on_engine_died(self, error) -> None:
        self._show_target()
        notices.engine_died(self.banner, error)
        self._update_controls()

    def _conversation_title(self, conversation_id) -> str:
        try:
            return self.store.get_conversation(conversation_id).title
        except (StoreError, TypeError):
            return "another conversation"

    def _on_banner_action(self, action: str) -> None:
        if action == "stop_reply":
            self.banner.dismiss()
            self.stop()
        elif action == "switch_target":
            self.switch_to_conversation_target()
        elif action == "use_local":
            self.choose_target("local")
            self.banner.dismiss()
        elif action == "reload":
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

    def _on_reply_saved(self, message) -> None:
        if self.banner.action == "copy_reply":
            if message is not None:
                self.banner.show_message("The reply is saved now.", "info")
            else:  # its conversation was deleted meanwhile, and the reply with it
                self.banner.dismiss()
        self.conversations.schedule_reload()

    def _explain_not_ready(self) -> None:
        if not notices.not_ready(self.banner, self.session):  # the engine died: say so, offer Reload
            self._on_engine_died(self.session.engine.crash_error("idle"))

    # -- state ------------------------------------------------------------------------------------

    def _update_controls(self) -> None:
        s = self.session
        generating = s.generating
        has_messages = self.conversation_id is not None and not self.view.is_empty()
        here = generating and s.streaming_conversation_id == self.conversation_id
        self.send_button.setEnabled(s.ready and not generating)
        self.stop_button.setEnabled(here)
        self.regenerate_button.setEnabled(s.ready and not generating and has_messages)
        self.conversations.setEnabled(True)  # switching, New, Rename and Delete work while a reply streams
        self.picker.set_busy(self.loader.busy)
        self._update_stream_note()

    def _update_stream_note(self) -> None:
        """Under the transcript, while a reply streams into a conversation not on screen: say where."""
        conv_id = self.session.streaming_conversation_id
        if conv_id is None or conv_id == self.conversation_id:
            self.stream_note.hide()
            return
        self.stream_note.setText(f"A reply is being written in “{self._conversation_title(conv_id)}”; it is saved "
                                 "there. Send works again once it is done (one reply at a time).")
        self.stream_note.show()

    def splitter_sizes(self) -> list[int]:
        return self.panels.sizes()

    def set_splitter_sizes(self, sizes: list[int]) -> None:
        if len(sizes) == self.splitter.count() and sum(sizes) > 0:
            self.panels.set_sizes(sizes)

    def shutdown(self) -> None:
        """Stop the reply (saving it), stop loading, join threads and end the engine process."""
        self.settings_panel.flush()
        self.conversations.shutdown()
        self.loader.shutdown()
        self.serve_panel.shutdown()
        self.session.shutdown()
        self.saved_servers.shutdown()

