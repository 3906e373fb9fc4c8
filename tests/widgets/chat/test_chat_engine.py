"""The chat tab against the real llama.cpp engine and the real starter model (nothing mocked).

Each test loads SmolLM2-135M in its own engine process (about a second) and keeps replies short.
"""
from __future__ import annotations

import os
import signal

from tests.widgets.conftest import LOAD_TIMEOUT_MS, REPLY_TIMEOUT_MS


def reply(qtbot, tab, text=None, action=None):
    """Send ``text`` (or run ``action``) and return the saved assistant message."""
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
        assert (action() if action else tab.send(text)) is not False
    return blocker.args[0]


def test_streams_a_real_reply_and_saves_it(qtbot, loaded_chat_tab, store):
    tab = loaded_chat_tab
    pieces = []
    tab.session.sig_text.connect(pieces.append)
    message = reply(qtbot, tab, "What is the capital of France? Answer in one sentence.")
    assert message is not None and message.role == "assistant" and message.content.strip()
    assert pieces and "".join(pieces).strip() == message.content.strip()
    assert message.stats.completion_tokens > 0 and message.stats.gen_tokens_per_s > 0
    assert message.stats.finish_reason in ("stop", "length")
    saved = store.messages(tab.conversation_id)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[1].content == message.content
    assert message.stats.summary() in tab.view.toPlainText()
    conv = store.get_conversation(tab.conversation_id)
    assert conv.title.startswith("What is the capital of France")
    assert conv.backend == "local" and conv.model_ref.endswith(".gguf")
    assert tab.send_button.isEnabled() and not tab.stop_button.isEnabled()


def test_a_finished_reply_is_rendered_in_place_like_a_reopened_conversation(qtbot, loaded_chat_tab, store):
    """The reply is rendered where it streamed (no redraw of the whole transcript), and the result is
    what opening the conversation afresh shows, the user message's edit link included."""
    from widgets.chat.message_view import MessageView

    tab = loaded_chat_tab
    reply(qtbot, tab, "Say hi.")
    redraws = []
    tab.view.set_messages = lambda *a, **k: (redraws.append(a), MessageView.set_messages(tab.view, *a, **k))
    reply(qtbot, tab, "Say bye.")
    assert redraws == []
    saved = store.messages(tab.conversation_id)
    fresh = MessageView()
    qtbot.addWidget(fresh)
    fresh.set_messages(saved)
    assert tab.view.toPlainText() == fresh.toPlainText()
    assert tab.view.editable_ids == {m.id for m in saved if m.role == "user"}


def test_stop_keeps_and_saves_the_partial_reply(qtbot, loaded_chat_tab, store):
    tab = loaded_chat_tab
    tab.settings_panel.sampling.max_tokens.setValue(1500)
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
        tab.send("Write a very long story about a lighthouse keeper and his cat.")
        qtbot.waitUntil(lambda: len(tab.view.streamed_text) > 20, timeout=REPLY_TIMEOUT_MS)
        assert tab.stop_button.isEnabled()
        tab.stop_button.click()
    message = blocker.args[0]
    assert message is not None and message.stats.finish_reason == "cancelled"
    assert message.content.strip() and message.stats.completion_tokens < 1500
    assert store.messages(tab.conversation_id)[-1].content == message.content
    assert "stopped" in tab.view.toPlainText()


def test_regenerate_replaces_the_last_reply(qtbot, loaded_chat_tab, store):
    tab = loaded_chat_tab
    tab.settings_panel.sampling.temperature.setValue(1.0)
    first = reply(qtbot, tab, "Name a colour.")
    second = reply(qtbot, tab, action=tab.regenerate)
    saved = store.messages(tab.conversation_id)
    assert [m.role for m in saved] == ["user", "assistant"]
    # (SQLite may hand the freed id to the new row: compare creation times instead)
    assert saved[1].id == second.id and saved[1].created_at == second.created_at > first.created_at
    assert tab.view.toPlainText().count("Assistant") == 1


def test_edit_and_resend_truncates_from_that_message(qtbot, loaded_chat_tab, store):
    tab = loaded_chat_tab
    reply(qtbot, tab, "Name a fruit.")
    reply(qtbot, tab, "Name a vegetable.")
    first_user = store.messages(tab.conversation_id)[0]
    assert tab.edit_message(first_user.id)
    assert tab.input.toPlainText() == "Name a fruit."
    tab.input.setPlainText("Name an animal.")
    message = reply(qtbot, tab, action=tab.send)
    saved = store.messages(tab.conversation_id)
    assert [(m.role, m.content) for m in saved[:1]] == [("user", "Name an animal.")]
    assert len(saved) == 2 and saved[1].id == message.id
    text = tab.view.toPlainText()
    assert "Name a fruit." not in text and "Name a vegetable." not in text


def test_restart_restores_the_conversation(qtbot, starter_model, workbench_home):
    from app.main_window import MainWindow
    from runtime.engine.types import LoadOptions

    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    tab = first.chat_tab
    with qtbot.waitSignal(tab.sig_model_ready, timeout=LOAD_TIMEOUT_MS):
        tab.load_local(str(starter_model), LoadOptions(n_ctx=2048, n_threads=2))
    tab.settings_panel.sampling.max_tokens.setValue(24)
    tab.settings_panel.system_prompt.setPlainText("You are terse.")
    message = reply(qtbot, tab, "Say hi.")
    conv_id = tab.conversation_id
    first.close()
    assert first.chat_tab.engine is None or not first.chat_tab.engine.alive

    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    again = second.chat_tab
    assert again.conversation_id == conv_id
    assert again.conversations.titles()[0] == "Say hi."
    assert again.settings_panel.values()[0] == "You are terse."
    assert again.settings_panel.values()[1].max_tokens == 24
    text = again.view.toPlainText()
    assert "Say hi." in text and message.stats.summary() in text


