"""Conversation list: create, rename, delete (with confirmation), search."""
from __future__ import annotations

from widgets.chat.conversation_list import SEARCH_DELAY_MS, ConversationList


def make_list(qtbot, store):
    widget = ConversationList(store)
    qtbot.addWidget(widget, before_close_func=lambda w: w.shutdown())
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


def test_the_rename_dialog_is_wide_enough_for_its_title_and_renames(qtbot, store):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QInputDialog

    long_title = "How do I keep my sourdough starter alive over a two-week holiday?"
    conv = store.create_conversation(long_title)
    widget = make_list(qtbot, store)
    widget.select(conv.id)
    dialog = widget.rename_dialog(long_title)
    qtbot.addWidget(dialog)
    dialog.show()
    metrics = dialog.fontMetrics()
    # seen: the platform's small default cut its own title "Rename conversation"
    assert dialog.width() >= metrics.horizontalAdvance("Rename conversation") + 120
    assert dialog.width() >= metrics.horizontalAdvance(long_title)
    dialog.close()

    def type_and_accept():
        box = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QInputDialog) and w.isVisible())
        box.setTextValue("Sourdough holiday")
        box.accept()

    QTimer.singleShot(100, type_and_accept)
    assert widget.rename_selected()
    assert store.get_conversation(conv.id).title == "Sourdough holiday"


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
    for text, expected in (("SPAGHETTI", ["Dinner ideas"]), ("rust", ["Rust lifetimes"]),
                           ("nothing like this", []), ("", ["Rust lifetimes", "Dinner ideas"])):
        widget.search.setText(text)
        qtbot.waitUntil(lambda: widget.titles() == expected, timeout=2_000)


def test_search_waits_for_a_pause_in_typing(qtbot, store):
    """Typing a word searches once, after the pause, not once per keystroke."""
    store.create_conversation("Spaghetti")
    store.create_conversation("Rust")
    widget = make_list(qtbot, store)
    before = widget.rebuilds
    for i in range(1, len("spaghetti") + 1):
        widget.search.setText("spaghetti"[:i])  # keystrokes, faster than the delay
    assert widget.rebuilds == before and len(widget.titles()) == 2
    qtbot.waitUntil(lambda: widget.titles() == ["Spaghetti"], timeout=2_000)
    qtbot.wait(SEARCH_DELAY_MS + 100)
    assert widget.rebuilds == before + 1


def test_a_search_runs_off_the_ui_thread_and_a_stale_answer_is_dropped(qtbot, store):
    import threading

    store.create_conversation("Alpha")
    store.create_conversation("Beta")
    widget = make_list(qtbot, store)
    threads = []
    real = store.list_conversations
    store.list_conversations = lambda search="": (threads.append(threading.current_thread()), real(search))[1]
    try:
        widget.search.setText("alpha")
        qtbot.waitUntil(lambda: widget.titles() == ["Alpha"], timeout=2_000)
        assert threads and threading.main_thread() not in threads
        widget._on_searched("beta", real("beta"))  # an answer to a search the box no longer shows
        assert widget.titles() == ["Alpha"]
    finally:
        del store.list_conversations


def test_scheduled_reloads_fold_into_one(qtbot, store):
    widget = make_list(qtbot, store)
    before = widget.rebuilds
    conv = store.create_conversation("Fresh")
    for _ in range(3):
        widget.schedule_reload()
    widget.schedule_reload(conv.id)
    assert widget.rebuilds == before
    qtbot.waitUntil(lambda: widget.titles() == ["Fresh"], timeout=2_000)
    qtbot.wait(50)
    assert widget.rebuilds == before + 1 and widget.current_id() == conv.id


def test_a_locked_database_does_not_freeze_the_list(qtbot, store, workbench_home):
    """Another program holds the write lock: reading goes on, a rename fails fast and says why."""
    import sqlite3
    import time

    conv = store.create_conversation("Mine")
    widget = make_list(qtbot, store)
    widget.select(conv.id)
    store.set_busy_timeout(0.25)  # what the Chat tab sets for the UI thread
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('x', 0, 0)")
    try:
        started = time.perf_counter()
        widget.reload()
        assert widget.titles() == ["Mine"] and not widget.problem.isVisibleTo(widget)
        assert not widget.rename_selected("Other title")
        assert time.perf_counter() - started < 1.5
        assert widget.problem.isVisibleTo(widget) and "using the database" in widget.problem.text()
        assert widget.titles() == ["Mine"]
    finally:
        other.rollback()
        other.close()
    assert widget.rename_selected("Other title")
    assert widget.titles() == ["Other title"] and not widget.problem.isVisibleTo(widget)


def test_select_clears_a_search_that_hides_the_conversation(qtbot, store):
    a = store.create_conversation("Alpha")
    store.create_conversation("Beta")
    widget = make_list(qtbot, store)
    widget.search.setText("beta")
    widget.select(a.id)
    assert widget.search.text() == "" and widget.current_id() == a.id


def test_searches_leave_no_database_connections_behind(qtbot, store):
    import gc

    store.create_conversation("Alpha")
    widget = make_list(qtbot, store)
    for text in ("alpha", "alp", "beta", "alpha"):
        widget.search.setText(text)
        qtbot.waitUntil(lambda: widget.rebuilds and widget._search_worker and not widget._search_worker.running,
                        timeout=2_000)
        qtbot.wait(SEARCH_DELAY_MS + 50)
    gc.collect()
    assert len(store._connections) <= 2  # this thread's, and at most the last worker's
