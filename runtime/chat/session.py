"""One conversation in the store, driven turn by turn: the logic the Chat tab and `workbench chat` share.

``ConversationSession(store, conversation_id, client)`` sends a message, regenerates the last
reply or edits an earlier user message and resends it. Each call is blocking (run it off the UI
thread) and does, in order: fit the conversation to the loaded context (``runtime.chat.context``;
nothing is written when that fails), write to the store (title, user message), stream the reply
through ``client.stream_chat`` and save it with its stats. Stop (the cancel token) saves the partial
reply with finish_reason "cancelled". When the stream fails mid-way (engine crash, server error)
the text that arrived is saved, with the figures the client attached to the error
(``error.partial_stats``: the engine's token counts for that text, finish_reason "error") when it
did, and the error is re-raised with that message attached as ``error.partial_reply`` (None when
nothing arrived or saving failed) and the Turn as ``error.turn``.

A reply is never lost to the store: when saving it fails (another program holds the database's
write lock, disk full) the turn still returns, with ``turn.reply`` None, the text in
``turn.unsaved_text`` and the StoreError in ``turn.save_error``; ``save_reply(turn)`` tries again.
A failure to write the user's message raises before anything is generated.

``client`` is anything with ``stream_chat``; ``count_tokens`` and ``context_length`` (as on
``runtime.engine.client.ChatClient``) let the session fit long conversations, otherwise everything
is sent.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime import paths
from runtime.chat.context import fit_messages, overflow_error, reply_room
from runtime.engine.types import ReplyStats, SamplingParams
from runtime.errors import Cancelled, StoreError
from runtime.jobs import CancelToken
from runtime.store.conversations import ConversationStore, Message

DEFAULT_TITLE = "New chat"
TITLE_LENGTH = 48
_SAVE_LOCK = threading.Lock()  # save_reply may run on two threads at once (a retry and a new turn)


def title_from(text: str) -> str:
    """A conversation title from its first message: the first line, shortened."""
    line = text.strip().splitlines()[0] if text.strip() else DEFAULT_TITLE
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


@dataclass
class Turn:
    """The outcome of one send, regenerate or edit."""

    reply: Message | None    # the saved assistant message; None when stopped before any text, or unsaved
    stats: ReplyStats | None  # after a broken-off stream: the partial figures (finish_reason "error") or None
    dropped: int = 0         # earlier messages left out because the context is full
    user: Message | None = None  # the user message written by this turn (None for regenerate)
    unsaved_text: str = ""   # the reply, when saving it failed (see save_error)
    save_error: StoreError | None = None  # why the reply is not saved yet; None once it is

    @property
    def text(self) -> str:
        """The reply's text, saved or not ('' when nothing was kept)."""
        return self.reply.content if self.reply is not None else self.unsaved_text


