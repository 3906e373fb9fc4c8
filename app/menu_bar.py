"""The main window's menu bar: File, Edit, View and Help, with the shortcuts people expect.

Actions are built here and call methods of the window and its tabs; ``build_menu_bar`` returns them
by name ("quit", "new_chat", "export_markdown", ...) so tests and other code can trigger them.
On macOS Qt moves Quit and About into the application menu and shows Ctrl as Cmd.
"""
from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QMainWindow

# Edit actions forward to the focused widget (the chat input, the transcript, a search field).
EDIT_ACTIONS = (("undo", "&Undo", QKeySequence.StandardKey.Undo),
                ("redo", "&Redo", QKeySequence.StandardKey.Redo),
                ("cut", "Cu&t", QKeySequence.StandardKey.Cut),
                ("copy", "&Copy", QKeySequence.StandardKey.Copy),
                ("paste", "&Paste", QKeySequence.StandardKey.Paste),
                ("selectAll", "Select &All", QKeySequence.StandardKey.SelectAll))


def build_menu_bar(window: QMainWindow) -> dict[str, QAction]:
    """Fill ``window.menuBar()``; return the actions by name."""
    bar = window.menuBar()
    actions: dict[str, QAction] = {}

    def add(menu, name: str, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, window)
        if shortcut is not None:
            action.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        actions[name] = action
        return action

    file_menu = bar.addMenu("&File")
    add(file_menu, "new_chat", "&New chat", window.new_chat, "Ctrl+N", "Start a new conversation in the Chat tab")
    add(file_menu, "add_model", "&Add model file…", window.models_tab.choose_files, "Ctrl+O",
        "Add a .gguf file from this computer to the library")
    file_menu.addSeparator()
    export = file_menu.addMenu("&Export conversation")
    add(export, "export_markdown", "As &Markdown (to read or share)…", lambda: window.export_conversation("md"))
    add(export, "export_json", "As &JSON (to import again)…", lambda: window.export_conversation("json"))
    add(file_menu, "import_json", "&Import conversation…", window.import_conversation,
        tip="Add a conversation exported as JSON")
    file_menu.addSeparator()
    # Ctrl+Q is also Cmd+Q on macOS; Windows has no standard Quit key, so name it explicitly.
    quit_action = add(file_menu, "quit", "&Quit", window.close,
                      [QKeySequence(QKeySequence.StandardKey.Quit), QKeySequence("Ctrl+Q")])
    quit_action.setMenuRole(QAction.MenuRole.QuitRole)

    # The focused widget handles these keys itself (a window-wide Ctrl+C would fight it): the items
    # are for the mouse, and show the key as a reminder.
    edit_menu = bar.addMenu("&Edit")
    for slot_name, text, key in EDIT_ACTIONS:
        reminder = QKeySequence(key).toString(QKeySequence.SequenceFormat.NativeText)
        add(edit_menu, slot_name, f"{text}\t{reminder}", lambda slot_name=slot_name: _forward_to_focus(slot_name))
        if slot_name == "redo":
            edit_menu.addSeparator()

    view_menu = bar.addMenu("&View")
    for index in range(window.tabs.count()):
        name = window.tabs.tabText(index)
        add(view_menu, f"tab_{name.lower()}", f"&{name}", lambda index=index: window.tabs.setCurrentIndex(index),
            f"Ctrl+{index + 1}")
    view_menu.addSeparator()
    for panel, text in (("conversations", "Conversations &list"), ("side", "&Model and settings panel")):
        action = add(view_menu, f"show_{panel}", text, lambda: None)
        action.setCheckable(True)
        action.setChecked(True)
        panels = window.chat_tab.panels
        action.toggled.connect(lambda shown, panel=panel: panels.set_shown(panel, shown))
        panels.sig_changed.connect(lambda action=action, panel=panel: action.setChecked(panels.shown(panel)))

    help_menu = bar.addMenu("&Help")
    about = add(help_menu, "about", "&About Model Workbench", window.show_about)
    about.setMenuRole(QAction.MenuRole.AboutRole)
    add(help_menu, "open_data_folder", "Open the &data folder", window.open_data_folder,
        tip="Where conversations, settings and downloaded models are kept")
    add(help_menu, "this_machine", "This &machine…", lambda: _show_this_machine(window),
        tip="Processor, memory and graphics, and what llama.cpp uses of them")
    return actions


def _show_this_machine(window: QMainWindow) -> None:
    from widgets.models.machine_panel import show_machine_dialog

    show_machine_dialog(window)


def _forward_to_focus(slot_name: str) -> None:
    """Call ``slot_name`` (copy, paste, ...) on the focused widget when it has it."""
    widget = QApplication.focusWidget()
    slot = getattr(widget, slot_name, None)
    if callable(slot):
        slot()
