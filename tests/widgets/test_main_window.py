"""The main window: four tabs, library and version shown, state kept."""
from __future__ import annotations

import pytest
from PySide6.QtWidgets import QAbstractButton

from app.main_window import TAB_NAMES, MainWindow
from app.settings import AppSettings


def test_four_tabs(window):
    names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert names == list(TAB_NAMES) == ["Models", "Compress", "Chat", "Benchmark"]


def test_the_benchmark_tab_is_built(window):
    from widgets.bench.tab import BenchmarkTab

    assert isinstance(window.benchmark_tab, BenchmarkTab)
    assert not window.benchmark_tab.run_button.isEnabled()      # nothing chosen yet


def test_the_compress_tab_is_built_and_picks_from_the_library(qtbot, window, starter_model):
    from widgets.compress.tab import CompressTab

    tab = window.compress_tab
    assert isinstance(tab, CompressTab)
    text = " ".join(label.text() for label in tab.findChildren(type(window.version_label)))
    assert "Not built yet" not in text
    with qtbot.waitSignal(window.models_tab.sig_library_loaded, timeout=60_000):
        window.models_tab.refresh()
    assert str(starter_model) in tab.source.paths()       # the library's models are on offer
    # "Compress it" in the Models tab opens the model in the Compress tab, which reads it
    row = next(r for r in window.models_tab.model.rows() if r.entry.path == starter_model)
    with qtbot.waitSignal(tab.sig_source_ready, timeout=60_000) as blocker:
        window.models_tab.library.sig_file_action.emit("compress", row)
    assert window.tabs.currentWidget() is tab and window.model_requests["compress"] == str(starter_model)
    assert blocker.args[0].path == str(starter_model) and tab.source.current_path() == str(starter_model)
    assert tab.source.fact("Quant") == "Q4_1" and tab.targets.rows


def test_background_work_fills_library_and_version(qtbot, window, starter_model):
    with qtbot.waitSignal(window.models_tab.sig_library_loaded, timeout=60_000) as blocker:
        window.start_background_work()
    rows = blocker.args[0]
    starter = [r for r in rows if r.entry.source == "starter"]
    assert starter and starter[0].entry.path == starter_model
    model = window.models_tab.model
    assert model.rowCount() == len(rows)
    cells = [model.index(0, c).data() for c in range(model.columnCount())]
    assert cells[:6] == ["SmolLM2-135M-Instruct.Q4_1", "Starter model", "llama", "135M", "Q4_1", "8,192"]
    assert cells[7] == "Fits"  # 94 MiB with a 4k context on a machine with gigabytes free
    assert window.chat_tab.picker.local.current_path() == str(starter_model)
    qtbot.waitUntil(lambda: "llama-cpp-python" in window.version_label.text(), timeout=30_000)


def test_first_start_loads_the_starter_model_ready_to_chat(qtbot, starter_model):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.chat_tab.sig_model_ready, timeout=120_000):
        win.start_background_work()
    assert win.chat_tab.session.ready and win.chat_tab.session.model_ref == str(starter_model)
    assert win.chat_tab.send_button.isEnabled()
    win.close()  # qtbot keeps only a weak reference: close here so the engine stops with the window


def test_a_reply_shows_what_the_model_really_used_in_the_library(qtbot, starter_model):
    from tests.widgets.conftest import REPLY_TIMEOUT_MS
    from widgets.models.library_model import NOT_MEASURED

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.chat_tab.sig_model_ready, timeout=120_000):
        win.start_background_work()
    library = win.models_tab.library
    assert library.cell(starter_model, "Measured") == NOT_MEASURED
    win.chat_tab.settings_panel.sampling.max_tokens.setValue(8)
    win.chat_tab.input.setPlainText("Hello!")
    with qtbot.waitSignal(win.chat_tab.sig_reply_finished, timeout=REPLY_TIMEOUT_MS):
        win.chat_tab.send_button.click()
    qtbot.waitUntil(lambda: "MiB (estimate" in library.cell(starter_model, "Measured"), timeout=30_000)
    win.close()


def test_unreadable_model_is_listed_with_its_error(qtbot, window):
    from runtime import paths

    folder = paths.ensure_dir(paths.models_dir())
    (folder / "broken.gguf").write_text("not a model")
    with qtbot.waitSignal(window.models_tab.sig_library_loaded, timeout=60_000):
        window.models_tab.refresh()
    model = window.models_tab.model
    rows = [r for r in model.rows() if r.entry.name == "broken"]
    assert rows and rows[0].entry.info is None
    row = model.rows().index(rows[0])
    assert model.index(row, model.columnCount() - 1).data()  # the problem column explains it
    assert "unreadable" in window.models_tab.status.text()
    # unreadable files are not offered for loading
    assert "broken" not in [window.chat_tab.picker.local.models.itemText(i)
                            for i in range(window.chat_tab.picker.local.models.count())]


