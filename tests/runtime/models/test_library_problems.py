"""The library scan survives unreadable folders and file names that are not UTF-8 (issue 6)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_files import deny_folder, write_hf_cache_model, write_unknown_arch_gguf
from runtime import paths
from runtime.errors import ModelFileError
from runtime.models.gguf_info import read_gguf_info
from runtime.models.library import readable, resolve_model, scan_library, scan_library_report


def make_hf_cache_model(repo_id: str, filename: str) -> list[Path]:
    return write_hf_cache_model(paths.hf_cache_dir(), repo_id, filename)


def _app_models_with_a_locked_folder():
    models = paths.ensure_dir(paths.models_dir())
    write_unknown_arch_gguf(models, name="good")
    write_unknown_arch_gguf(paths.ensure_dir(models / "other"), name="also-good")
    locked = paths.ensure_dir(models / "locked")
    write_unknown_arch_gguf(locked, name="hidden-by-permissions")
    write_unknown_arch_gguf(paths.ensure_dir(locked / "deeper"), name="deeper")
    return models, locked


@pytest.mark.parametrize("can_list", [False, True], ids=["no-read", "no-execute"])
def test_unreadable_folder_is_skipped_and_named(monkeypatch, starter_model, can_list):
    models, locked = _app_models_with_a_locked_folder()
    deny_folder(monkeypatch, locked, can_list)

    scan = scan_library_report()
    names = {e.name for e in scan.entries}
    assert {"good", "also-good", "SmolLM2-135M-Instruct.Q4_1"} <= names
    assert not names & {"hidden-by-permissions", "deeper"}
    assert scan.problems == [f"Could not read folder {locked}: permission denied"]
    assert all(e.info is not None for e in scan.entries)
    assert {e.name for e in scan_library()} == names
    assert resolve_model("good") == models / "good.gguf"  # what `workbench chat good` does


def test_unreadable_app_folder_itself_does_not_hide_the_rest(monkeypatch, starter_model):
    models, _ = _app_models_with_a_locked_folder()
    make_hf_cache_model("org/cached", "cached.gguf")
    deny_folder(monkeypatch, models, can_list=False)
    scan = scan_library_report()
    assert {e.name for e in scan.entries} == {"cached", "SmolLM2-135M-Instruct.Q4_1"}
    assert scan.problems == [f"Could not read folder {models}: permission denied"]


def test_unreadable_hf_cache_snapshot_is_skipped(monkeypatch):
    [link] = make_hf_cache_model("org/locked", "locked.gguf")
    make_hf_cache_model("org/fine", "fine.gguf")
    deny_folder(monkeypatch, link.parent, can_list=False)
    scan = scan_library_report(read_info=False)
    assert [e.name for e in scan.entries if e.source == "hf-cache"] == ["fine"]
    assert scan.problems == [f"Could not read folder {link.parent}: permission denied"]


def test_missing_folders_are_not_problems():
    assert paths.models_dir().exists() is False
    assert scan_library_report().problems == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permission bits need a POSIX system and a user other than root")
@pytest.mark.parametrize("mode", [0o000, 0o644], ids=["no-read", "no-execute"])
def test_really_unreadable_folder(starter_model, mode):
    models, locked = _app_models_with_a_locked_folder()
    os.chmod(locked, mode)
    try:
        scan = scan_library_report()
        names = {e.name for e in scan.entries}
        assert {"good", "also-good", "SmolLM2-135M-Instruct.Q4_1"} <= names
        assert not names & {"hidden-by-permissions", "deeper"}
        assert scan.problems == [f"Could not read folder {locked}: permission denied"]
        assert resolve_model("good") == models / "good.gguf"
    finally:
        os.chmod(locked, 0o755)


# --- file names that are not UTF-8 ---------------------------------------------------------------

def write_non_utf8_model(folder: Path, raw_name: bytes = b"caf\xe9.gguf") -> Path:
    """A tiny model whose file name is not valid UTF-8 (skips the test where the system refuses it)."""
    if os.name != "posix":
        pytest.skip("file names are bytes only on POSIX systems")
    good = write_unknown_arch_gguf(folder, name="plain")
    target = os.path.join(os.fsencode(folder), raw_name)
    try:
        os.rename(os.fsencode(good), target)
    except OSError as exc:  # e.g. macOS file systems accept only UTF-8 names
        pytest.skip(f"this file system refuses non-UTF-8 names: {exc}")
    return Path(os.fsdecode(target))


def test_non_utf8_file_name_is_listed_with_a_usable_path():
    path = write_non_utf8_model(paths.ensure_dir(paths.models_dir()))
    [entry] = [e for e in scan_library() if e.source == "app"]
    assert entry.path == path and os.fsencode(entry.path).endswith(b"/caf\xe9.gguf")
    assert read_gguf_info(entry.path).architecture == "flibbertigibbet"  # the engine can open it
    assert entry.info is not None and entry.error is None
    assert entry.display_name == "caf\\xe9"
    entry.display_name.encode("utf-8")  # printable: no lone surrogates left
    assert resolve_model("caf\\xe9") == path  # the name as `workbench models` prints it


def test_readable():
    assert readable("plain ü name") == "plain ü name"
    assert readable(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
    assert readable("odd \ud800 surrogate") == "odd \\ud800 surrogate"


def test_unreadable_hf_cache_does_not_hide_the_app_folder(monkeypatch):
    write_unknown_arch_gguf(paths.ensure_dir(paths.models_dir()), name="mine")
    make_hf_cache_model("org/cached", "cached.gguf")
    deny_folder(monkeypatch, paths.hf_cache_dir(), can_list=False)
    scan = scan_library_report(read_info=False)
    assert [e.name for e in scan.entries if e.source != "starter"] == ["mine"]
    assert scan.problems == [f"Could not read folder {paths.hf_cache_dir()}: permission denied"]


def test_unknown_name_mentions_what_was_skipped(monkeypatch):
    models, locked = _app_models_with_a_locked_folder()
    deny_folder(monkeypatch, locked, can_list=False)
    with pytest.raises(ModelFileError) as caught:
        resolve_model("hidden-by-permissions")
    assert f"Could not read folder {locked}: permission denied" in caught.value.hint
