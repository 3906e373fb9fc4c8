"""A reply is never lost to the store: a locked database leaves it in the Turn, to be saved later.

The store is what matters here, so the client is a small fake with ``stream_chat``; the database is
real and "another program" is a second sqlite3 connection holding its write lock.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from runtime.chat.session import ConversationSession
from runtime.engine.types import ReplyStats
from runtime.errors import EngineCrashed, StoreError
from runtime.store.conversations import ConversationStore
from db_lock import DatabaseLock


class FakeClient:
    """Streams ``words``; ``during`` runs once the text is out (here: another program takes the lock)."""

    def __init__(self, words=("Paris ", "is ", "the ", "capital."), during=None, fail=None):
        self.words, self.during, self.fail, self.calls = words, during, fail, 0

    def stream_chat(self, messages, params, on_text=None, cancel=None, extra=None):
        self.calls += 1
        for word in self.words:
            on_text(word)
        if self.during is not None:
            self.during()
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(text="".join(self.words),
                               stats=ReplyStats(completion_tokens=len(self.words), finish_reason="stop"))


@pytest.fixture
def store(tmp_path):
    with ConversationStore(tmp_path / "chats.sqlite3", busy_timeout_s=0.2) as s:
        yield s


@pytest.fixture
def lock(store):
    held = DatabaseLock(store.path)
    yield held
    held.close()


def test_a_reply_finishing_while_the_database_is_locked_is_kept_and_saved_later(store, lock):
    chat = ConversationSession.create(store, FakeClient(during=lock.take))
    started = time.perf_counter()
    turn = chat.send("What is the capital of France?")
    assert time.perf_counter() - started < 2.0
    assert turn.reply is None and turn.text == "Paris is the capital."
    assert isinstance(turn.save_error, StoreError) and "using the database" in turn.save_error.hint
    assert turn.user is not None and [m.role for m in chat.messages()] == ["user"]
    with pytest.raises(StoreError):
        chat.save_reply(turn)  # still locked: still unsaved, text still there
    assert turn.text == "Paris is the capital." and turn.save_error is not None

    lock.release()
    saved = chat.save_reply(turn)
    assert saved is not None and turn.reply == saved and turn.save_error is None
    assert turn.text == saved.content == "Paris is the capital."
    assert saved.stats.completion_tokens == 4
    assert [(m.role, m.content) for m in chat.messages()] == [
        ("user", "What is the capital of France?"), ("assistant", "Paris is the capital.")]
    assert chat.save_reply(turn) == saved  # saving twice writes once
    assert len(chat.messages()) == 2


def test_a_broken_stream_on_a_locked_database_keeps_its_partial_text(store, lock):
    crash = EngineCrashed("The engine stopped.")
    chat = ConversationSession.create(store, FakeClient(during=lock.take, fail=crash))
    with pytest.raises(EngineCrashed) as info:
        chat.send("Hello")
    assert info.value.partial_reply is None
    turn = info.value.turn
    assert turn.text == "Paris is the capital." and isinstance(turn.save_error, StoreError)
    lock.release()
    assert chat.save_reply(turn).content == "Paris is the capital."
    assert [m.role for m in chat.messages()] == ["user", "assistant"]


def test_the_user_message_failing_to_save_stops_the_send_before_generating(store, lock):
    client = FakeClient()
    chat = ConversationSession.create(store, client)
    lock.take()
    started = time.perf_counter()
    with pytest.raises(StoreError) as info:
        chat.send("Hello")
    assert time.perf_counter() - started < 2.0
    assert "using the database" in info.value.hint
    assert client.calls == 0 and not hasattr(info.value, "partial_reply")
    lock.release()
    assert chat.messages() == []


def test_a_reply_to_a_conversation_deleted_meanwhile_is_dropped(store, lock):
    chat = ConversationSession.create(store, FakeClient(during=lock.take))
    turn = chat.send("Hello")
    lock.release()
    store.delete_conversation(chat.conversation_id)
    assert chat.save_reply(turn) is None and turn.save_error is None


def test_a_reply_the_database_keeps_refusing_can_be_kept_in_a_file(store, lock, workbench_home):
    chat = ConversationSession.create(store, FakeClient(during=lock.take))
    turn = chat.send("What is the capital of France?")
    kept = chat.keep_in_file(turn)
    assert kept.parent == workbench_home / "unsaved-replies"
    text = kept.read_text(encoding="utf-8")
    assert "Paris is the capital." in text and f"conversation {chat.conversation_id}" in text
