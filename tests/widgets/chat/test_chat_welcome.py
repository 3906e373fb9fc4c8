"""An empty conversation greets the user: which model is loaded (or how to get one), example prompts."""
from __future__ import annotations

from PySide6.QtCore import QUrl

from widgets.chat.message_view import EXAMPLE_PROMPTS


def test_empty_chat_says_how_to_start_and_a_prompt_fills_the_input(qtbot, chat_tab):
    assert chat_tab.view.showing_welcome
    assert "pick one on the right" in chat_tab.view.toPlainText()
    chat_tab.new_conversation()
    assert chat_tab.view.showing_welcome and chat_tab.view.is_empty()
    assert not chat_tab.regenerate_button.isEnabled()
    chat_tab.view.anchorClicked.emit(QUrl("prompt:0"))  # no model yet: the prompt waits in the input
    assert chat_tab.input.toPlainText() == EXAMPLE_PROMPTS[0]


def test_a_conversation_with_messages_shows_them_not_the_welcome(qtbot, store):
    from widgets.chat.tab import ChatTab

    conv = store.create_conversation("Hi")
    store.add_message(conv.id, "user", "Hello there")
    tab = ChatTab(store)
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    assert not tab.view.showing_welcome and "Hello there" in tab.view.toPlainText()
