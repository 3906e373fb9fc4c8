"""The window a beginner meets: menu bar with Quit and About, Chat first, 800x600, SIGTERM keeps state."""
from __future__ import annotations

import json
import os
import signal

import pytest
from PySide6.QtGui import QKeySequence

from app.main_window import MainWindow
from app.settings import AppSettings
from runtime import paths


def test_menu_bar_has_the_usual_menus_and_quit_on_ctrl_q(qtbot, window):
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "Edit", "View", "Help"]
    quit_action = window.menu_actions["quit"]
    assert QKeySequence("Ctrl+Q") in quit_action.shortcuts()
    for name in ("new_chat", "export_markdown", "export_json", "import_json", "about", "copy", "paste"):
        assert name in window.menu_actions
    window.resize(900, 700)
    quit_action.trigger()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert AppSettings().geometry() is not None  # quitting saved the window


def test_sigterm_closes_the_window_and_keeps_its_geometry(qtbot):
    from app.terminate import CloseOnTerminate

    win = MainWindow(auto_load=False)
    qtbot.addWidget(win)
    win.show()
    win.resize(800, 600)
    win.move(31, 17)
    expected = win.saveGeometry()
    terminate = CloseOnTerminate(win.close)
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # as logout or shutdown sends it
        qtbot.waitUntil(lambda: not win.isVisible(), timeout=10_000)
    finally:
        terminate.uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert AppSettings().geometry() == expected  # seen: SIGTERM lost it


def test_a_fresh_install_opens_on_chat_with_the_input_focused(qtbot, window):
    assert window.tabs.currentWidget() is window.chat_tab  # seen: it opened on Models
    qtbot.waitUntil(lambda: window.focusWidget() is window.chat_tab.input, timeout=5_000)


def test_usable_at_800x600_the_conversation_keeps_the_room(qtbot, window):
    tab = window.chat_tab
    window.resize(800, 600)
    qtbot.waitUntil(lambda: window.size().width() == 800 and window.size().height() == 600, timeout=5_000)
    qtbot.waitUntil(lambda: not tab.panels.shown("side") and not tab.panels.shown("conversations"), timeout=5_000)
    middle = tab.splitter.widget(1)
    assert middle.width() >= 700 and tab.input.isVisible()
    tab.panels.buttons["side"].click()  # open the model panel: the conversation list stays folded
    assert tab.panels.shown("side") and not tab.panels.shown("conversations")
    qtbot.waitUntil(lambda: middle.width() >= 380, timeout=5_000)
    assert window.menu_actions["show_side"].isChecked()
    window.resize(1200, 780)
    qtbot.waitUntil(lambda: tab.panels.shown("conversations") and tab.panels.shown("side"), timeout=5_000)
    for index in range(window.tabs.count()):  # every other tab lays out within 800 px as it is
        if window.tabs.widget(index) is not tab:
            assert window.tabs.widget(index).minimumSizeHint().width() <= 800, window.tabs.tabText(index)


def test_about_names_versions_and_where_files_are_kept():
    from app.about import about_html

    text = about_html()
    assert "llama-cpp-python" in text and "Python" in text and "Qt " in text
    assert str(paths.database_path()) in text and str(paths.models_dir()) in text


def test_export_and_import_a_conversation_from_the_window(qtbot, window, tmp_path):
    store = window.store
    conv = store.create_conversation("Packing list")
    store.add_message(conv.id, "user", "What do I pack for a hike?")
    store.add_message(conv.id, "assistant", "- water\n- map")
    window.chat_tab.conversations.reload(conv.id)
    window.chat_tab.open_conversation(conv.id)
    md = window.export_conversation("md", str(tmp_path / "hike.md"))
    assert md.read_text(encoding="utf-8").startswith("# Packing list")
    exported = window.export_conversation("json", str(tmp_path / "hike.json"))
    assert json.loads(exported.read_text(encoding="utf-8"))["messages"][1]["content"] == "- water\n- map"

    new_id = window.import_conversation(str(exported))
    assert new_id != conv.id and window.chat_tab.conversation_id == new_id
    assert [m.content for m in store.messages(new_id)] == ["What do I pack for a hike?", "- water\n- map"]

    bad = tmp_path / "notes.json"
    bad.write_text("{oops", encoding="utf-8")
    count = len(store.list_conversations())
    assert window.import_conversation(str(bad)) is None
    banner = window.chat_tab.banner
    assert "not imported" in banner.text() and "not valid JSON" in banner.text()
    assert "Expecting property name" in banner.details()
    assert len(store.list_conversations()) == count


@pytest.mark.parametrize("fmt", ["md", "json"])
def test_export_with_nothing_open_says_what_to_do(window, fmt):
    assert window.export_conversation(fmt, "/tmp/never-written") is None
    assert "Open a conversation" in window.statusBar().currentMessage()
