"""Running jobs from the Compress tab: real quantizations (llama.cpp in its child), real conversions
of tiny checkpoints, progress, Cancel, the queue, and results in the library."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from runtime import paths
from tests.widgets.compress.conftest import converter_children, open_and_wait, quantize_children, wait_jobs
from widgets.compress.jobs import BACKGROUND_NICE


def gguf_files(folder: Path) -> list[str]:
    """Every file in ``folder`` (partials included: nothing but finished results may be there)."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def start(qtbot, tab, source, *qtypes, requantize=True) -> list[int]:
    open_and_wait(qtbot, tab, source)
    if requantize and tab.facts.quantized:
        tab.targets.requantize.setChecked(True)
    tab.targets.tick(*qtypes)
    ids = tab.compress()
    assert len(ids) >= len(qtypes)
    return ids


def test_a_quantize_job_runs_to_completion_with_progress_and_its_real_size(qtbot, compress_tab, starter_model):
    from runtime.models.gguf_info import read_gguf_info

    progress, logs, done = [], [], []
    compress_tab.jobs.sig_progress.connect(lambda i, d, t, m: progress.append((d, t, m)))
    compress_tab.jobs.sig_log.connect(lambda i, text: logs.append(text))
    compress_tab.sig_library_changed.connect(done.append)
    [job_id] = start(qtbot, compress_tab, starter_model, "Q8_0")
    item = compress_tab.jobs_panel.item(job_id)
    assert item.cancel_button.isVisibleTo(item)
    [job] = wait_jobs(qtbot, compress_tab, [job_id])
    assert job.status == "done", job.error
    out = paths.models_dir() / "SmolLM2-135M-Instruct-Q8_0.gguf"
    assert job.result_path == str(out) and done == [str(out)]
    assert gguf_files(paths.models_dir()) == [out.name]           # no temporary file left next to it
    assert read_gguf_info(out).file_type == "Q8_0"
    assert job.real_bytes == out.stat().st_size
    assert progress and progress[-1][1] > 0
    # the row: the real size next to the expected one, one click to Chat and Benchmark
    from runtime.models.gguf_info import format_size

    text = item.figures.text()
    assert text.startswith("Done in ") and format_size(job.real_bytes) in text
    assert f"expected {format_size(job.expected_bytes)}" in text
    assert abs(job.real_bytes - job.expected_bytes) < 0.05 * job.expected_bytes
    assert item.bar.value() == 1000 and not item.cancel_button.isVisibleTo(item)
    with qtbot.waitSignal(compress_tab.sig_open_requested) as blocker:
        item.chat_button.click()
    assert blocker.args == ["chat", str(out)]
    with qtbot.waitSignal(compress_tab.sig_open_requested) as blocker:
        item.bench_button.click()
    assert blocker.args == ["benchmark", str(out)]
    # the log: queued, started, what the quantizer did, done
    item.log_button.click()
    log = item.log_view.toPlainText()
    assert "Queued" in log and "Started" in log and "Done" in log and len(log.splitlines()) > 3
    assert item.log_view.isVisibleTo(item)


def test_running_progress_shows_percent_elapsed_and_time_left(qtbot, compress_tab, starter_model):
    ids = start(qtbot, compress_tab, starter_model, "Q6_K", "Q4_K_M")
    item = compress_tab.jobs_panel.item(ids[0])
    seen = []
    qtbot.waitUntil(lambda: seen.append(item.figures.text()) or compress_tab.jobs.jobs[ids[0]].status != "queued"
                    and "elapsed" in item.figures.text(), timeout=60_000)
    running = next(t for t in seen if "elapsed" in t)
    assert "%" in running and ("left" in running or "measuring" in running)
    wait_jobs(qtbot, compress_tab, ids)


def test_two_targets_queue_one_after_another(qtbot, compress_tab, starter_model):
    overlap = []

    def check(_job):
        overlap.append(sum(1 for j in compress_tab.jobs.jobs.values() if j.status == "running"))

    compress_tab.jobs.sig_changed.connect(check)
    ids = start(qtbot, compress_tab, starter_model, "Q8_0", "Q4_0")
    first, second = (compress_tab.jobs.jobs[i] for i in ids)
    assert first.status == "running" and second.status == "queued"
    assert "Waiting" in compress_tab.jobs_panel.item(ids[1]).figures.text()
    jobs = wait_jobs(qtbot, compress_tab, ids)
    assert [j.status for j in jobs] == ["done", "done"]
    assert max(overlap) == 1                                       # never two at once
    assert jobs[0].ended_at <= jobs[1].started_at
    assert gguf_files(paths.models_dir()) == ["SmolLM2-135M-Instruct-Q4_0.gguf", "SmolLM2-135M-Instruct-Q8_0.gguf"]
    assert "2 done" in compress_tab.jobs_panel.summary.text()


