"""A locked database never loses a reply nor freezes the Chat tab (real engine, real starter model).

"Another program" is a second sqlite3 connection holding the database's write lock. It takes the
lock just as the real reply ends (the client's stream_chat is wrapped), so the reply save meets it.
"""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication

from db_lock import DatabaseLock
from tests.widgets.conftest import REPLY_TIMEOUT_MS
from widgets.chat import session as session_mod
from widgets.chat.message_view import MessageView


class StallWatch:
    """Records the longest gap between ticks of a 20 ms timer on the UI thread."""

    def __init__(self):
        self.longest, self._last = 0.0, time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self):
        now = time.perf_counter()
        self.longest, self._last = max(self.longest, now - self._last), now


@pytest.fixture
def other(store):
    program = DatabaseLock(store.path)
    yield program
    program.close()


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(session_mod, "TURN_BUSY_TIMEOUT_S", 0.3)
    monkeypatch.setattr(session_mod, "SAVE_BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(session_mod, "SAVE_RETRY_DELAYS_MS", (100, 200))


def lock_when_the_reply_ends(monkeypatch, tab, other) -> list:
    """Lock the database as the next reply ends; append to the list returned to do it again."""
    client = tab.session.client
    real = client.stream_chat
    armed = [True]

    def stream_then_lock(*args, **kwargs):
        reply = real(*args, **kwargs)
        if armed:
            armed.pop()
            other.take()
        return reply

    monkeypatch.setattr(client, "stream_chat", stream_then_lock)
    return armed


def test_a_reply_meeting_a_locked_database_stays_shown_can_be_copied_and_is_saved_by_retry(
        qtbot, loaded_chat_tab, store, other, fast_retries, monkeypatch):
    tab = loaded_chat_tab
    lock_when_the_reply_ends(monkeypatch, tab, other)
    watch = StallWatch()
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        assert tab.send("Name a colour.")
    reply = finished.args[0]
    assert reply is not None and reply.id is None and reply.content.strip()
    assert "not saved yet" in tab.banner.text() and tab.banner.actions() == ["copy_reply"]
    with qtbot.waitSignal(tab.session.sig_save_failed, timeout=10_000):
        pass  # the background retries are spent
    assert "could not be saved" in tab.banner.text() and "using the database" in tab.banner.text()
    assert tab.banner.actions() == ["copy_reply", "retry_save"]
    assert [m.role for m in store.messages(tab.conversation_id)] == ["user"]
    assert reply.content.strip()[:20] in tab.view.toPlainText()

    tab.banner.button("copy_reply").click()
    assert QGuiApplication.clipboard().text() == reply.content

    other.release()
    with qtbot.waitSignal(tab.session.sig_reply_saved, timeout=10_000):
        tab.banner.button("retry_save").click()
    saved = store.messages(tab.conversation_id)
    assert [(m.role, m.content) for m in saved] == [("user", "Name a colour."), ("assistant", reply.content)]
    assert saved[1].stats is not None and saved[1].stats.completion_tokens > 0
    assert "saved" in tab.banner.text() and tab.session.unsaved is None
    fresh = MessageView()
    qtbot.addWidget(fresh)
    fresh.set_messages(saved)
    assert tab.view.toPlainText() == fresh.toPlainText()  # what reopening the conversation shows
    watch.timer.stop()
    assert watch.longest < 0.3, f"the window stalled for {watch.longest:.2f} s"


def test_the_retry_saves_the_reply_once_the_lock_is_released_and_the_next_turn_keeps_the_order(
        qtbot, loaded_chat_tab, store, other, fast_retries, monkeypatch):
    tab = loaded_chat_tab
    monkeypatch.setattr(session_mod, "SAVE_RETRY_DELAYS_MS", (300, 300, 300, 300, 300, 300))
    armed = lock_when_the_reply_ends(monkeypatch, tab, other)
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        tab.send("Name a fruit.")
    first = finished.args[0]
    assert first.id is None and tab.session.unsaved is not None
    other.release()
    with qtbot.waitSignal(tab.session.sig_reply_saved, timeout=10_000) as saved:
        pass
    assert saved.args[0].content == first.content
    assert "saved" in tab.banner.text()

    # A reply still unsaved when the next message is sent is saved first, before that message.
    monkeypatch.setattr(session_mod, "SAVE_RETRY_DELAYS_MS", (60_000,))
    armed.append(True)
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        tab.send("Name a tree.")
    second = finished.args[0]
    assert second.id is None
    other.release()
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        tab.send("Name a bird.")
    third = finished.args[0]
    assert third.id is not None and tab.session.unsaved is None
    assert [(m.role, m.content) for m in store.messages(tab.conversation_id)] == [
        ("user", "Name a fruit."), ("assistant", first.content), ("user", "Name a tree."),
        ("assistant", second.content), ("user", "Name a bird."), ("assistant", third.content)]


def test_a_locked_database_fails_the_send_before_generating_and_keeps_the_typed_text(
        qtbot, loaded_chat_tab, store, other, fast_retries, monkeypatch):
    tab = loaded_chat_tab
    conv_id = tab.new_conversation()
    calls = []
    real = tab.session.client.stream_chat
    monkeypatch.setattr(tab.session.client, "stream_chat", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    other.take()
    watch = StallWatch()
    tab.input.setPlainText("Hello there")
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        assert tab.send()
    assert finished.args[0] is None and calls == []
    assert tab.input.toPlainText() == "Hello there"
    assert "using the database" in tab.banner.text()
    assert "Hello there" not in tab.view.toPlainText()
    watch.timer.stop()
    assert watch.longest < 0.3, f"the window stalled for {watch.longest:.2f} s"
    other.release()
    assert store.messages(conv_id) == []
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        assert tab.send()
    assert finished.args[0].id is not None and calls == [1]
    assert [m.role for m in store.messages(conv_id)] == ["user", "assistant"]


def test_closing_while_the_database_still_refuses_the_reply_keeps_it_in_a_file(
        qtbot, loaded_chat_tab, store, other, fast_retries, monkeypatch, workbench_home):
    tab = loaded_chat_tab
    monkeypatch.setattr(session_mod, "SAVE_RETRY_DELAYS_MS", (60_000,))
    lock_when_the_reply_ends(monkeypatch, tab, other)
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as finished:
        tab.send("Name a river.")
    reply = finished.args[0]
    assert reply.id is None
    tab.session.shutdown()  # what closing the window does; the lock is still held
    kept = tab.session.kept_in_file
    assert kept is not None and kept.parent == workbench_home / "unsaved-replies"
    assert reply.content in kept.read_text(encoding="utf-8")
