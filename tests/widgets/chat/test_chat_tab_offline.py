"""Chat tab behaviour that needs no model: history, settings per conversation, edits, clear errors."""
from __future__ import annotations

import socket

import pytest
from PySide6.QtCore import QUrl

from model_files import write_not_gguf, write_truncated_copy, write_unknown_arch_gguf

from runtime.engine.types import LoadOptions, ReplyStats, SamplingParams
from runtime.chat.session import DEFAULT_TITLE
from widgets.chat.tab import ChatTab


def seed_conversation(store, title="Greetings", system_prompt="Be kind.", sampling=None):
    conv = store.create_conversation(title, system_prompt=system_prompt,
                                     sampling=sampling or SamplingParams(temperature=0.25, seed=7))
    store.add_message(conv.id, "user", "Hello there")
    store.add_message(conv.id, "assistant", "Hi! Here is `code`.",
                      ReplyStats(completion_tokens=5, gen_tokens_per_s=30.0, finish_reason="stop"))
    return conv


def test_opens_the_newest_conversation_with_its_settings(qtbot, store):
    older = seed_conversation(store, "Older", system_prompt="old prompt")
    newer = seed_conversation(store, "Newer", system_prompt="new prompt",
                              sampling=SamplingParams(top_k=3, seed=None))
    tab = ChatTab(store)
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    assert tab.conversation_id == newer.id
    assert tab.settings_panel.values() == ("new prompt", SamplingParams(top_k=3, seed=None))
    text = tab.view.toPlainText()
    assert "Hello there" in text and "Hi! Here is code." in text and "30 tokens (word pieces) a second" in text
    tab.open_conversation(older.id)
    assert tab.conversations.current_id() == older.id
    assert tab.settings_panel.values()[0] == "old prompt"


def test_settings_are_saved_per_conversation(qtbot, chat_tab, store):
    conv_id = chat_tab.new_conversation()
    assert store.get_conversation(conv_id).title == DEFAULT_TITLE
    chat_tab.settings_panel.system_prompt.setPlainText("Answer in French.")
    chat_tab.settings_panel.sampling.temperature.setValue(1.3)
    chat_tab.settings_panel.sampling.random_seed.setChecked(False)
    chat_tab.settings_panel.sampling.seed.setValue(11)
    chat_tab.settings_panel.flush()
    saved = store.get_conversation(conv_id)
    assert saved.system_prompt == "Answer in French."
    assert saved.sampling.temperature == 1.3 and saved.sampling.seed == 11
    # another conversation keeps its own
    other = chat_tab.new_conversation()
    chat_tab.settings_panel.sampling.temperature.setValue(0.1)
    chat_tab.open_conversation(conv_id)  # switching saves the pending edit first
    assert store.get_conversation(other).sampling.temperature == 0.1
    assert chat_tab.settings_panel.sampling.params().temperature == 1.3


def test_context_policy_is_a_per_conversation_setting(qtbot, chat_tab, store):
    panel = chat_tab.settings_panel
    first = chat_tab.new_conversation()
    assert panel.context_policy() == "drop_oldest"
    panel.context_policy_box.setCurrentIndex(panel.context_policy_box.findData("stop"))
    panel.flush()
    assert store.get_conversation(first).context_policy == "stop"
    second = chat_tab.new_conversation()
    assert store.get_conversation(second).context_policy == "drop_oldest"  # the defaults, not the last chat
    chat_tab.open_conversation(first)
    assert panel.context_policy() == "stop"


def test_a_new_chat_starts_from_the_saved_defaults_not_the_last_chat(qtbot, chat_tab, store):
    panel = chat_tab.settings_panel
    first = chat_tab.new_conversation()
    panel.system_prompt.setPlainText("You are a pirate.")
    panel.sampling.temperature.setValue(1.4)
    panel.flush()
    second = chat_tab.new_conversation()  # seen: it silently copied the pirate prompt and 1.4
    conv = store.get_conversation(second)
    assert conv.system_prompt == "" and conv.sampling.temperature == SamplingParams().temperature
    assert panel.system_prompt.toPlainText() == ""

    chat_tab.open_conversation(first)
    assert panel.save_as_default() and "Saved" in panel.default_note.text()
    third = store.get_conversation(chat_tab.new_conversation())
    assert third.system_prompt == "You are a pirate." and third.sampling.temperature == 1.4
    panel.reset_default_button.click()
    fourth = store.get_conversation(chat_tab.new_conversation())
    assert fourth.system_prompt == "" and fourth.sampling == SamplingParams()


def test_send_without_a_model_explains_and_saves_nothing(qtbot, chat_tab, store):
    assert not chat_tab.send_button.isEnabled()
    assert chat_tab.send("hello") is False
    assert "Load a model" in chat_tab.banner.text()
    assert store.list_conversations() == []


