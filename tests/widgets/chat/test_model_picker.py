"""The local model picker: whole names with the quant once, and a Fit badge that follows the Context field."""
from __future__ import annotations

import dataclasses
import shutil

from runtime.models import hardware
from runtime.models.gguf_info import read_gguf_info
from runtime.models.hardware import check_fit
from runtime.models.library import ModelEntry
from widgets.models.library_model import LibraryRow


def row_for(path, source="app", file_type=None):
    info = read_gguf_info(path)
    if file_type:
        info = dataclasses.replace(info, file_type=file_type)
    entry = ModelEntry(path=path, name=path.name[:-5], source=source, size_bytes=path.stat().st_size, info=info)
    return LibraryRow(entry=entry, fit=check_fit(info, 4096), fit_ctx=4096)


def test_names_are_whole_and_the_quant_is_named_once(qtbot, chat_tab, starter_model, tmp_path):
    copy = tmp_path / "SmolLM2-135M-Instruct-Q8_0.gguf"
    shutil.copyfile(starter_model, copy)
    long_name = tmp_path / "Meta-Llama-3.1-8B-Instruct-abliterated-GGUF-Q4_K_M.gguf"
    shutil.copyfile(starter_model, long_name)
    rows = [row_for(starter_model, "starter"), row_for(copy, "app", "Q8_0"), row_for(long_name, "hf-cache", "Q4_K_M")]
    local = chat_tab.picker.local
    chat_tab.set_library(rows)
    texts = [local.models.itemText(i) for i in range(local.models.count())]
    assert texts == ["SmolLM2-135M-Instruct Q4_1 (starter)", "SmolLM2-135M-Instruct Q8_0 (app folder)",
                     "Meta-Llama-3.1-8B-Instruct-abliterated-GGUF Q4_K_M (HF cache)"]
    metrics = local.models.fontMetrics()
    local.models.setCurrentIndex(2)
    qtbot.wait(50)
    widest = max(metrics.horizontalAdvance(t) for t in texts)
    assert local.models.width() >= widest  # the closed list shows the whole name
    assert local.models.view().minimumWidth() >= widest  # and so does the popup
    assert "Q4_K_M" in local.details.text() and str(long_name) in local.models.toolTip()


def test_the_fit_badge_follows_the_context_field(qtbot, chat_tab, starter_model, monkeypatch):
    row = row_for(starter_model, "starter")
    small = check_fit(row.entry.info, 2048, available_bytes=1 << 50).needed_bytes
    big = check_fit(row.entry.info, 8192, available_bytes=1 << 50).needed_bytes
    assert big > small
    monkeypatch.setattr(hardware, "available_ram", lambda: (small + big) // 2)
    local = chat_tab.picker.local
    chat_tab.set_library([row])
    local.n_ctx.setValue(2048)
    assert local.fit.text() in ("Fits", "Tight") and "2,048-token context" in local.fit.toolTip()
    local.n_ctx.setValue(8192)
    assert local.fit.text() == "Too big" and "8,192-token context" in local.fit.toolTip()
    local.n_ctx.setValue(2048)
    assert local.fit.text() != "Too big"
