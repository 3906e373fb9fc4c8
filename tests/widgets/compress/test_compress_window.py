"""The Compress tab in the main window: results land in the library grouped with their source, and
the next steps (Chat, Benchmark) go to their tabs."""
from __future__ import annotations


from runtime import paths
from tests.widgets.compress.conftest import wait_jobs


def test_a_result_lands_in_the_library_grouped_with_its_source(qtbot, window, starter_model):
    models, tab = window.models_tab, window.compress_tab
    with qtbot.waitSignal(models.sig_library_loaded, timeout=60_000):
        models.refresh()
    row = next(r for r in models.model.rows() if r.entry.path == starter_model)
    with qtbot.waitSignal(tab.sig_source_ready, timeout=60_000):
        models.library.sig_file_action.emit("compress", row)     # "Compress it" in the library's menu
    assert window.tabs.currentWidget() is tab
    tab.targets.requantize.setChecked(True)
    tab.targets.tick("Q8_0")
    [job_id] = tab.compress()
    with qtbot.waitSignal(models.sig_library_loaded, timeout=120_000) as blocker:   # the library refreshes
        wait_jobs(qtbot, tab, [job_id])
    job = tab.jobs.jobs[job_id]
    assert job.status == "done", job.error
    out = paths.models_dir() / "SmolLM2-135M-Instruct-Q8_0.gguf"
    assert [r.entry.path for r in blocker.args[0] if r.entry.path == out] == [out]
    group = next(g for g in models.model.groups() if any(e.path == out for e in g.entries))
    assert {e.path for e in group.entries} == {out, starter_model}     # one model, two files
    assert group.quants == ["Q8_0", "Q4_1"]                             # highest precision first
    assert models.library.cell(out, "Size") and models.library.cell(out, "Quant") == "Q8_0"
    # the result is on offer as a source too, and Benchmark keeps the request for that tab
    assert str(out) in tab.source.paths()
    item = tab.jobs_panel.item(job_id)
    item.bench_button.click()
    assert window.tabs.currentWidget() is window.benchmark_tab
    assert window.model_requests["benchmark"] == str(out)
    assert window.benchmark_tab.picker.chosen_paths() == [str(out), str(starter_model)]


def test_chat_with_a_result_loads_it_in_the_chat_tab(qtbot, window, starter_model):
    tab = window.compress_tab
    with qtbot.waitSignal(tab.sig_source_ready, timeout=60_000):
        window.open_model_in("compress", str(starter_model))
    tab.targets.requantize.setChecked(True)
    tab.targets.tick("Q8_0")
    [job_id] = tab.compress()
    [job] = wait_jobs(qtbot, tab, [job_id])
    assert job.status == "done", job.error
    with qtbot.waitSignal(window.chat_tab.sig_model_ready, timeout=120_000):
        tab.jobs_panel.item(job_id).chat_button.click()
    assert window.tabs.currentWidget() is window.chat_tab
    assert window.chat_tab.session.model_ref == job.result_path
    window.close()   # stop the engine with the window
