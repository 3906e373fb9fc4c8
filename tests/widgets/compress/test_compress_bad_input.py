"""Bad sources in the Compress tab: a clear message from the runtime's typed errors, the window alive,
nothing made, no partial output."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import paths
from runtime.errors import ConversionError, ModelFileError
from tests.widgets.compress.conftest import open_and_wait, refused_error, wait_jobs


def assert_refused_cleanly(tab, error, *words):
    """The banner and the source panel say what is wrong; nothing can be ticked or run."""
    banner = tab.banner.text()
    assert banner and tab.banner.kind == "error"
    assert error.message in banner and (not error.hint or error.hint in banner)
    for word in words:
        assert word.lower() in banner.lower(), (word, banner)
    assert error.message in tab.source.status.text()
    assert tab.targets.rows == {} and tab.facts is None
    assert not tab.output.compress_button.isEnabled() and tab.compress() == []
    assert not paths.models_dir().exists() or list(paths.models_dir().iterdir()) == []


def test_a_file_that_is_not_a_gguf_is_refused(qtbot, compress_tab, tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("certainly not a model " * 50)
    error = refused_error(qtbot, compress_tab, path)
    assert isinstance(error, ModelFileError)
    assert_refused_cleanly(compress_tab, error)


def test_a_truncated_gguf_is_refused(qtbot, compress_tab, starter_model, tmp_path):
    path = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with open(starter_model, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(1 << 20))    # the first MiB: header complete, tensors cut off
    error = refused_error(qtbot, compress_tab, path)
    assert isinstance(error, ModelFileError)
    assert_refused_cleanly(compress_tab, error)
    # the tab still works: a good source afterwards is read and offered
    facts = open_and_wait(qtbot, compress_tab, starter_model)
    assert facts.targets and not compress_tab.banner.text()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    from tests.tiny_checkpoints import cached_checkpoint

    return cached_checkpoint("llama", tmp_path_factory.mktemp("tiny-checkpoints"))


def edited_checkpoint(tiny_llama: Path, folder: Path, **config_changes) -> Path:
    shutil.copytree(tiny_llama, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(config_changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_folder_without_a_checkpoint_is_refused(qtbot, compress_tab, tmp_path):
    folder = tmp_path / "holiday photos"
    folder.mkdir()
    (folder / "beach.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    error = refused_error(qtbot, compress_tab, folder)
    assert isinstance(error, ConversionError)
    assert_refused_cleanly(compress_tab, error, "config.json")


def test_a_quantized_checkpoint_is_refused_with_what_to_get_instead(qtbot, compress_tab, tiny_llama, tmp_path):
    folder = edited_checkpoint(tiny_llama, tmp_path / "Llama-GPTQ",
                               quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 128})
    error = refused_error(qtbot, compress_tab, folder)
    assert isinstance(error, ConversionError)
    assert_refused_cleanly(compress_tab, error, "GPTQ")


def test_a_truncated_safetensors_file_is_refused(qtbot, compress_tab, tiny_llama, tmp_path):
    folder = tmp_path / "cut-short"
    shutil.copytree(tiny_llama, folder)
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    error = refused_error(qtbot, compress_tab, folder)
    assert isinstance(error, ConversionError)
    assert_refused_cleanly(compress_tab, error)


def test_an_unsupported_architecture_is_named_and_nothing_can_be_ticked(qtbot, compress_tab, tiny_llama, tmp_path):
    from runtime.compress.convert import SUPPORTED_ARCHITECTURES

    folder = edited_checkpoint(tiny_llama, tmp_path / "Mamba-tiny", architectures=["MambaForCausalLM"],
                               model_type="mamba")
    answers = []
    compress_tab.sig_source_ready.connect(answers.append)          # read, with its problem stated
    compress_tab.sig_source_refused.connect(lambda p, e: answers.append(e))   # or refused outright
    compress_tab.open_source(str(folder))
    qtbot.waitUntil(lambda: bool(answers), timeout=60_000)
    text = compress_tab.banner.text()
    assert compress_tab.banner.kind == "error" and "Mamba" in text
    assert any(name in text for name in SUPPORTED_ARCHITECTURES)   # the supported ones are named
    assert not compress_tab.output.compress_button.isEnabled()
    for row in compress_tab.targets.rows.values():
        assert not row.check.isEnabled()
    assert compress_tab.compress() == []


# -- not enough disk ------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root and mount rights; skipped where there are none)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_not_enough_disk_is_said_before_and_when_it_runs(qtbot, compress_tab, starter_model, small_disk):
    compress_tab.choose_folder = lambda parent, title, start: str(small_disk)
    compress_tab.output.other_button.click()
    open_and_wait(qtbot, compress_tab, starter_model)
    compress_tab.targets.requantize.setChecked(True)
    compress_tab.targets.tick("Q8_0")
    plan = compress_tab.output.plan.text()
    assert "Not enough space" in plan                    # said before anything runs
    [job_id] = compress_tab.compress()
    [job] = wait_jobs(qtbot, compress_tab, [job_id])
    assert job.status == "failed"
    text = compress_tab.jobs_panel.item(job_id).figures.text()
    assert "disk" in text.lower() or "space" in text.lower()
    assert list(small_disk.iterdir()) == []              # no partial output