class ConversationSession:
    """Send, regenerate and edit-and-resend for one stored conversation.

    ``dropped`` is the sticky cut: how many earlier messages the last turn left out. One session
    object should live as long as the conversation is open, so the cut (and the KV cache) holds.
    """

    def __init__(self, store: ConversationStore, conversation_id: int, client=None) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.client = client
        self.dropped = 0

    @classmethod
    def create(cls, store: ConversationStore, client=None, **fields) -> "ConversationSession":
        """A session on a new, empty conversation (``fields`` as for ``store.create_conversation``)."""
        fields.setdefault("title", DEFAULT_TITLE)
        return cls(store, store.create_conversation(**fields).id, client)

    @property
    def conversation(self):
        return self.store.get_conversation(self.conversation_id)

    def messages(self) -> list[Message]:
        return self.store.messages(self.conversation_id)

    # -- the three ways a reply starts ------------------------------------------------------------

    def send(self, text: str, params: SamplingParams | None = None,
             on_text: Callable[[str], None] | None = None, cancel: CancelToken | None = None,
             extra: dict | None = None) -> Turn:
        """Add ``text`` as the user's message and stream the reply to the conversation."""
        text = _non_empty(text)
        conv = self.conversation
        history = self.messages()
        params, cancel = params or conv.sampling, cancel or CancelToken()
        fitted = self._fit(conv, _openai(conv, history) + [{"role": "user", "content": text}], params)
        cancel.check()
        changes = _backend_fields(self.client, conv)
        if not history and conv.title == DEFAULT_TITLE:
            changes["title"] = title_from(text)
        if changes:
            self.store.update_conversation(self.conversation_id, **changes)
        user = self.store.add_message(self.conversation_id, "user", text)
        return self._reply(fitted, params, on_text, cancel, extra, user)

    def regenerate(self, params: SamplingParams | None = None,
                   on_text: Callable[[str], None] | None = None, cancel: CancelToken | None = None,
                   extra: dict | None = None) -> Turn:
        """Replace the last reply by a new one (or answer a last user message that has none)."""
        conv = self.conversation
        history = self.messages()
        params, cancel = params or conv.sampling, cancel or CancelToken()
        old_reply = history.pop() if history and history[-1].role == "assistant" else None
        if not history or history[-1].role != "user":
            raise ValueError("There is no message to answer again.")
        fitted = self._fit(conv, _openai(conv, history), params)
        cancel.check()
        if old_reply is not None:
            self.store.delete_messages_from(self.conversation_id, old_reply.position)
        return self._reply(fitted, params, on_text, cancel, extra, None)

    def edit_and_resend(self, message_id: int, new_text: str, params: SamplingParams | None = None,
                        on_text: Callable[[str], None] | None = None, cancel: CancelToken | None = None,
                        extra: dict | None = None) -> Turn:
        """Replace the user message ``message_id`` and everything after it by ``new_text``, and reply."""
        new_text = _non_empty(new_text)
        conv = self.conversation
        history = self.messages()
        index = next((i for i, m in enumerate(history) if m.id == message_id), None)
        if index is None or history[index].role != "user":
            raise ValueError("Only a message you wrote in this conversation can be edited.")
        edited = history[index]
        params, cancel = params or conv.sampling, cancel or CancelToken()
        if index <= self.dropped:
            self.dropped = 0  # the cut lay after the edit: fit afresh
        fitted = self._fit(conv, _openai(conv, history[:index]) + [{"role": "user", "content": new_text}], params)
        cancel.check()
        self.store.delete_messages_from(self.conversation_id, edited.position)
        changes = _backend_fields(self.client, conv)
        if index == 0 and conv.title == title_from(edited.content):
            changes["title"] = title_from(new_text)  # the title came from the old text: follow it
        if changes:
            self.store.update_conversation(self.conversation_id, **changes)
        user = self.store.add_message(self.conversation_id, "user", new_text)
        return self._reply(fitted, params, on_text, cancel, extra, user)

    # -- pieces -----------------------------------------------------------------------------------

    def _fit(self, conv, messages: list[dict], params: SamplingParams) -> tuple[list[dict], int]:
        """The messages to send and how many were dropped, per the conversation's context policy."""
        client = self.client
        if client is None:
            raise RuntimeError("ConversationSession.client is not set: load a model first")
        n_ctx = client.context_length() if hasattr(client, "context_length") else None
        if not n_ctx or not hasattr(client, "count_tokens"):
            return messages, 0
        budget = n_ctx - reply_room(n_ctx, params.max_tokens)
        if conv.context_policy == "stop":
            tokens = client.count_tokens(messages)
            if tokens > budget:
                raise overflow_error(tokens, budget)
            return messages, 0
        fitted = fit_messages(messages, client.count_tokens, budget, cut=self.dropped)
        return fitted.messages, fitted.dropped

    def _reply(self, fitted: tuple[list[dict], int], params: SamplingParams, on_text, cancel: CancelToken,
               extra: dict | None, user: Message | None) -> Turn:
        """Stream the reply to ``fitted`` and save it (whole, stopped or broken off)."""
        messages, self.dropped = fitted
        pieces: list[str] = []

        def collect(text: str) -> None:
            pieces.append(text)
            if on_text is not None:
                on_text(text)

        try:
            reply = self.client.stream_chat(messages, params, on_text=collect, cancel=cancel, extra=extra)
        except Cancelled:
            text = "".join(pieces)
            return self._save(text, ReplyStats(finish_reason="cancelled"), user, keep=bool(text))
        except BaseException as exc:
            text = "".join(pieces)
            # The client's figures for the text that arrived (the engine's own token counts), if any.
            stats = getattr(exc, "partial_stats", None)
            turn = self._save(text, stats if isinstance(stats, ReplyStats) else None, user, keep=bool(text))
            try:
                exc.partial_reply = turn.reply  # type: ignore[attr-defined]
                exc.turn = turn  # type: ignore[attr-defined]
            except AttributeError:
                pass
            raise
        text = reply.text or "".join(pieces)
        self._record_memory()
        return self._save(text, reply.stats, user, keep=bool(text) or reply.stats.finish_reason != "cancelled")

    def _record_memory(self) -> None:
        """After a reply, keep what the local model really used next to its estimate (the library shows
        both). A figure that cannot be read or saved is skipped: it must never cost the reply."""
        engine = getattr(self.client, "engine", None)
        report = engine.memory_report() if hasattr(engine, "memory_report") else None
        if report is None:
            return
        try:
            self.store.record_model_memory(report.model_path, report.n_ctx, report.estimated_bytes,
                                           report.measured_bytes)
        except StoreError:
            pass

    def _save(self, text: str, stats: ReplyStats | None, user: Message | None, keep: bool) -> Turn:
        """The turn, with its reply saved when ``keep``; when saving fails the turn keeps the text."""
        turn = Turn(None, stats, self.dropped, user)
        if keep:
            try:
                turn.reply = self.store.add_message(self.conversation_id, "assistant", text, stats)
            except StoreError as exc:  # locked, full, damaged: the text stays in the turn
                turn.unsaved_text, turn.save_error = text, exc
        return turn

    def save_reply(self, turn: Turn) -> Message | None:
        """Save a reply whose saving failed (``turn.save_error``); StoreError when it fails again.

        Returns the saved message (at once when it already is), or None when the conversation has
        been deleted meanwhile (the reply is then dropped with it).
        """
        with _SAVE_LOCK:
            if turn.save_error is None:
                return turn.reply
            try:
                turn.reply = self.store.add_message(self.conversation_id, "assistant", turn.unsaved_text, turn.stats)
            except StoreError as exc:
                if exc.facts.get("conversation_id") != self.conversation_id:
                    turn.save_error = exc
                    raise
            turn.unsaved_text, turn.save_error = "", None
            return turn.reply

    def keep_in_file(self, turn: Turn) -> Path:
        """Write a reply that could not be saved to ``unsaved-replies/`` in the app's folder (the
        last resort when the database stays unusable, e.g. on quit); return the file's path."""
        folder = paths.ensure_dir(paths.app_home() / "unsaved-replies")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"conversation-{self.conversation_id}-{stamp}.md"
        reason = turn.save_error.message if turn.save_error is not None else "unknown"
        path.write_text(f"<!-- A reply in conversation {self.conversation_id} that could not be saved: "
                        f"{reason} -->\n\n{turn.text}\n", encoding="utf-8")
        return path


def _non_empty(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValueError("A message cannot be empty.")
    return text


def _openai(conv, messages: list[Message]) -> list[dict]:
    """Messages in OpenAI form, the conversation's system prompt first when there is one."""
    head = [{"role": "system", "content": conv.system_prompt}] if conv.system_prompt else []
    return head + [{"role": m.role, "content": m.content} for m in messages]


def _backend_fields(client, conv) -> dict:
    """Which backend answers this conversation now (local model path, or server and model name)."""
    engine = getattr(client, "engine", None)
    if engine is not None:
        now = {"backend": "local", "model_ref": str(getattr(engine, "model_path", ""))}
    elif getattr(client, "base_url", ""):
        now = {"backend": "remote", "model_ref": getattr(client, "model", ""), "remote_base_url": client.base_url}
    else:
        return {}
    return {k: v for k, v in now.items() if v and getattr(conv, k) != v}
