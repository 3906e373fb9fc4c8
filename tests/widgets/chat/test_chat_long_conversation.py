"""A conversation that outgrows a small context, in the Chat tab with the real engine (nothing mocked)."""
from __future__ import annotations

from tests.widgets.conftest import LOAD_TIMEOUT_MS, REPLY_TIMEOUT_MS

QUESTIONS = [f"Tell me one fact about the number {n}." for n in range(1, 30)]


def load_small(qtbot, tab, starter_model, n_ctx=256):
    from runtime.engine.types import LoadOptions

    with qtbot.waitSignal(tab.sig_model_ready, timeout=LOAD_TIMEOUT_MS):
        tab.load_local(str(starter_model), LoadOptions(n_ctx=n_ctx, n_threads=2))
    tab.settings_panel.sampling.max_tokens.setValue(24)
    tab.settings_panel.sampling.temperature.setValue(0.0)


def test_the_chat_says_when_earlier_messages_no_longer_fit(qtbot, chat_tab, starter_model, store):
    tab = chat_tab
    load_small(qtbot, tab, starter_model)
    for question in QUESTIONS:
        with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
            assert tab.send(question)
        assert blocker.args[0] is not None and blocker.args[0].content.strip()
        if tab.chat.dropped:
            break
    else:
        raise AssertionError("the conversation never outgrew the context")
    text = tab.view.toPlainText()
    assert f"{tab.chat.dropped} earlier messages are beyond the model's memory" in text
    # the note sits where the messages the model still sees begin
    kept = store.messages(tab.conversation_id)[tab.chat.dropped]
    assert text.index("beyond the model's memory") < text.index(kept.content)
    assert "Tell me one fact about the number 1." in text  # the older messages are still shown
    assert store.get_conversation(tab.conversation_id).context_policy == "drop_oldest"


def test_stop_policy_explains_and_gives_the_message_back(qtbot, chat_tab, starter_model, store):
    tab = chat_tab
    load_small(qtbot, tab, starter_model, n_ctx=256)
    tab.new_conversation()
    tab.settings_panel.context_policy_box.setCurrentIndex(tab.settings_panel.context_policy_box.findData("stop"))
    long_message = "Please summarise: " + "the quick brown fox jumps over the lazy dog " * 40
    with qtbot.waitSignal(tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
        assert tab.send(long_message)
    assert blocker.args[0] is None
    assert tab.banner.kind == "error" and "tokens long" in tab.banner.text()
    assert store.get_conversation(tab.conversation_id).context_policy == "stop"
    assert store.messages(tab.conversation_id) == []          # nothing was written
    assert tab.input.toPlainText() == long_message.strip()    # the message is back in the input