def test_cancel_stops_the_child_and_leaves_no_partial_file(qtbot, compress_tab, starter_model):
    ids = start(qtbot, compress_tab, starter_model, "Q6_K", "Q4_K_M")   # the second waits in the queue
    qtbot.waitUntil(lambda: bool(quantize_children()), timeout=60_000)
    children = quantize_children()
    if sys.platform != "win32":   # llama.cpp runs below the window's priority once it is going
        qtbot.waitUntil(lambda: all(c.nice() >= BACKGROUND_NICE for c in quantize_children()), timeout=30_000)
    assert compress_tab.jobs.jobs[ids[0]].status == "running"
    compress_tab.jobs_panel.item(ids[1]).cancel_button.click()     # the waiting one: taken off at once
    assert compress_tab.jobs.jobs[ids[1]].status == "cancelled"
    compress_tab.jobs_panel.item(ids[0]).cancel_button.click()
    jobs = wait_jobs(qtbot, compress_tab, ids)
    assert [j.status for j in jobs] == ["cancelled", "cancelled"]
    for child in children:
        child.wait(timeout=10)
        assert not child.is_running() or child.status() == "zombie"
    assert quantize_children() == []
    assert gguf_files(paths.models_dir()) == []                   # no partial output, no result
    item = compress_tab.jobs_panel.item(ids[0])
    assert "Cancelled" in item.figures.text() and not compress_tab.banner.text()   # a cancel is not an error


def test_results_in_a_chosen_folder_are_added_by_reference(qtbot, compress_tab, starter_model, tmp_path):
    from runtime.models.references import load_references

    out = tmp_path / "my models"
    out.mkdir()
    compress_tab.choose_folder = lambda parent, title, start: str(out)
    compress_tab.output.other_button.click()
    assert str(out) in compress_tab.output.where.text()
    [job_id] = start(qtbot, compress_tab, starter_model, "Q4_0")
    [job] = wait_jobs(qtbot, compress_tab, [job_id])
    assert job.status == "done", job.error
    result = out / "SmolLM2-135M-Instruct-Q4_0.gguf"
    assert job.result_path == str(result) and job.added_by_reference
    assert result in load_references()
    assert "by reference" in compress_tab.jobs_panel.item(job_id).figures.text()
    assert gguf_files(out) == [result.name] and gguf_files(paths.models_dir()) == []


