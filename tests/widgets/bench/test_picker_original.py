"""The picker's "Original checkpoint (PyTorch)" row: the folder a group's GGUF was converted from is
offered, any folder can be chosen, and the Benchmark tab measures the ticked precisions in PyTorch."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tiny_checkpoints import build_checkpoint
from widgets.bench.picker import VariantPicker


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(checkpoint folder, a GGUF the app converted from it)."""
    from runtime.compress.convert import convert_checkpoint

    root = tmp_path_factory.mktemp("picker-original")
    folder = build_checkpoint("llama", root / "tiny-llama")
    return folder, convert_checkpoint(folder, root / "tiny-llama-F16.gguf", out_type="f16")


def library_row(path: Path, quant: str):
    info = SimpleNamespace(file_type=quant)
    return SimpleNamespace(entry=SimpleNamespace(name=path.name, path=str(path), size_bytes=path.stat().st_size,
                                                 info=info, repo_id=None))


@pytest.fixture
def picker(qtbot):
    widget = VariantPicker()
    qtbot.addWidget(widget)
    return widget


def test_the_checkpoint_a_gguf_came_from_is_offered_and_becomes_the_reference(picker, converted):
    folder, gguf = converted
    picker.set_library([library_row(gguf, "F16")])
    assert picker.original_path() is None and not picker.original_box.isChecked()   # offered, not imposed
    assert "converted from it" in picker.original_label.text() and folder.name in picker.original_label.text()
    assert picker.reference.itemText(0) == "The highest-precision variant"
    picker.original_box.setChecked(True)
    assert picker.original_path() == str(folder.resolve())
    assert picker.reference.itemText(0) == "The original checkpoint (PyTorch FP32)" and picker.reference_path() is None
    assert picker.original_precisions() == ["fp32", "bf16", "int8"]
    picker.precision_boxes["bf16"].setChecked(False)
    assert picker.original_precisions() == ["fp32", "int8"]


def test_ticking_without_a_folder_asks_for_one(picker, tmp_path):
    asked = []
    picker.choose_folder = lambda parent, title: asked.append(title) or None   # the person cancels
    picker.original_box.setChecked(True)
    assert asked and not picker.original_box.isChecked() and picker.original_path() is None
    picker.choose_folder = lambda parent, title: str(tmp_path)
    picker.original_button.click()
    assert picker.original_box.isChecked() and picker.original_path() == str(tmp_path)


def test_the_tab_runs_the_original_alone(qtbot, workbench_home, converted, short_text):
    from widgets.bench.tab import BenchmarkTab

    folder, _gguf = converted
    tab = BenchmarkTab()
    qtbot.addWidget(tab)
    o = tab.options
    o.threads.setValue(2)
    o.ctx.setValue(64)
    o.prompt_tokens.setValue(32)
    o.gen_tokens.setValue(8)
    o.reps.setValue(1)
    o.quality.setChecked(True)
    o.set_text_path(str(short_text))
    assert not tab.run_button.isEnabled()
    tab.picker.choose_folder = lambda parent, title: str(folder)
    tab.picker.original_button.click()
    tab.picker.precision_boxes["bf16"].setChecked(False)
    assert tab.run_button.isEnabled()
    try:
        with qtbot.waitSignal(tab.controller.sig_done, timeout=240_000) as done:
            assert tab.run()
        run = done.args[0]
        assert [(r.engine, r.quant, r.status) for r in run.results] == \
            [("pytorch", "FP32", "ok"), ("pytorch", "INT8 (dynamic)", "ok")]
        # No GGUF in the run: the checkpoint's own tokenizer cut the windows of the FP32 reference.
        assert run.results[0].quality.is_reference and run.results[1].quality.kld_mean > 0
        assert {tab.table.cell_text(i, "Variant") for i in range(2)} >= {"PyTorch INT8 (dynamic)"}
    finally:
        tab.shutdown()
