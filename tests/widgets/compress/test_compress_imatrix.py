""""Use importance matrix" in the Compress tab: computed first as a job of its own (real llama.cpp in
its child), required for the IQ types, Cancel, and an existing matrix file."""
from __future__ import annotations

from pathlib import Path

import pytest

from runtime import paths
from runtime.errors import ModelFileError
from tests.widgets.compress.conftest import open_and_wait, wait_jobs


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def calibration(tmp_path):
    """The start of the shipped calibration text: a few chunks for the tiny byte-level vocabulary."""
    from runtime.compress.imatrix import default_calibration_path

    path = tmp_path / "calibration-start.txt"
    path.write_text(default_calibration_path().read_text(encoding="utf-8")[:3000], encoding="utf-8")
    return path


def test_an_iq_type_ticks_the_imatrix_which_is_computed_first(qtbot, compress_tab, tiny_variants, calibration):
    from runtime.compress.sizes import read_source

    tab = compress_tab
    open_and_wait(qtbot, tab, tiny_variants["F16"])
    target = tab.facts.target("IQ2_XXS")
    assert target is not None and target.needs_imatrix and not target.problem
    assert not tab.imatrix.enabled
    tab.targets.show_advanced(True)
    tab.targets.tick("IQ2_XXS")
    assert tab.imatrix.enabled and not tab.imatrix.use.isEnabled()     # required: stays ticked
    assert "IQ2_XXS can only be made with an importance matrix" in tab.imatrix.why.text()
    plan = tab.output.plan.text()
    assert "compute the importance matrix from calibration_mix.txt" in plan and "with it" in plan
    tab.imatrix.choose_file = lambda *args: str(calibration)
    tab.imatrix.text_button.click()
    assert tab.imatrix.text_label.text() == calibration.name
    assert f"compute the importance matrix from {calibration.name}" in tab.output.plan.text()
    ids = tab.compress()
    assert len(ids) == 2
    matrix_job, quantize_job = wait_jobs(qtbot, tab, ids, timeout=300_000)
    assert matrix_job.kind == "imatrix" and matrix_job.status == "done", matrix_job.error
    assert quantize_job.status == "done", quantize_job.error
    assert Path(matrix_job.result_path).parent == paths.app_home() / "imatrix"
    assert quantize_job.imatrix == matrix_job.result_path
    out = Path(quantize_job.result_path)
    assert out.name.endswith("-imat-IQ2_XXS.gguf") and files(paths.models_dir()) == [out.name]
    meta = read_source(out).metadata
    assert meta["quantize.imatrix.file"] == Path(matrix_job.result_path).name
    item = tab.jobs_panel.item(matrix_job.id)
    assert not item.chat_button.isVisibleTo(item) and "Done in" in item.figures.text()
    tab.targets.tick("IQ2_XXS", on=False)
    assert tab.imatrix.use.isEnabled()


def test_cancelling_the_matrix_cancels_its_quantizations_and_leaves_nothing(qtbot, compress_tab, tiny_variants):
    tab = compress_tab
    open_and_wait(qtbot, tab, tiny_variants["F16"])
    tab.imatrix.use.setChecked(True)
    tab.targets.tick("Q4_K_M")
    ids = tab.compress()
    assert len(ids) == 2
    qtbot.waitUntil(lambda: tab.jobs.jobs[ids[0]].status == "running", timeout=30_000)
    tab.jobs.cancel(ids[0])
    matrix_job, quantize_job = wait_jobs(qtbot, tab, ids, timeout=300_000)
    assert matrix_job.status == "cancelled" and quantize_job.status == "cancelled"
    assert files(paths.app_home() / "imatrix") == [] and files(paths.models_dir()) == []


def test_an_existing_matrix_file_is_used_as_it_is(qtbot, compress_tab, tiny_variants, tmp_path):
    from runtime.compress.imatrix_run import compute_imatrix

    tab = compress_tab
    src = tiny_variants["F16"]
    matrix = compute_imatrix(src, None, tmp_path / "mine.imatrix.gguf", ctx=128, chunks=2).path
    open_and_wait(qtbot, tab, src)
    tab.imatrix.use.setChecked(True)
    tab.targets.tick("Q4_0")
    tab.imatrix.existing.setChecked(True)
    assert "Choose the importance matrix file first" in tab.output.plan.text()
    assert not tab.output.compress_button.isEnabled()
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"junk" * 100)
    with pytest.raises(ModelFileError):
        tab.imatrix.set_matrix(junk)
    tab.imatrix.choose_file = lambda *args: str(junk)
    tab.imatrix.file_button.click()
    assert tab.imatrix.file_label.text().startswith("Not usable:")
    tab.imatrix.set_matrix(matrix)
    assert "2 chunks of 128 tokens" in tab.imatrix.file_label.text()
    assert tab.output.compress_button.isEnabled()
    [job_id] = tab.compress()
    [job] = wait_jobs(qtbot, tab, [job_id], timeout=300_000)
    assert job.status == "done", job.error
    assert job.imatrix == str(matrix) and Path(job.result_path).name.endswith("-imat-Q4_0.gguf")


def test_a_checkpoint_converts_then_computes_the_matrix_from_the_conversion(qtbot, compress_tab, tmp_path_factory,
                                                                            calibration):
    from tiny_checkpoints import cached_checkpoint

    tab = compress_tab
    folder = cached_checkpoint("llama", tmp_path_factory.getbasetemp() / "imatrix-widget-checkpoints")
    open_and_wait(qtbot, tab, folder)
    tab.imatrix.use.setChecked(True)
    tab.imatrix.set_text(calibration)
    tab.targets.tick("Q4_0")
    assert "(needed first), compute the importance matrix from calibration-start.txt, quantize to Q4_0 with it" \
        in tab.output.plan.text()
    ids = tab.compress()
    convert, matrix, quantize = wait_jobs(qtbot, tab, ids, timeout=300_000)
    assert (convert.kind, matrix.kind, quantize.kind) == ("convert", "imatrix", "quantize")
    assert matrix.status == "done" and quantize.status == "done", (matrix.error, quantize.error)
    assert matrix.source == convert.result_path and quantize.imatrix == matrix.result_path
    assert Path(quantize.result_path).name.endswith("-imat-Q4_0.gguf")
