"""Conversation list: create, rename, delete (with confirmation), search."""
from __future__ import annotations

from widgets.chat.conversation_list import ConversationList


def make_list(qtbot, store):
    widget = ConversationList(store)
    qtbot.addWidget(widget)
    return widget


def test_lists_newest_first_and_selects(qtbot, store):
    a = store.create_conversation("Apples")
    b = store.create_conversation("Bananas")
    widget = make_list(qtbot, store)
    assert widget.titles() == ["Bananas", "Apples"]
    with qtbot.waitSignal(widget.sig_selected) as blocker:
        widget.select(a.id)
    assert blocker.args == [a.id] and widget.current_id() == a.id
    assert widget.rename_button.isEnabled() and widget.delete_button.isEnabled()
    assert b.id in widget.ids()


def test_new_button_asks_the_owner(qtbot, store):
    widget = make_list(qtbot, store)
    assert not widget.rename_button.isEnabled()
    with qtbot.waitSignal(widget.sig_new_requested):
        widget.new_button.click()


def test_rename(qtbot, store):
    conv = store.create_conversation("Old title")
    widget = make_list(qtbot, store)
    widget.select(conv.id)
    assert widget.rename_selected("New title")
    assert widget.titles() == ["New title"]
    assert store.get_conversation(conv.id).title == "New title"
    assert not widget.rename_selected("   ")  # empty titles are refused
    assert store.get_conversation(conv.id).title == "New title"


def test_delete_needs_confirmation(qtbot, store):
    keep = store.create_conversation("Keep me")
    drop = store.create_conversation("Drop me")
    widget = make_list(qtbot, store)
    widget.select(drop.id)
    assert not widget.delete_selected(confirm=False)
    assert drop.id in [c.id for c in store.list_conversations()]
    with qtbot.waitSignal(widget.sig_deleted) as blocker:
        assert widget.delete_selected(confirm=True)
    assert blocker.args == [drop.id]
    assert [c.id for c in store.list_conversations()] == [keep.id]
    assert widget.titles() == ["Keep me"] and widget.current_id() == keep.id


def test_search_filters_titles_and_messages(qtbot, store):
    pasta = store.create_conversation("Dinner ideas")
    store.add_message(pasta.id, "user", "How long do I boil spaghetti?")
    store.create_conversation("Rust lifetimes")
    widget = make_list(qtbot, store)
    widget.search.setText("SPAGHETTI")
    assert widget.titles() == ["Dinner ideas"]
    widget.search.setText("rust")
    assert widget.titles() == ["Rust lifetimes"]
    widget.search.setText("nothing like this")
    assert widget.titles() == []
    widget.search.clear()
    assert len(widget.titles()) == 2


def test_select_clears_a_search_that_hides_the_conversation(qtbot, store):
    a = store.create_conversation("Alpha")
    store.create_conversation("Beta")
    widget = make_list(qtbot, store)
    widget.search.setText("beta")
    widget.select(a.id)
    assert widget.search.text() == "" and widget.current_id() == a.id