def test_a_source_damaged_after_it_was_picked_fails_its_job_cleanly(qtbot, compress_tab, starter_model, tmp_path):
    copy = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    shutil.copyfile(starter_model, copy)
    open_and_wait(qtbot, compress_tab, copy)
    compress_tab.targets.requantize.setChecked(True)
    compress_tab.targets.tick("Q8_0")
    with open(copy, "r+b") as fh:     # the file is cut short after the header was read
        fh.truncate(copy.stat().st_size // 2)
    [job_id] = compress_tab.compress()
    [job] = wait_jobs(qtbot, compress_tab, [job_id])
    assert job.status == "failed"
    from runtime.errors import WorkbenchError

    assert isinstance(job.error, WorkbenchError)
    item = compress_tab.jobs_panel.item(job_id)
    assert item.figures.text().startswith("Failed: ") and job.error.message in item.figures.text()
    assert "failed" in compress_tab.banner.text()
    assert gguf_files(paths.models_dir()) == [] and quantize_children() == []


# -- a checkpoint folder ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    from tests.tiny_checkpoints import cached_checkpoint

    return cached_checkpoint("llama", tmp_path_factory.mktemp("tiny-checkpoints"))


def test_a_checkpoint_folder_converts_then_quantizes(qtbot, compress_tab, tiny_llama, tmp_path):
    from runtime.models.gguf_info import read_gguf_info

    folder = tmp_path / "TinyLlama-test"
    shutil.copytree(tiny_llama, folder)
    compress_tab.choose_folder = lambda parent, title, start: str(folder)
    with qtbot.waitSignal(compress_tab.sig_source_ready, timeout=60_000) as blocker:
        compress_tab.source.folder_button.click()
    facts = blocker.args[0]
    assert facts.kind == "checkpoint" and not facts.problem
    assert compress_tab.source.fact("Architecture").startswith("LlamaForCausalLM") or \
        "llama" in compress_tab.source.fact("Architecture").lower()
    assert compress_tab.source.fact("Dtype")
    rows = compress_tab.targets.rows
    assert list(rows)[:4] == ["F32", "F16", "BF16", "Q8_0"]
    compress_tab.targets.tick("Q4_0")            # a quantization alone: the F16 conversion comes first
    ids = compress_tab.compress()
    assert [compress_tab.jobs.jobs[i].kind for i in ids] == ["convert", "quantize"]
    convert, quantize = (compress_tab.jobs.jobs[i] for i in ids)
    assert convert.qtype == "F16" and quantize.after == convert.id
    jobs = wait_jobs(qtbot, compress_tab, ids)
    assert [j.status for j in jobs] == ["done", "done"], [j.error for j in jobs]
    assert quantize.source == convert.result_path
    assert read_gguf_info(convert.result_path).file_type == "F16"
    assert read_gguf_info(quantize.result_path).file_type == "Q4_0"
    assert gguf_files(paths.models_dir()) == ["TinyLlama-test-F16.gguf", "TinyLlama-test-Q4_0.gguf"]
    for job in jobs:    # the estimate shown before it ran, against the real size
        assert abs(job.real_bytes - job.expected_bytes) <= 16 * 1024 + 0.02 * job.real_bytes


def test_closing_the_tab_mid_job_leaves_no_partial_file_and_no_child(qtbot, starter_model):
    from widgets.compress.tab import CompressTab

    tab = CompressTab()
    tab.show()
    ids = start(qtbot, tab, starter_model, "Q6_K", "Q4_0")
    qtbot.waitUntil(lambda: bool(quantize_children()), timeout=60_000)
    tab.shutdown()                          # what the main window does when it closes
    tab.close()
    assert tab.jobs.jobs[ids[0]].status == "cancelled" and tab.jobs.jobs[ids[1]].status == "queued"
    qtbot.waitUntil(lambda: quantize_children() == [], timeout=10_000)
    assert gguf_files(paths.models_dir()) == []


def all_files(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden partial files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="session")
def medium_llama(tmp_path_factory):
    """A 12M-parameter float32 checkpoint: its conversion takes long enough to be caught half-way."""
    from tests.tiny_checkpoints import build_checkpoint

    return build_checkpoint("llama", tmp_path_factory.mktemp("medium") / "Medium-Llama", hidden=256, layers=4,
                            ffn=1024, vocab_size=16000)


def test_cancelling_a_conversion_stops_its_process_and_leaves_nothing(qtbot, compress_tab, tiny_llama):
    open_and_wait(qtbot, compress_tab, tiny_llama)
    compress_tab.targets.tick("F16", "Q4_0")
    ids = compress_tab.compress()
    qtbot.waitUntil(lambda: bool(converter_children()), timeout=30_000)
    children = converter_children()
    compress_tab.jobs.cancel(ids[0])
    jobs = wait_jobs(qtbot, compress_tab, ids)
    assert [j.status for j in jobs] == ["cancelled", "cancelled"]   # the quantization needed it
    for child in children:
        child.wait(timeout=15)
    assert converter_children() == [] and all_files(paths.models_dir()) == []
    assert not compress_tab.banner.text()


def test_a_conversion_process_that_dies_fails_its_job_and_leaves_no_partial(qtbot, compress_tab, medium_llama):
    from runtime.errors import ConversionError

    open_and_wait(qtbot, compress_tab, medium_llama)
    compress_tab.targets.tick("F32")
    [job_id] = compress_tab.compress()
    qtbot.waitUntil(lambda: any(n.endswith(".partial") for n in all_files(paths.models_dir())), timeout=60_000)
    [child] = converter_children()
    child.kill()                              # as the system would for lack of memory
    [job] = wait_jobs(qtbot, compress_tab, [job_id])
    assert job.status == "failed" and isinstance(job.error, ConversionError)
    assert "SIGKILL" in job.error.message or "killed" in job.error.message
    assert all_files(paths.models_dir()) == []      # the partial file was removed
    assert "Failed: " in compress_tab.jobs_panel.item(job_id).figures.text()