def test_killed_engine_shows_banner_and_reload_works(qtbot, loaded_chat_tab, store):
    tab = loaded_chat_tab
    reply(qtbot, tab, "Say hi.")
    os.kill(tab.engine.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: tab.banner.action == "reload", timeout=30_000)
    assert tab.banner.text().startswith("The model engine stopped: ")
    assert "kill" in tab.banner.text().lower()
    assert not tab.send_button.isEnabled()
    assert len(store.messages(tab.conversation_id)) == 2  # the conversation is intact

    with qtbot.waitSignal(tab.sig_model_ready, timeout=LOAD_TIMEOUT_MS):
        tab.banner.action_button.click()
    assert tab.banner.text() == "" and tab.engine.alive
    message = reply(qtbot, tab, "Say bye.")
    assert message is not None and message.content.strip()
    assert len(store.messages(tab.conversation_id)) == 4


def test_engine_killed_mid_reply_keeps_the_partial_reply(qtbot, loaded_chat_tab, store):
    tab = loaded_chat_tab
    tab.settings_panel.sampling.max_tokens.setValue(1500)
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
        tab.send("Write a very long story about a dragon.")
        qtbot.waitUntil(lambda: len(tab.view.streamed_text) > 20, timeout=REPLY_TIMEOUT_MS)
        os.kill(tab.engine.pid, signal.SIGKILL)
    partial = blocker.args[0]
    qtbot.waitUntil(lambda: tab.banner.action == "reload", timeout=30_000)
    assert "The model engine stopped" in tab.banner.text()
    saved = store.messages(tab.conversation_id)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert partial is not None and saved[1].content == partial.content and partial.content.strip()
    assert tab.window().isVisible()


def test_load_can_be_cancelled_while_the_engine_starts(qtbot, chat_tab, starter_model):
    """Cancel as soon as the engine is being started: the load ends cancelled, no engine is left."""
    import psutil

    from runtime.engine.types import LoadOptions

    with qtbot.waitSignal(chat_tab.session.sig_load_cancelled, timeout=LOAD_TIMEOUT_MS):
        chat_tab.load_local(str(starter_model), LoadOptions(n_ctx=2048, n_threads=2))
        qtbot.waitUntil(lambda: chat_tab.session.loading, timeout=30_000)
        chat_tab.busy.cancel_button.click()
    qtbot.waitUntil(lambda: not chat_tab.session.loading, timeout=30_000)
    assert chat_tab.engine is None and not chat_tab.session.ready
    assert not chat_tab.busy.isVisibleTo(chat_tab)
    engines = [p for p in psutil.Process().children(recursive=True)
               if "runtime.engine.server" in " ".join(p.cmdline())]
    assert engines == []


def test_engine_dying_on_its_first_prompt_names_the_build_mismatch(qtbot, loaded_chat_tab, store):
    """SIGILL during the first prompt: the tab says the build does not fit this CPU and how to rebuild."""
    tab = loaded_chat_tab
    long_prompt = "Summarise this. " + "The miller counts sacks of flour by lamplight. " * 80
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS):
        assert tab.send(long_prompt)
        qtbot.waitUntil(lambda: tab.session.generating, timeout=10_000)
        os.kill(tab.engine.pid, signal.SIGILL)  # while the engine evaluates the prompt
    qtbot.waitUntil(lambda: "does not match" in tab.banner.text(), timeout=30_000)
    text = tab.banner.text()
    assert "SIGILL" in text and "bash scripts/setup.sh" in text
    assert "server address" not in text
    assert tab.banner.action != "reload"
    # the message is not lost: saved if the engine died while answering, else back in the input box
    saved = [m.role for m in store.messages(tab.conversation_id)]
    assert saved == ["user"] or (saved == [] and tab.input.toPlainText() == long_prompt.strip())
    assert tab.window().isVisible()


def test_remote_mode_against_a_real_openai_compatible_server(qtbot, chat_tab, starter_model, store):
    """The engine process is itself an OpenAI-compatible server: chat with it as a remote one."""
    from runtime.engine.types import LoadOptions
    from runtime.engine.local import LocalEngine

    server = LocalEngine(starter_model, LoadOptions(n_ctx=2048, n_threads=2))
    server.start()
    try:
        url = server.client().base_url
        chat_tab.picker.remote_choice.setChecked(True)
        chat_tab.picker.remote.base_url.setText(url)
        chat_tab.picker.remote.api_key.setText("wrong key")
        chat_tab.picker.remote.connect_button.click()
        qtbot.waitUntil(lambda: chat_tab.banner.text() != "", timeout=LOAD_TIMEOUT_MS)
        assert chat_tab.banner.kind == "error" and not chat_tab.session.ready

        chat_tab.picker.remote.api_key.setText(server.api_key)
        with qtbot.waitSignal(chat_tab.sig_model_ready, timeout=LOAD_TIMEOUT_MS):
            chat_tab.picker.remote.connect_button.click()
        assert chat_tab.session.backend == "remote" and chat_tab.engine is None
        chat_tab.settings_panel.sampling.max_tokens.setValue(16)
        message = reply(qtbot, chat_tab, "Say hello.")
        assert message is not None and message.content.strip()
        conv = store.get_conversation(chat_tab.conversation_id)
        assert conv.backend == "remote" and conv.remote_base_url == url
        assert server.api_key not in str(conv)  # keys never reach the database
    finally:
        server.stop()
