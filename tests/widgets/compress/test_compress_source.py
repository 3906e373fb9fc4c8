"""Picking a source in the Compress tab: its facts, each target's estimate, and Requantize."""
from __future__ import annotations

from tests.widgets.compress.conftest import open_and_wait
from widgets.compress.source_panel import PLACEHOLDER


def test_library_models_are_offered_and_picking_one_shows_its_facts(qtbot, compress_tab, library_rows,
                                                                   starter_model):
    tab = compress_tab
    tab.set_library(library_rows)
    assert str(starter_model) in tab.source.paths()
    assert tab.source.models.currentText() == PLACEHOLDER and not tab.output.compress_button.isEnabled()
    index = tab.source.models.findData(str(starter_model))
    with qtbot.waitSignal(tab.sig_source_ready, timeout=60_000) as blocker:
        tab.source.models.setCurrentIndex(index)
    facts = blocker.args[0]
    assert facts.kind == "gguf" and facts.quantized and facts.dtype == "Q4_1"
    panel = tab.source
    assert panel.fact("Architecture") == "llama"
    assert panel.fact("Parameters") == "135M"
    assert panel.fact("Quant") == "Q4_1"
    assert panel.fact("Size") == "93.8 MiB"
    assert panel.fact("Context") == "8,192 tokens"
    assert str(starter_model) in panel.path_label.text()


def test_each_target_shows_its_expected_size_fit_and_quality_note(qtbot, compress_tab, starter_model):
    from runtime.compress.quantize import advanced_types, imatrix_types, quantize_types
    from runtime.compress.sizes import QUALITY_NOTES, expected_sizes
    from runtime.models.gguf_info import format_size
    from widgets.compress.source import short_quality_note

    facts = open_and_wait(qtbot, compress_tab, starter_model)
    rows = compress_tab.targets.rows
    main = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"]
    assert list(quantize_types()) == main
    assert list(rows) == main                      # the advanced rows are made when opened
    advanced = [t for t in advanced_types() + imatrix_types() if t not in main]
    assert advanced and compress_tab.targets.advanced_button.text() == f"Advanced types ({len(advanced)})"
    sizes = expected_sizes(starter_model, main)
    for qtype in main:
        row = rows[qtype]
        assert row.size.text() == f"≈ {format_size(sizes[qtype])}"
        assert row.fit.text() == "Fits"    # 135M parameters on a machine with gigabytes free
        assert "RAM" in row.fit.toolTip() and "context" in row.fit.toolTip()
        note = QUALITY_NOTES[qtype]
        assert "Llama-3-8B" in note and any(ch.isdigit() for ch in note)
        assert row.note_text().startswith(short_quality_note(qtype))
        assert note in row.note.toolTip()
    # smaller types give smaller files
    assert sizes["Q8_0"] > sizes["Q6_K"] > sizes["Q5_K_M"] > sizes["Q4_K_M"] > sizes["Q4_0"]
    assert "Llama-3-8B" in compress_tab.targets.source_note.text()
    assert "Benchmark" in compress_tab.targets.source_note.text()
    # the advanced list is folded away until asked for
    compress_tab.targets.advanced_button.click()
    assert list(rows) == main + advanced
    assert rows[advanced[0]].check.isVisibleTo(compress_tab)
    assert rows[advanced[0]].size.text().startswith("≈ ")
    # the source's own type cannot be made from it
    if "Q4_1" in rows:
        assert not rows["Q4_1"].check.isEnabled() and "already Q4_1" in rows["Q4_1"].note_text()
    assert facts.target("Q8_0").expected_bytes == sizes["Q8_0"]


def test_an_already_quantized_source_needs_the_requantize_tick(qtbot, compress_tab, starter_model):
    open_and_wait(qtbot, compress_tab, starter_model)
    targets = compress_tab.targets
    box = targets.requantize
    assert box.isVisibleTo(compress_tab) and not box.isChecked()
    warning = targets.requantize_text.text()
    assert "Q4_1" in warning and "quality" in warning and "twice" in warning
    row = targets.rows["Q8_0"]
    assert not row.check.isEnabled() and "Requantize" in row.check.toolTip()
    targets.tick("Q8_0")
    assert targets.chosen() == [] and not compress_tab.output.compress_button.isEnabled()
    assert compress_tab.compress() == []
    box.setChecked(True)
    assert row.check.isEnabled()
    targets.tick("Q8_0")
    assert targets.chosen() == ["Q8_0"]
    button = compress_tab.output.compress_button
    assert button.isEnabled() and button.text() == "Compress (1 job)"
    plan = compress_tab.output.plan.text()
    assert "quantize to Q8_0" in plan and "free on that disk" in plan
    # unticking Requantize clears the ticks again
    box.setChecked(False)
    assert targets.chosen() == [] and not button.isEnabled()