def test_window_state_persists_across_restarts(qtbot):
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    first.resize(1200, 780)
    first.tabs.setCurrentWidget(first.chat_tab)
    first.chat_tab.set_splitter_sizes([300, 500, 380])
    first.chat_tab.serve_panel.port.setValue(8765)
    sizes = first.chat_tab.splitter_sizes()
    shown = first.chat_tab.splitter.sizes()
    first.resize(800, 600)  # the offscreen screen is 800x600: a restored window is kept inside it
    size = first.size()
    qtbot.waitUntil(lambda: first.chat_tab.panels.narrow)
    assert first.chat_tab.splitter_sizes() == sizes
    first.tabs.setCurrentIndex(3)
    first.close()

    assert AppSettings().current_tab_name("Chat", TAB_NAMES) == "Benchmark"
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert second.tabs.currentIndex() == 3
    assert second.size() == size
    assert second.chat_tab.splitter_sizes() == sizes  # the wide layout, kept while folded
    assert second.chat_tab.serve_panel.port.value() == 8765 and not second.chat_tab.serve_panel.switch.isChecked()
    second.tabs.setCurrentWidget(second.chat_tab)
    second.resize(1200, 780)
    qtbot.waitUntil(lambda: all(abs(a - b) <= 40 for a, b in zip(second.chat_tab.splitter.sizes(), shown)),
                    timeout=5_000)


# -- a conversation database that cannot be opened -------------------------------------------------

def answer_dialog(monkeypatch, button_text: str) -> list[str]:
    """Answer the next QMessageBox by clicking the button whose label contains ``button_text``."""
    from PySide6.QtWidgets import QMessageBox

    shown = []

    def fake_exec(box):
        shown.append(f"{box.text()}\n{box.informativeText()}")
        next(b for b in box.buttons() if button_text in b.text()).click()
        return 0

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return shown


def write_unupgradable_database(path):
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE conversations (something_else TEXT)")  # migration 1 cannot create its own
    con.commit()
    con.close()


@pytest.mark.parametrize("damage", ["garbage", "unupgradable"])
def test_a_damaged_database_is_moved_aside_when_the_person_agrees(qtbot, monkeypatch, damage):
    from runtime import paths

    db = paths.database_path()
    db.parent.mkdir(parents=True, exist_ok=True)
    if damage == "garbage":
        db.write_bytes(b"\x00\x13 certainly not SQLite " * 300)
    else:
        write_unupgradable_database(db)
    before = db.read_bytes()
    shown = answer_dialog(monkeypatch, "Move it aside")
    win = MainWindow(auto_load=False)
    qtbot.addWidget(win)
    assert len(shown) == 1 and str(db) in shown[0] and "damaged" in shown[0]
    moved = [p for p in db.parent.iterdir() if p.name.startswith("workbench.damaged-")]
    assert len(moved) == 1 and moved[0].suffix == ".sqlite3"
    if damage == "garbage":
        assert moved[0].read_bytes() == before
    else:  # the same tables (opening it switched its journal to WAL, a header byte)
        import sqlite3

        con = sqlite3.connect(moved[0])
        assert con.execute("SELECT sql FROM sqlite_master").fetchall() == [
            ("CREATE TABLE conversations (something_else TEXT)",)]
        con.close()
    assert str(moved[0]) in win.statusBar().currentMessage()
    conv = win.store.create_conversation("A fresh start")  # a new, working database
    assert [c.id for c in win.store.list_conversations()] == [conv.id]
    win.close()


def test_quitting_at_the_damaged_database_dialog_leaves_the_file_alone(qtbot, monkeypatch):
    from runtime import paths

    db = paths.database_path()
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"not a database at all " * 300)
    shown = answer_dialog(monkeypatch, "Quit")
    with pytest.raises(SystemExit):
        MainWindow(auto_load=False)
    assert len(shown) == 1 and str(db) in shown[0]
    assert db.read_bytes() == b"not a database at all " * 300
    assert [p.name for p in db.parent.iterdir() if "damaged" in p.name] == []


def test_open_store_offers_try_again_when_the_file_is_not_to_blame(tmp_path, monkeypatch):
    """A store that fails for another reason (here: a folder in the way) is never moved aside."""
    from app.main_window import open_store
    from runtime import paths

    db = paths.database_path()
    db.mkdir(parents=True)  # a folder where the file should be
    asked = []

    def ask(error):
        asked.append(error)
        if len(asked) == 1:
            db.rmdir()  # the person fixed it
            return "retry"
        return "quit"

    store, moved = open_store(ask)
    assert len(asked) == 1 and not asked[0].facts.get("unusable") and moved is None
    assert store is not None and store.list_conversations() == []
    store.close()
