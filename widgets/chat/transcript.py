"""What the Chat transcript shows besides the stored messages: the turn being written, a reply not saved yet.

Plain functions over message rows: stored Messages, or stand-ins with id None for what is not
stored yet.
"""
from __future__ import annotations

from types import SimpleNamespace


def unstored(role: str, text: str, stats=None):
    """A message row for text not in the store (yet): id None."""
    return SimpleNamespace(id=None, role=role, content=text, stats=stats)


def shown_reply(turn):
    """What to show for a turn's reply: the saved message, the unsaved text (id None), or None."""
    if turn is None or turn.save_error is None:
        return None if turn is None else turn.reply
    return unstored("assistant", turn.text, turn.stats)


def before_message(messages: list, message_id) -> list:
    """The messages before ``message_id`` (all of them when it is not there): what an edit keeps."""
    return next((messages[:i] for i, m in enumerate(messages) if m.id == message_id), messages)


def with_turn_in_progress(messages: list, sending: tuple[str, int | None] | None) -> list:
    """The stored messages as the running turn will leave them, less its reply (which streams): the
    user's message even before the worker has written it, an edit's cut, no old reply.

    ``sending``: (text, edited message id or None) of the turn, or None for a regenerate.
    """
    if messages and messages[-1].role == "assistant":
        before = messages[-2] if len(messages) > 1 else None
        if sending is None or (before is not None and before.role == "user" and before.content == sending[0]):
            messages = messages[:-1]  # regenerate's old reply, or this turn's reply saved a moment ago
    if sending is None:
        return messages
    text, edit_id = sending
    if messages and messages[-1].role == "user" and messages[-1].content == text:
        return messages
    if edit_id is not None:
        messages = before_message(messages, edit_id)
    return [*messages, unstored("user", text)]