def test_an_unquantized_source_needs_no_requantize(qtbot, compress_tab, tmp_path):
    from tests.quantize_models import write_tiny_llama

    f16 = write_tiny_llama(tmp_path / "Tiny-Llama-F16.gguf", dtype="f16")   # rows of 256: every K-quant fits
    facts = open_and_wait(qtbot, compress_tab, f16)
    assert not facts.quantized and facts.dtype == "F16"
    targets = compress_tab.targets
    assert not targets.requantize.isVisibleTo(compress_tab)
    for qtype in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"):
        row = targets.rows[qtype]
        assert row.check.isEnabled() and "⚠" not in row.note_text()
    targets.tick("Q4_K_M", "Q8_0")
    assert targets.chosen() == ["Q8_0", "Q4_K_M"]
    assert compress_tab.output.compress_button.text() == "Compress (2 jobs)"


def test_targets_the_shapes_cannot_take_are_disabled_with_why(qtbot, compress_tab, tmp_path):
    from tests.quantize_models import write_tiny_llama

    odd = write_tiny_llama(tmp_path / "Odd-Llama-F16.gguf", dtype="f16", n_embd=48, n_ff=144)
    open_and_wait(qtbot, compress_tab, odd)
    compress_tab.targets.show_advanced()
    rows = compress_tab.targets.rows
    refused = [q for q, row in rows.items() if not row.check.isEnabled()]
    assert {"Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"} <= set(refused)   # rows of 48 and 144 values
    assert "already F16" in rows["F16"].note_text()
    for qtype in set(refused) - {"F16", "BF16", "F32"}:
        note = rows[qtype].note_text()
        assert note.startswith("Not possible: ") and "48" in note, note   # the row length is named
    compress_tab.targets.tick("Q4_K_M")
    assert compress_tab.targets.chosen() == [] and not compress_tab.output.compress_button.isEnabled()


def test_a_target_that_partly_falls_back_says_so_and_can_still_be_made(qtbot, compress_tab, starter_model):
    """The starter's rows of 576 values do not fit the K-quants' 256-value blocks everywhere."""
    open_and_wait(qtbot, compress_tab, starter_model)
    compress_tab.targets.requantize.setChecked(True)
    row = compress_tab.targets.rows["Q4_K_M"]
    assert row.check.isEnabled()
    note = row.note_text()
    assert "⚠" in note and "576" in note and "Q4_K_M" in note
    assert "576" in row.check.toolTip()     # the runtime's whole explanation on hover


def test_a_newer_pick_wins_over_an_older_answer(qtbot, compress_tab, library_rows, starter_model, tmp_path):
    import shutil

    copy = tmp_path / "SmolLM2-copy.Q4_1.gguf"
    shutil.copyfile(starter_model, copy)
    compress_tab.open_source(str(starter_model))
    facts = open_and_wait(qtbot, compress_tab, copy)   # picked before the first answer arrived
    qtbot.waitUntil(lambda: not compress_tab.reading, timeout=30_000)
    assert compress_tab.facts is facts and compress_tab.facts.path == str(copy)
    assert str(copy) in compress_tab.source.path_label.text()


def test_output_names_group_with_their_source(tmp_path):
    from widgets.compress.source import checkpoint_name, output_name

    assert output_name("SmolLM2-135M-Instruct.Q4_1", "Q8_0") == "SmolLM2-135M-Instruct-Q8_0.gguf"
    assert output_name("Tiny-Llama-F16", "Q4_K_M") == "Tiny-Llama-Q4_K_M.gguf"
    snapshot = tmp_path / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    assert checkpoint_name(snapshot) == "SmolLM2-135M-Instruct"     # a checkpoint in the HF cache
    assert checkpoint_name(tmp_path / "My-Model") == "My-Model"


def test_a_checkpoints_quantizations_read_a_lossless_conversion(qtbot, compress_tab, tmp_path_factory):
    """A bf16 checkpoint: quantizations read its BF16 conversion (ticked or added), never F16."""
    from tests.tiny_checkpoints import cached_checkpoint

    folder = cached_checkpoint("llama", tmp_path_factory.mktemp("bf16-checkpoints"), dtype="bfloat16")
    facts = open_and_wait(qtbot, compress_tab, folder)
    assert facts.dtype == "BF16" and compress_tab.source.fact("Dtype") == "BF16 (bfloat16)"
    targets = compress_tab.targets
    assert "from the BF16 conversion" in " ".join(
        label.text() for label in targets.findChildren(type(targets.empty)))
    targets.tick("Q4_0")
    plan = compress_tab.planned()
    assert [(j.kind, j.qtype, j.after, j.automatic) for j in plan] == [
        ("convert", "BF16", None, True), ("quantize", "Q4_0", 0, False)]
    assert "convert to BF16 (needed first)" in compress_tab.output.plan.text()
    targets.tick("F16", "BF16")
    plan = compress_tab.planned()
    assert [(j.kind, j.qtype, j.after) for j in plan] == [
        ("convert", "F16", None), ("convert", "BF16", None), ("quantize", "Q4_0", 1)]
    assert all(j.expected_bytes > 0 for j in plan)