def test_edit_puts_the_message_back_in_the_input(qtbot, store):
    conv = seed_conversation(store)
    tab = ChatTab(store)
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    user = store.messages(conv.id)[0]
    with qtbot.waitSignal(tab.view.sig_edit_requested):
        tab.view.anchorClicked.emit(QUrl(f"edit:{user.id}"))
    assert tab.input.toPlainText() == "Hello there"
    assert tab.edit_note.isVisibleTo(tab)
    tab.cancel_edit()
    assert tab.input.toPlainText() == "" and not tab.edit_note.isVisibleTo(tab)
    assistant = store.messages(conv.id)[1]
    assert tab.edit_message(assistant.id) is False  # only user messages are edited


def test_delete_the_open_conversation(qtbot, store):
    keep = seed_conversation(store, "Keep")
    drop = seed_conversation(store, "Drop")
    tab = ChatTab(store)
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    assert tab.conversation_id == drop.id
    tab.conversations.delete_selected(confirm=True)
    assert tab.conversation_id == keep.id
    assert "Hello there" in tab.view.toPlainText()


@pytest.mark.parametrize("case, expected", [
    ("garbage", "broken.gguf"),
    ("not_gguf", "not a GGUF file"),
    ("truncated", "truncated"),
    ("folder", "is a folder"),
    ("unknown_arch", "does not know the architecture 'flibbertigibbet'"),
])
def test_bad_model_file_shows_a_clear_error(qtbot, chat_tab, tmp_path, starter_model, case, expected):
    path = {
        "garbage": lambda: _write(tmp_path / "broken.gguf", b"GGUF" + b"\x00" * 10),
        "not_gguf": lambda: write_not_gguf(tmp_path),
        "truncated": lambda: write_truncated_copy(starter_model, tmp_path),
        "folder": lambda: tmp_path,
        "unknown_arch": lambda: write_unknown_arch_gguf(tmp_path),
    }[case]()
    chat_tab.load_local(str(path), LoadOptions(n_ctx=512, n_threads=1))
    qtbot.waitUntil(lambda: chat_tab.banner.text() != "", timeout=30_000)
    assert chat_tab.banner.kind == "error"
    assert expected in chat_tab.banner.text()
    assert not chat_tab.busy.isVisibleTo(chat_tab)
    assert not chat_tab.session.ready and chat_tab.isVisible()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_unreachable_remote_server_shows_a_clear_error(qtbot, chat_tab):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chat_tab.connect_remote(f"http://127.0.0.1:{port}/v1", "key", "model")
    qtbot.waitUntil(lambda: chat_tab.banner.text() != "", timeout=30_000)
    assert chat_tab.banner.kind == "error"
    assert f"127.0.0.1:{port}" in chat_tab.banner.text()
    assert not chat_tab.session.ready


def test_too_big_model_asks_before_loading(qtbot, chat_tab, starter_model, monkeypatch):
    """A verdict of too_big asks first; answering no loads nothing."""
    from runtime.models import hardware

    asked = []
    monkeypatch.setattr(hardware, "available_ram", lambda: 1)  # this machine now has no free memory
    chat_tab.loader.confirm_too_big = lambda verdict: asked.append(verdict) or False
    chat_tab.load_local(str(starter_model), LoadOptions(n_ctx=2048, n_threads=1))
    qtbot.waitUntil(lambda: bool(asked), timeout=30_000)
    assert asked[0].status == "too_big"
    qtbot.waitUntil(lambda: not chat_tab.busy.isVisibleTo(chat_tab), timeout=5_000)
    assert chat_tab.session.engine is None and not chat_tab.session.loading


def test_enter_sends_and_shift_enter_adds_a_line(qtbot):
    from PySide6.QtCore import Qt

    from widgets.chat.input import ChatInput

    box = ChatInput()
    qtbot.addWidget(box)
    submitted = []
    box.sig_submit.connect(lambda: submitted.append(box.toPlainText()))
    qtbot.keyClicks(box, "line one")
    qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(box, "line two")
    assert submitted == []
    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.keyClick(box, Qt.Key.Key_Enter, Qt.KeyboardModifier.ControlModifier)
    assert submitted == ["line one\nline two"] * 2


def test_a_locked_database_does_not_freeze_the_chat_tab(qtbot, chat_tab, store):
    """Another program holds the database's write lock: saving fails fast with a message, reading goes on."""
    import sqlite3
    import time

    conv_id = chat_tab.new_conversation()
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('x', 0, 0)")
    try:
        started = time.perf_counter()
        chat_tab.settings_panel.system_prompt.setPlainText("Be brief.")
        chat_tab.settings_panel.flush()
        assert "settings were not saved" in chat_tab.banner.text()
        assert chat_tab.new_conversation() == -1 and chat_tab.conversation_id == conv_id
        chat_tab.open_conversation(conv_id)  # reading still works
        assert time.perf_counter() - started < 2.0
    finally:
        other.rollback()
        other.close()
    chat_tab.settings_panel.system_prompt.setPlainText("Be brief now.")
    chat_tab.settings_panel.flush()
    assert store.get_conversation(conv_id).system_prompt == "Be brief now."
