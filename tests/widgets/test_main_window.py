"""The main window: four tabs, honest placeholder tabs, library and version shown, state kept."""
from __future__ import annotations

import pytest
from PySide6.QtWidgets import QAbstractButton

from app.main_window import TAB_NAMES, MainWindow
from app.settings import AppSettings


@pytest.fixture
def window(qtbot):
    win = MainWindow(auto_load=False)
    qtbot.addWidget(win)
    win.show()
    return win


def test_four_tabs(window):
    names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert names == list(TAB_NAMES) == ["Models", "Compress", "Chat", "Benchmark"]


def test_placeholder_tabs_say_so_and_have_no_buttons(window):
    for page in (window.compress_tab, window.benchmark_tab):
        assert page.findChildren(QAbstractButton) == []
        text = " ".join(label.text() for label in page.findChildren(type(window.version_label)))
        assert "Not built yet" in text
        assert page.plan and all(line in text for line in page.plan)


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
    first.resize(760, 520)
    first.tabs.setCurrentIndex(3)
    first.chat_tab.set_splitter_sizes([150, 500, 250])
    sizes = first.chat_tab.splitter_sizes()
    size = first.size()
    first.close()

    assert AppSettings().current_tab() == 3
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert second.tabs.currentIndex() == 3
    assert second.size() == size
    assert second.chat_tab.splitter_sizes() == sizes
