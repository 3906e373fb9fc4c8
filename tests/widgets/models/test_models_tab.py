"""The Models tab lists everything it can read and names what it skipped (issue 6)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from model_files import deny_folder, write_unknown_arch_gguf
from runtime import paths
from widgets.models.library_model import COLUMNS
from widgets.models.tab import ModelsTab


@pytest.fixture
def tab(qtbot):
    widget = ModelsTab()
    qtbot.addWidget(widget, before_close_func=lambda w: w.shutdown())
    widget.show()
    return widget


def scan(qtbot, tab) -> list:
    with qtbot.waitSignal(tab.sig_library_loaded, timeout=60_000) as blocker:
        tab.refresh()
    return blocker.args[0]


def cell(tab, row: int, column: str) -> str:
    return tab.model.index(row, COLUMNS.index(column)).data()


@pytest.mark.parametrize("can_list", [False, True], ids=["no-read", "no-execute"])
def test_unreadable_folder_is_a_notice_not_a_failure(qtbot, tab, monkeypatch, starter_model, can_list):
    models = paths.ensure_dir(paths.models_dir())
    write_unknown_arch_gguf(models, name="good")
    locked = paths.ensure_dir(models / "locked")
    write_unknown_arch_gguf(locked, name="secret")
    real = {name: getattr(os, name) for name in ("scandir", "listdir", "stat", "lstat")}
    deny_folder(monkeypatch, locked, can_list)

    rows = scan(qtbot, tab)
    assert [cell(tab, i, "Name") for i in range(len(rows))] == ["good", "SmolLM2-135M-Instruct.Q4_1"]
    assert "Scan failed" not in tab.status.text() and "2 models found" in tab.status.text()
    assert tab.notice.isVisibleTo(tab)
    assert f"Could not read folder {locked}: permission denied" in tab.notice.text()

    for name, function in real.items():  # permissions fixed: the next scan drops the notice
        monkeypatch.setattr(os, name, function)
    rows = scan(qtbot, tab)
    assert "secret" in [r.entry.name for r in rows] and not tab.notice.isVisibleTo(tab)


@pytest.mark.skipif(sys.platform != "linux", reason="non-UTF-8 file names are a Linux matter here")
def test_non_utf8_file_name_is_shown(qtbot, tab):
    folder = os.fsencode(paths.ensure_dir(paths.models_dir()))
    good = write_unknown_arch_gguf(Path(os.fsdecode(folder)), name="plain")
    os.rename(os.fsencode(good), os.path.join(folder, b"caf\xe9.gguf"))

    [row] = scan(qtbot, tab)[:1]
    assert row.entry.info is not None and row.fit is not None
    assert cell(tab, 0, "Name") == "caf\\xe9"
    tooltip = tab.model.index(0, 0).data(0x03)  # ToolTipRole: the full path
    assert tooltip.endswith("caf\\xe9.gguf")
